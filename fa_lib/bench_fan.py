"""``fa-lib bench fan``: our FAN CPU inference against the official face-alignment module.

The official package's ``FAN`` (face-alignment 1.5.0, BSD-3) is the reference: it is
built with random weights (no weights can be downloaded), the same state_dict is loaded into our
:class:`fa_lib.models.FAN`, and both run on the same input in the same process, interleaved
(official, ours, official, ours, ...) so that load from other processes hits both alike; each
time is the minimum over the repeats. Rows:

- ``fa_lib FastFAN``: :func:`fa_lib.inference.optimize_for_inference` (BN folding, fused
  BN + ReLU as a clamp, fused concatenation + residual, channels-last, inference mode);
- ``fa_lib CompiledFAN (torch.compile)``: ``optimize_for_inference(model, compile=True)``
  (inductor CPU backend with freezing, channels-last; see :mod:`fa_lib.inference`), left out with
  a printed reason when no C++ compiler is available (or with ``compile=False``);
- ``fa_lib FAN (eager)``: our plain module, to show it costs what the official one costs.

Both are compared with the official module run in eager mode under ``torch.inference_mode``
(the official API runs under ``torch.no_grad``, which is slower, so the comparison favours the
official module slightly). ``max_abs_diff`` is the largest difference over every stack's
heatmaps; the benchmark refuses (raises) when it reaches :data:`TOLERANCE` (1e-4), so every
reported speed-up is for the same outputs. ``speedup`` is min(official) / min(ours);
``speedup_median`` is the median of the per-round ratios (each round times both back to back:
robust to load from other processes); ``setup_s`` is the time to build the candidate and run its
first call (for the compiled one: the compilation).

The official package's ``__init__`` imports its detectors (and numba), so only its
``face_alignment/models/fan.py`` file is loaded, by path, never the package.
"""
from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import io
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from .atomic import atomic_write_text
from .inference import CompiledFAN, compiler_unavailable_reason, optimize_for_inference
from .models.checkpoints import load_weights
from .models.fan import FAN

__all__ = ["official_fan_class", "benchmark_fan", "write_csv", "bench_main", "CSV_COLUMNS",
           "TOLERANCE"]

CSV_COLUMNS = ("model", "threads", "official_ms", "ours_ms", "speedup", "speedup_median",
               "max_abs_diff", "setup_s")
