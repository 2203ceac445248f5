"""``fa-lib train``: a chapter's networks trained into the run cache, alone or under ``torchrun``.

``fa-lib train ch6`` (or ch3, ch4, ch5) trains every network the chapter needs (``--list`` names them; give some names to
train only those, their parents first); under ``torchrun --nproc_per_node N fa-lib train ...`` every
process trains the same networks in DistributedDataParallel (each takes its share of every epoch), rank 0
writes the checkpoints and the finished runs, and a killed run resumes from its last checkpoint. The run
cache keys are the notebooks': ``fa-lib reproduce`` then finds every network trained and only evaluates.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist

from fa_lib.device import resolve_device
from fa_lib.experiments.ch3.context import Chapter3
from fa_lib.experiments.ch4.context import Chapter4
from fa_lib.experiments.ch5.context import Chapter5
from fa_lib.experiments.ch6.context import Chapter6
from fa_lib.experiments.context import ChapterContext
from fa_lib.profiles import get_profile, with_knobs

#: the chapters ``fa-lib train`` can train
CHAPTERS: dict[str, type[ChapterContext]] = {"ch3": Chapter3, "ch4": Chapter4, "ch5": Chapter5, "ch6": Chapter6}


def make_context(chapter: str, profile: str = "quick", *, knobs: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> ChapterContext:
    """The chapter's context, with ``knobs`` of its profile section changed (``{"sr_iterations": 10}``)."""
    if chapter not in CHAPTERS:
        raise ValueError(f"fa-lib train knows chapters {', '.join(CHAPTERS)}, not {chapter!r} (the other chapters' "
                         "notebooks train their networks)")
    prof = with_knobs(profile, chapter, **dict(knobs)) if knobs else get_profile(profile)
    return CHAPTERS[chapter](prof, **kwargs)


def train(chapter: str, jobs: Sequence[str] = (), profile: str = "quick", *, device: str = "auto",
          data_root=None, seed: int = 0, runs_root=None, knobs: Mapping[str, Any] | None = None,
          log: Callable[[str], None] = print) -> list[str]:
    """Train ``jobs`` (default: all) of ``chapter`` into the run cache and return the jobs done. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) the process group is made here (NCCL on CUDA, gloo otherwise),
    rank 0 builds the data first, and only rank 0 logs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        use_cuda = resolve_device(device).type == "cuda"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    say = log if rank == 0 else (lambda message: None)
    try:
        def build() -> ChapterContext:
            return make_context(chapter, profile, knobs=knobs, seed=seed, device=device, data_root=data_root,
                                runs_root=runs_root, log=say)

        if world > 1:  # the synthetic sets are rendered once, by rank 0, before the others read them
            ctx = build() if rank == 0 else None
            dist.barrier()
            ctx = ctx or build()
        else:
            ctx = build()
        every = ctx.jobs()
        wanted = list(jobs) or every
        unknown = [j for j in wanted if j not in every]
        if unknown:
            raise ValueError(f"unknown {chapter} job(s) {unknown}; the jobs are {', '.join(every)}")
        for job in wanted:
            say(f"[fa-lib train] {chapter} {job} ({world} process{'es' if world > 1 else ''})")
            ctx.run_job(job)
        return wanted
    finally:
        if own_group:
            dist.destroy_process_group()
