"""Timing: frames per second of a network (the speed table, section 4.7: 28-30 fps for the largest
and 150 fps for the smallest FAN on a Titan X) and the cost of one training step of each candidate
configuration (how the quick profile's scale was chosen, the notebook's "choosing the scale")."""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from fa_lib.device import resolve_device
from fa_lib.experiments.ch4.scale import Ch4Setup
from fa_lib.models.fan import FAN, parameter_count


def _synchronise(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def frames_per_second(model: nn.Module, input_size: int, *, repeats: int = 5, device: Any = "cpu",
                      in_channels: int = 3) -> float:
    """Forward passes per second on one (1, C, S, S) input under ``torch.inference_mode``; the
    best of ``repeats`` timed calls after one warm-up (the minimum suppresses load from other
    processes on a shared machine)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    x = torch.rand(1, in_channels, input_size, input_size, device=dev)
    best = math.inf
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            _synchronise(dev)
            t0 = time.perf_counter()
            model(x)
            _synchronise(dev)
            best = min(best, time.perf_counter() - t0)
    return 1.0 / best


def time_training_step(setup: Ch4Setup, *, stacks: int, width: int, input_size: int | None = None,
                       stem_channels: tuple[int, int] | None = None, in_channels: int = 3,
                       repeats: int = 2, device: Any = "cpu") -> dict[str, Any]:
    """Wall and CPU time of one RMSprop step (forward, L2 loss over every stack, backward, update)
    of a FAN on a random batch of ``setup.batch_size``; the minimum over ``repeats`` after a
    warm-up."""
    dev = resolve_device(device)
    size = int(input_size or setup.input_size)
    stem = tuple(stem_channels or setup.stem_channels)
    model = FAN(num_modules=stacks, width=width, hg_depth=setup.hg_depth, pooling=setup.pooling,
                stem_channels=stem, in_channels=in_channels).to(dev)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=setup.lr)
    x = torch.rand(setup.batch_size, in_channels, size, size, device=dev)
    target = torch.rand(setup.batch_size, 68, size // 4, size // 4, device=dev)
    wall, cpu = math.inf, math.inf
    for i in range(repeats + 1):
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        loss = sum(F.mse_loss(h, target) for h in model(x))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if i:  # the first call is a warm-up
            wall = min(wall, time.perf_counter() - t_wall)
            cpu = min(cpu, time.process_time() - t_cpu)
    return {"input (px)": size, "stacks": stacks, "width": width, "stem": str(stem), "in channels": in_channels,
            "parameters": parameter_count(model), "wall ms/step": 1000 * wall, "CPU ms/step": 1000 * cpu}


def step_time_table(setup: Ch4Setup, candidates: Sequence[Mapping[str, Any]] | None = None,
                    repeats: int = 2, device: Any = "cpu") -> pd.DataFrame:
    """:func:`time_training_step` for each candidate (dicts of its keyword arguments); by default
    the profile's own configuration, its Table 4.4 variants and the official stem for contrast."""
    if candidates is None:
        candidates = [dict(stacks=s, width=w) for _, s, w in setup.size_rows]
        candidates.append(dict(stacks=setup.stacks, width=setup.width, in_channels=3 + 68))
        candidates.append(dict(stacks=1, width=setup.width, stem_channels=(64, 128)))
    return pd.DataFrame([time_training_step(setup, repeats=repeats, device=device, **c) for c in candidates])


def planned_training_seconds(setup: Ch4Setup, steps: pd.DataFrame, depth_ms_per_step: float | None = None) -> float:
    """Training wall time the chosen budget implies, from the measured step times: the main 3D-FAN
    layout twice (2D-FAN, 3D-FAN), 2D-to-3D-FAN, the Table 4.4 variants (at ``size_iterations``
    when the profile sets it, the chapter's own layout then retrained too; else the variants other
    than 3D-FAN at the 3D-FAN budget), and the depth network (``depth_ms_per_step``, when measured)."""
    its = setup.iterations or 0
    size_its = its if setup.size_iterations is None else int(setup.size_iterations)
    retrain_own = size_its != its
    plain = steps[(steps["in channels"] == 3) & (steps["stem"] == str(setup.stem_channels))]

    def step_ms(stacks: int, width: int) -> float:
        return plain[(plain["stacks"] == stacks) & (plain["width"] == width)]["wall ms/step"].min()

    main = step_ms(setup.stacks, setup.width)
    guided = steps[steps["in channels"] == 3 + 68]["wall ms/step"].min()
    variants = sum(step_ms(s, w) for _, s, w in setup.size_rows
                   if (s, w) != (setup.stacks, setup.width) or retrain_own)
    total = (its * (2 * main + guided) + size_its * variants) / 1000
    if depth_ms_per_step is not None:
        total += (setup.depth_iterations or 0) * depth_ms_per_step / 1000
    return float(total)
