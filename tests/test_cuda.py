"""Mixed precision on a GPU (float16 autocast + GradScaler) in both trainers: skipped without CUDA; run by
``scripts/gpu_check.py`` on a GPU machine. The script itself is dry-run here on the CPU."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from fa_lib.adversarial import SuperFanTrainer
from fa_lib.models import FAN
from fa_lib.models.superfan import Critic, VGG19Features, super_fan_generator
from fa_lib.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


class Faces(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.rand(3, 64, 64, generator=g), "heatmaps": torch.rand(68, 16, 16, generator=g),
                "image_lr": torch.rand(3, 16, 16, generator=g), "image_hr": torch.rand(3, 64, 64, generator=g)}


def small_fan() -> FAN:
    return FAN(2, 32, hg_depth=2, stem_channels=(16, 32))


@cuda
def test_trainer_amp_trains_in_float16_and_resumes(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(small_fan(), Faces(), loss="l2", batch_size=4, iterations=8, device="cuda", amp=True,
                      checkpoint_dir=tmp_path, progress=False)
    history = trainer.fit()
    assert trainer.amp and all(math.isfinite(h["train_loss"]) for h in history)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state.get("scaler"), "the GradScaler's state is checkpointed"


@cuda
def test_super_fan_trainer_amp_end_to_end():
    torch.manual_seed(0)
    trainer = SuperFanTrainer(super_fan_generator(16, blocks=(2, 1, 1)), Faces(), "super-fan", critic=Critic(width=16),
                              student=small_fan(), teacher=small_fan(), features=VGG19Features(16), batch_size=4,
                              iterations=4, device="cuda", amp=True)
    history = trainer.fit()
    assert trainer.amp and all(math.isfinite(v) for k, v in history[-1].items() if isinstance(v, float))


def test_gpu_check_script_dry_run_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "report.json"
    assert module.main(["--device", "cpu", "--steps", "2", "--batch", "1", "--skip-reproduce", "--skip-tests",
                        "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fan_3d"]["steps"] == 2 and report["fan_3d"]["seconds_per_step"] > 0
    assert report["super_fan"]["network"].startswith("Super-FAN") and report["fan_3d"]["amp"] is False
