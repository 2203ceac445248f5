"""``fa-lib bench fan``: our FAN CPU inference against the official face-alignment module.

The official package's ``FAN`` (face-alignment 1.5.0, BSD-3; FACTS.md 1) is the reference: it is
built with random weights (no weights can be downloaded), the same state_dict is loaded into our
:class:`fa_lib.models.FAN`, and both run on the same input in the same process, interleaved
(official, ours, official, ours, ...) so that load from other processes hits both alike; each
time is the minimum over the repeats. Rows:

- ``fa_lib FastFAN``: :func:`fa_lib.inference.optimize_for_inference` (BN folding, fused
  BN + ReLU as a clamp, fused concatenation + residual, channels-last, inference mode);
- ``fa_lib FAN (eager)``: our plain module, to show it costs what the official one costs.

Both are compared with the official module run in eager mode under ``torch.inference_mode``
(the official API runs under ``torch.no_grad``, which is slower, so the comparison favours the
official module slightly). ``max_abs_diff`` is the largest difference over every stack's heatmaps.

The official package's ``__init__`` imports its detectors (and numba), so only its
``face_alignment/models/fan.py`` file is loaded, by path, never the package.
"""
from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .inference import optimize_for_inference
from .models.checkpoints import load_weights
from .models.fan import FAN

__all__ = ["official_fan_class", "benchmark_fan", "write_csv", "bench_main", "CSV_COLUMNS"]

CSV_COLUMNS = ("model", "threads", "official_ms", "ours_ms", "speedup", "max_abs_diff")
OFFICIAL_INSTALL_HINT = "pip install --no-deps face-alignment==1.5.0"


def official_fan_class():
    """The official ``FAN`` class, loaded from ``face_alignment/models/fan.py`` by path."""
    try:
        dist = importlib.metadata.distribution("face-alignment")
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(f"the official face-alignment package is not installed: "
                          f"{OFFICIAL_INSTALL_HINT}") from err
    path = Path(dist.locate_file("face_alignment/models/fan.py"))
    if not path.is_file():
        raise ImportError(f"{path} not found in the face-alignment installation ({OFFICIAL_INSTALL_HINT})")
    spec = importlib.util.spec_from_file_location("_official_face_alignment_fan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAN


def _randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Trained-like BN statistics (random weights leave BN as the identity, which would hide
    folding mistakes), including a few negative scales."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 1.4 - 0.2)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


def _elapsed_ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000.0


def benchmark_fan(stacks: int = 4, threads: int | None = None, repeats: int = 5, batch: int = 1,
                  seed: int = 0, official_class=None, input_size: int = 256) -> list[dict]:
    """Time the official FAN(``stacks``) and ours (FastFAN and eager) on one (``batch``, 3,
    ``input_size``, ``input_size``) input (256 in the thesis; a multiple of 64) with ``threads``
    CPU threads; returns CSV rows (:data:`CSV_COLUMNS`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    official_class = official_class or official_fan_class()
    official = official_class(stacks).eval()
    _randomize_batchnorm(official, generator)
    ours = load_weights(FAN(num_modules=stacks), official.state_dict()).eval()
    fast = optimize_for_inference(ours)
    if input_size % 64:
        raise ValueError(f"input_size must be a multiple of 64, got {input_size}")
    x = torch.rand(batch, 3, input_size, input_size, generator=generator)

    candidates = {"fa_lib FastFAN": fast, "fa_lib FAN (eager)": ours}
    times = {"official": [], **{name: [] for name in candidates}}
    with torch.inference_mode():
        reference = official(x)
        diffs = {name: max(float((a - b).abs().max()) for a, b in zip(reference, model(x)))
                 for name, model in candidates.items()}
        for _ in range(repeats):  # interleaved: each round runs every model once
            times["official"].append(_elapsed_ms(lambda: official(x)))
            for name, model in candidates.items():
                times[name].append(_elapsed_ms(lambda m=model: m(x)))
    official_ms = min(times["official"])
    rows = []
    for name in candidates:
        ours_ms = min(times[name])
        rows.append({"model": f"FAN-{stacks} {name}",
                     "threads": torch.get_num_threads(), "official_ms": round(official_ms, 2),
                     "ours_ms": round(ours_ms, 2), "speedup": round(official_ms / ours_ms, 3),
                     "max_abs_diff": float(f"{diffs[name]:.3g}")})
    return rows


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write the rows (columns :data:`CSV_COLUMNS`) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows({k: row[k] for k in CSV_COLUMNS} for row in rows)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _default_csv() -> Path:
    return Path(__file__).resolve().parent.parent / "results" / "tables" / "bench_fan.csv"


def bench_main(args) -> int:
    """Entry point of ``fa-lib bench fan`` (``args.quick``, ``args.out``, ``args.threads``)."""
    try:
        official_class = official_fan_class()
    except ImportError as err:
        print(f"fa-lib bench fan: {err}")
        return 2
    threads = getattr(args, "threads", None)
    if threads is None:
        threads = [torch.get_num_threads()]
    elif isinstance(threads, int):
        threads = [threads]
    repeats = 3 if getattr(args, "quick", False) else 10
    rows = []
    for count in threads:
        rows += benchmark_fan(stacks=4, threads=count, repeats=repeats, official_class=official_class)
    print(f"{'model':28s} {'threads':>7s} {'official ms':>11s} {'ours ms':>8s} {'speedup':>7s} "
          f"{'max |diff|':>10s}")
    for row in rows:
        print(f"{row['model']:28s} {row['threads']:7d} {row['official_ms']:11.1f} "
              f"{row['ours_ms']:8.1f} {row['speedup']:7.2f} {row['max_abs_diff']:10.2g}")
    out = Path(args.out) if getattr(args, "out", None) else _default_csv()
    write_csv(rows, out)
    print(f"wrote {out} (CPU timings: minimum of {repeats} interleaved repeats; noisy when the "
          "machine is shared)")
    return 0
