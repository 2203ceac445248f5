"""Timings of chapter 5: the cost of a training step at candidate scales (why the quick profile's
scale) and the training-time cost of binarization (section 5.5.1, table ``5.5.1_training_time``)."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from fa_lib.experiments.ch5.context import Chapter5
from fa_lib.experiments.ch5.scale import BOTTLENECK, BOTTLENECK_REAL, LANDMARKS, OURS, OURS_REAL, Ch5Setup, NetSpec
from fa_lib.experiments.ch5.tables import write_result
from fa_lib.experiments.registry import ThesisResult, thesis_table
from fa_lib.models.fan import parameter_count
from fa_lib.train import cpu_has_bf16, stacked_loss


def _one_thread_step_seconds(models: dict, images: torch.Tensor, targets: torch.Tensor, lr: float, repeats: int,
                             steps: int = 1, cpu_bf16: bool = False, channels_last: bool = False) -> dict:
    """Minimum CPU seconds of one training step (forward, sigmoid cross-entropy, backward, RMSprop)
    of each model over ``repeats`` rounds, the models interleaved in every round, on one torch thread
    (as in the training processes), after one untimed warm-up step each (first-call allocations).
    ``cpu_bf16`` / ``channels_last``: as the profile trains (:class:`fa_lib.train.Trainer`)."""
    if channels_last:
        models = {key: m.to(memory_format=torch.channels_last) for key, m in models.items()}
        images = images.contiguous(memory_format=torch.channels_last)
    bf16 = cpu_bf16 and cpu_has_bf16()

    def loss_of(model):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model(images)
        return stacked_loss([o.float() for o in outputs], targets, "sigmoid_bce")

    opts = {key: torch.optim.RMSprop(m.parameters(), lr=lr) for key, m in models.items()}
    best = {key: float("inf") for key in models}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as in the training processes
    try:
        for key, model in models.items():  # warm-up: first-call allocations are not timed
            loss_of(model).backward()
        for _ in range(repeats):
            for key, model in models.items():
                start = time.process_time()
                for _ in range(steps):
                    loss = loss_of(model)
                    opts[key].zero_grad()
                    loss.backward()
                    opts[key].step()
                best[key] = min(best[key], (time.process_time() - start) / steps)
    finally:
        torch.set_num_threads(threads)
    return best


def measure_step_seconds(ctx: Chapter5, nets: Sequence[NetSpec], steps: int = 2,
                         repeats: int | None = None) -> dict[NetSpec, float]:
    """CPU seconds of one training step (forward, backward, RMSprop update) of each network on a batch
    of the training set, measured side by side: the candidates are interleaved and the minimum over
    ``repeats`` rounds is kept (the machine is shared; per-process CPU time is less disturbed by other
    processes than wall time)."""
    repeats = ctx.setup.timing_repeats if repeats is None else int(repeats)
    train = ctx.training_set(LANDMARKS, ctx.seed)
    batch_items = [train[i % len(train)] for i in range(ctx.setup.batch_size)]  # a set smaller than a batch repeats
    images = torch.stack([b["image"] for b in batch_items])
    targets = torch.stack([b["heatmaps"] for b in batch_items])
    models = {net: net.build(ctx.setup) for net in nets}
    return _one_thread_step_seconds(models, images, targets, ctx.setup.lr, repeats, steps,
                                    ctx.setup.cpu_bf16, ctx.setup.channels_last)


def _step_seconds(model: nn.Module, setup: Ch5Setup, repeats: int) -> float:
    """CPU seconds of one training step of ``model`` on random inputs of ``setup``'s size."""
    images = torch.rand(setup.batch_size, 3, setup.input_size, setup.input_size)
    target = torch.rand(setup.batch_size, 68, setup.heatmap_size, setup.heatmap_size)
    return _one_thread_step_seconds({0: model}, images, target, setup.lr, repeats, 1, setup.cpu_bf16,
                                    setup.channels_last)[0]