TOLERANCE = 1e-4  # largest allowed |ours - official| over every stack's heatmaps
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
                  seed: int = 0, official_class=None, input_size: int = 256,
                  compile: bool = True, log: Callable[[str], object] | None = None) -> list[dict]:
    """Time the official FAN(``stacks``) and ours (FastFAN, CompiledFAN when ``compile`` and a
    compiler is available, eager FAN) on one (``batch``, 3, ``input_size``, ``input_size``) input
    (256 in the thesis; a multiple of 64) with ``threads`` CPU threads; returns CSV rows
    (:data:`CSV_COLUMNS`). Raises ``AssertionError`` when a candidate's heatmaps differ from the
    official ones by :data:`TOLERANCE` or more. ``log`` receives progress and skip messages."""
    log = log or (lambda message: None)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if input_size % 64:
        raise ValueError(f"input_size must be a multiple of 64, got {input_size}")
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
    x = torch.rand(batch, 3, input_size, input_size, generator=generator)
    with torch.inference_mode():
        reference = official(x)

    candidates, setup, diffs = {}, {}, {}

    def add(name: str, build: Callable[[], Callable]) -> Callable:
        start = time.perf_counter()
        model = build()
        with torch.inference_mode():
            out = model(x)  # the first call (for the compiled candidate: the compilation)
        setup[name] = time.perf_counter() - start
        diffs[name] = max(float((a - b).abs().max()) for a, b in zip(reference, out))
        candidates[name] = model
        return model

    add("fa_lib FastFAN", lambda: optimize_for_inference(ours))
    if compile:
        reason = compiler_unavailable_reason()
        if reason is None:
            log("compiling FAN with torch.compile (inductor, freezing; about 40 s on 2 cores) ...")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a fallback is reported below, not as a warning
                compiled = add("fa_lib CompiledFAN (torch.compile)",
                               lambda: optimize_for_inference(ours, compile=True))
            assert isinstance(compiled, CompiledFAN)
            if not compiled.compiled:  # inductor failed: the row would time the eager FastFAN
                reason = compiled.fallback_reason
                del candidates["fa_lib CompiledFAN (torch.compile)"]
        if reason is not None:
            log(f"skipping the torch.compile candidate: {reason}")
    add("fa_lib FAN (eager)", lambda: ours)
    for name in candidates:
        assert diffs[name] < TOLERANCE, (
            f"{name}: max |ours - official| = {diffs[name]:.3g} >= {TOLERANCE} (not the same "
            "network: no speed-up reported)")

    times = {"official": [], **{name: [] for name in candidates}}
    with torch.inference_mode():
        official(x)
        for model in candidates.values():  # a second warm-up call (allocator, caches)
            model(x)
        for _ in range(repeats):  # interleaved: each round runs every model once
            times["official"].append(_elapsed_ms(lambda: official(x)))
            for name, model in candidates.items():
                times[name].append(_elapsed_ms(lambda m=model: m(x)))
    official_ms = min(times["official"])
    rows = []
    for name in candidates:
        ours_ms = min(times[name])
        rounds = [a / b for a, b in zip(times["official"], times[name])]
        rows.append({"model": f"FAN-{stacks} {name}",
                     "threads": torch.get_num_threads(), "official_ms": round(official_ms, 2),
                     "ours_ms": round(ours_ms, 2), "speedup": round(official_ms / ours_ms, 3),
                     "speedup_median": round(statistics.median(rounds), 3),
                     "max_abs_diff": float(f"{diffs[name]:.3g}"),
                     "setup_s": round(setup[name], 2)})
    return rows


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write the rows (columns :data:`CSV_COLUMNS`) atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows({k: row[k] for k in CSV_COLUMNS} for row in rows)
    return atomic_write_text(path, text.getvalue())


def _default_csv() -> Path:
    return Path(__file__).resolve().parent.parent / "results" / "tables" / "bench_fan.csv"


def bench_main(args) -> int:
    """Entry point of ``fa-lib bench fan`` (``args.quick``, ``args.out``, ``args.threads``,
    ``args.no_compile``)."""
    try:
        official_class = official_fan_class()
    except ImportError as err:
        print(f"fa-lib bench fan: {err}")
        return 2
    threads = getattr(args, "threads", None)
    if not threads:
        threads = [torch.get_num_threads()]
    elif isinstance(threads, int):
        threads = [threads]
    repeats = 3 if getattr(args, "quick", False) else 10
    compile = not getattr(args, "no_compile", False)
    rows = []
    for count in threads:
        try:
            rows += benchmark_fan(stacks=4, threads=count, repeats=repeats,
                                  official_class=official_class, compile=compile,
                                  log=lambda message: print(message, flush=True))
        except AssertionError as err:  # outputs differ from the official module's: no result
            print(f"fa-lib bench fan: {err}")
            return 1
    print(f"{'model':40s} {'threads':>7s} {'official ms':>11s} {'ours ms':>8s} {'speedup':>7s} "
          f"{'median':>6s} {'max |diff|':>10s} {'setup s':>7s}")
    for row in rows:
        print(f"{row['model']:40s} {row['threads']:7d} {row['official_ms']:11.1f} "
              f"{row['ours_ms']:8.1f} {row['speedup']:6.2f}x {row['speedup_median']:5.2f}x "
              f"{row['max_abs_diff']:10.2g} {row['setup_s']:7.1f}")
    for count in sorted({row["threads"] for row in rows}):
        best = max((row for row in rows if row["threads"] == count), key=lambda row: row["speedup"])
        print(f"fastest with {count} thread(s): {best['model']}, {best['speedup']:.2f}x the official "
              f"eager module (median over rounds {best['speedup_median']:.2f}x)")
    out = Path(args.out) if getattr(args, "out", None) else _default_csv()
    write_csv(rows, out)
    print(f"wrote {out} (CPU timings: minimum of {repeats} interleaved repeats; noisy when the "
          "machine is shared)")
    return 0
