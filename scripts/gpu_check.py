"""The prepared check for a GPU machine (``device`` tool, or a reviewer's GPU): what nothing on a CPU can show.

1. the mixed-precision tests (``tests/test_cuda.py``: float16 autocast + GradScaler in both trainers);
2. a few hundred steps of the full-scale 3D-FAN (4 stacks, width 256, 256 px crops) with AMP: step time and
   peak memory;
3. the full profile's Super-FAN end-to-end stage (12-3-2 generator, critic, two 2-stack FANs, ResNet-50) with
   AMP: step time and peak memory;
4. ``fa-lib reproduce --profile smoke --device cuda`` for every notebook (``--skip-reproduce`` to leave out).

Usage: ``python scripts/gpu_check.py [--steps 300] [--out gpu_check.json]``; ``--device cpu --steps 2
--skip-reproduce --skip-tests`` is the dry run the test-suite makes on a CPU. Prints one JSON report.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from fa_lib.adversarial import SuperFanTrainer
from fa_lib.experiments.ch6.context import Chapter6
from fa_lib.models import FAN
from fa_lib.models.superfan import Critic, ResNet50Features
from fa_lib.profiles import get_profile
from fa_lib.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


class RandomFaces(Dataset):
    """Random crops and heatmaps at a given size (the timing does not depend on the pixels)."""

    def __init__(self, n: int, size: int, maps: int, low: int | None = None):
        self.n, self.size, self.maps, self.low = n, size, maps, low

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        item = {"image": torch.rand(3, self.size, self.size, generator=g)}
        if self.low:
            item = {"image_lr": torch.rand(3, self.low, self.low, generator=g), "image_hr": item["image"]}
        else:
            item["heatmaps"] = torch.rand(68, self.maps, self.maps, generator=g)
        return item


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)


def _timed_fit(trainer, device: torch.device, network: str, steps: int, batch: int, loss_key: str) -> dict:
    """Run ``trainer.fit()`` and report seconds per step and the peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - started
    return {"network": network, "steps": steps, "batch": batch, "amp": trainer.amp,
            "seconds_per_step": round(seconds / steps, 4), "peak_memory_mb": _peak_memory_mb(device),
            "last_loss": history[-1].get(loss_key)}


def time_fan(steps: int, batch: int, device: torch.device, amp: bool) -> dict:
    """The thesis's 3D-FAN (4 stacks, width 256, 256 px): seconds per step and peak memory with AMP."""
    trainer = Trainer(FAN(), RandomFaces(steps * batch, 256, 64), loss="l2", optimizer="rmsprop", lr=1e-4,
                      batch_size=batch, iterations=steps, device=str(device), amp=amp, progress=False)
    return _timed_fit(trainer, device, "3D-FAN, 4 stacks, width 256, 256 px", steps, batch, "train_loss")


def time_super_fan(steps: int, batch: int, device: torch.device, amp: bool) -> dict:
    """The full profile's Super-FAN end-to-end stage: seconds per step (critic + generator/FAN) and peak memory."""
    ctx = Chapter6.__new__(Chapter6)  # the builders only: no data
    ctx.setup = get_profile("full").ch6
    trainer = SuperFanTrainer(ctx.build_generator("12-3-2"), RandomFaces(steps * batch, 64, 16, low=16), "super-fan",
                              critic=Critic(width=ctx.setup.critic_width), student=ctx.build_fan(),
                              teacher=ctx.build_fan(), features=ResNet50Features(), batch_size=batch,
                              iterations=steps, device=str(device), amp=amp)
    return _timed_fit(trainer, device, "Super-FAN end to end (full profile)", steps, batch, "loss")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the report here")
    parser.add_argument("--skip-reproduce", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report: dict = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    if not args.skip_tests:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_cuda.py")],
                              capture_output=True, text=True, cwd=ROOT)
        report["amp_tests"] = {"returncode": done.returncode, "summary": done.stdout.strip().splitlines()[-1:]}
    amp = device.type == "cuda"
    report["fan_3d"] = time_fan(args.steps, args.batch, device, amp)
    report["super_fan"] = time_super_fan(max(2, args.steps // 10), max(2, args.batch // 2), device, amp)
    if not args.skip_reproduce:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "fa_lib.cli", "reproduce", "--profile", "smoke", "--device",
                               args.device, "--no-progress", "--force"], capture_output=True, text=True, cwd=ROOT)
        report["reproduce_smoke"] = {"returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1),
                                     "summary": done.stdout.strip().splitlines()[-12:]}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