def candidate_step_times(ctx: Chapter5, candidates: Sequence[tuple[int, int, int]] | None = None,
                         repeats: int | None = None) -> pd.DataFrame:
    """CPU seconds of one training step of binary "Ours, Final" at candidate scales (input px, width,
    hourglass depth), each on one thread, in the profile's training precision and memory layout.
    Default candidates: the profile's own scale, half and double its width, 2/3 of its input size, and
    4/3 of it with one more hourglass level."""
    s = ctx.setup
    repeats = s.timing_repeats if repeats is None else int(repeats)
    if candidates is None:
        candidates = [(s.input_size, s.width, s.hg_depth), (s.input_size, max(8, s.width // 2), s.hg_depth),
                      (s.input_size, 2 * s.width, s.hg_depth),
                      (max(16, s.input_size * 2 // 3 // 8 * 8), s.width, s.hg_depth),
                      (s.input_size * 4 // 3 // 8 * 8, s.width, s.hg_depth + 1)]
    rows = []
    for inp, width, depth in dict.fromkeys(candidates):
        if (inp // 4) % 2 ** depth:
            continue
        sub = replace(s, input_size=int(inp), width=int(width), hg_depth=int(depth),
                      stem_channels=(max(4, width // 4), max(4, width // 2)))
        net = OURS.build(sub)
        rows.append({"input px": inp, "heatmap px": inp // 4, "width": width, "hourglass depth": depth,
                     "parameters (k)": parameter_count(net) / 1e3,
                     "CPU s per step": _step_seconds(net, sub, repeats), "chosen": (inp, width, depth) ==
                     (s.input_size, s.width, s.hg_depth)})
    return pd.DataFrame(rows)


TWINS = (("Ours, Final", OURS, OURS_REAL), ("Bottleneck", BOTTLENECK, BOTTLENECK_REAL))


@thesis_table("5.5.1_training_time", trains=(
    "binary and real proposed block and bottleneck, every seed of the profile (scale.OURS, OURS_REAL, BOTTLENECK, "
    "BOTTLENECK_REAL); untrained copies of the same four for the side-by-side step timings",))
def training_time_table(ctx: Chapter5) -> ThesisResult:
    """Table 5.5.1_training_time (section 5.5.1): "the binary network requires up to 50% more time to
    train". Binary and real twins of the bottleneck and the proposed block, (a) CPU time of one step
    measured side by side, (b) wall time of the chapter's own training runs (same budget)."""
    measured = measure_step_seconds(ctx, [n for _, b, r in TWINS for n in (r, b)])
    cells, notes, runs = [], [], {}
    for label, binary, real in TWINS:
        rb, rr = ctx.runs_of(binary), ctx.runs_of(real)
        runs[f"{label} (binary)"], runs[f"{label} (real)"] = rb, rr
        wall_b = float(np.mean([r.seconds_per_step for r in rb]))
        wall_r = float(np.mean([r.seconds_per_step for r in rr]))
        for kind, spec, wall in (("real", real, wall_r), ("binary", binary, wall_b)):
            row = f"{label} ({kind})"
            cells += [dict(row=row, column="CPU ms per step (side by side)", reproduced=1e3 * measured[spec]),
                      dict(row=row, column="wall ms per step (training runs)", reproduced=1e3 * wall)]
        cells += [dict(row=f"{label}: binary / real", column="CPU ms per step (side by side)",
                       reproduced=measured[binary] / measured[real]),
                  dict(row=f"{label}: binary / real", column="wall ms per step (training runs)",
                       reproduced=wall_b / wall_r)]
        extra = 100 * (measured[binary] / measured[real] - 1)
        notes.append(f"{label}: a binary training step costs {extra:+.0f}% CPU time against its real twin "
                     f"(thesis, GPU: up to +50%).")
    if any(r.cached for rs in runs.values() for r in rs):
        notes.append("Runs loaded from the run cache keep the wall time of the context that trained them.")
    return write_result(ctx, "5.5.1_training_time", cells, runs, [],
                  "Training cost of binary vs real networks (thesis 5.5.1: up to 50% more); batch of "
                  f"{ctx.setup.batch_size} at {ctx.setup.input_size} px on this CPU", notes,
                  data={"step_seconds": {net.describe(): s for net, s in measured.items()}})
