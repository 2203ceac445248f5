"""The chapter context: one object a chapter's builders share.

It holds the profile and its typed section for the chapter (``ctx.scale``), the seed and device,
the data root, the on-disk run cache (``ctx.runs``) and a log function, and writes results with the
same provenance for every chapter. A chapter subclasses it (``Chapter4``, ``Chapter5``) to add its
data and the networks it trains; every registered builder takes it as its only positional argument.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pandas as pd
import torch

from fa_lib.device import resolve_device
from fa_lib.experiments.common import jsonable
from fa_lib.experiments.registry import ThesisResult, builders, find
from fa_lib.experiments.runs import RunCache
from fa_lib.experiments.verdict import RULE, Verdict
from fa_lib.profiles import Profile, Section, get_profile
from fa_lib.results import write_figure, write_table


class ChapterContext:
    """Base of every chapter's context. ``runs_root``: where the run cache lives (None: the default
    root of :mod:`fa_lib.experiments.runs`; False: keep runs in memory only)."""

    chapter: int = 0

    def __init__(self, profile: str | Profile = "quick", *, seed: int = 0, device: str = "auto",
                 data_root: str | os.PathLike | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = print, runs_root: Any = None):
        self.profile = get_profile(profile)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.data_root = None if data_root in (None, "") else Path(data_root)
        self.progress = progress
        self.log = log or (lambda message: None)
        self.runs = RunCache(runs_root, profile=self.profile.name)
        self.results: dict[str, ThesisResult] = {}
        self.started = time.perf_counter()

    @property
    def scale(self) -> Section:
        """The profile's typed section of this chapter (``profile.ch4`` for chapter 4, ...)."""
        return self.profile.section(f"ch{self.chapter}")

    @property
    def name(self) -> str:
        return self.profile.name

    # -- builders ----------------------------------------------------------------------------------

    def build(self, thesis_id: str, kind: str | None = None, **kwargs: Any) -> ThesisResult:
        """Run the registered builder of ``thesis_id`` (e.g. ``"4.3"``, ``"figure 5.7"``) on this
        context; the result is also kept in ``self.results``."""
        builder = find(thesis_id, kind)
        if builder.chapter != self.chapter:
            raise ValueError(f"{builder.kind} {builder.thesis_id} belongs to chapter {builder.chapter}, "
                             f"not to this chapter-{self.chapter} context")
        result = builder(self, **kwargs)
        self.results[f"{builder.kind} {builder.thesis_id}"] = result
        return result

    def builders(self, kind: str | None = None):
        return builders(self.chapter, kind)

    def verdicts(self) -> list[tuple[str, Verdict]]:
        """Every verdict of the results built so far, with the id of the result."""
        return [(key, v) for key, r in self.results.items() for v in r.verdicts]

    def verdict_table(self) -> pd.DataFrame:
        """One row per finding judged so far: result, claim, outcome, gap, 2 standard errors."""
        rows = [{"result": key, "finding": v.claim, "outcome": v.outcome,
                 "gap": v.gap, "2 x standard error": 2 * v.standard_error, "metric": v.metric}
                for key, v in self.verdicts()]
        return pd.DataFrame(rows, columns=["result", "finding", "outcome", "gap", "2 x standard error", "metric"])

    # -- writing results with the chapter's provenance ---------------------------------------------

    def provenance_extra(self) -> dict[str, Any]:
        """What every result of the chapter records besides the common provenance."""
        return {f"ch{self.chapter}_scale": jsonable(self.scale.to_dict()), "statistical_rule": RULE}

    def write_table(self, table_id: str, df: pd.DataFrame, *, dataset: str, dataset_size: int | None,
                    caption: str, budget: Any = None, wall_time_s: float | None = None,
                    extra: Mapping[str, Any] | None = None, verdicts: list[Verdict] | None = None) -> Path:
        record = self.provenance_extra()
        record.update(extra or {})
        if verdicts:
            record["verdicts"] = [v.to_dict() for v in verdicts]
        return write_table(table_id, df, profile=self.profile, dataset=dataset, dataset_size=dataset_size,
                           seed=self.seed, training_budget=jsonable(budget), extra=jsonable(record),
                           wall_time_s=wall_time_s, device=str(self.device), caption=caption)

    def jobs(self) -> list[str]:
        """Every network the chapter trains, as job names for :meth:`run_job` (parents before children):
        what ``fa-lib train`` runs, alone or under ``torchrun``."""
        raise NotImplementedError(f"chapter {self.chapter} has no `fa-lib train` jobs yet: its notebook trains "
                                  "its networks")

    def run_job(self, job: str) -> None:
        """Train (or load from the run cache) the network of one of :meth:`jobs`."""
        raise NotImplementedError(f"chapter {self.chapter} has no `fa-lib train` jobs yet")

    def in_worker_processes(self, jobs: Sequence[Any], method: str, workers: int) -> Iterator[Any]:
        """Call ``getattr(self, method)(job)`` for every job in forked processes, ``workers`` at a time
        with one torch thread each (two trainings on two cores), yielding each job when it is done.
        The work reaches this process through the run cache, where each job leaves its trained network."""
        global _POOL_TASK
        _POOL_TASK = (self, method)
        try:
            with mp.get_context("fork").Pool(min(workers, len(jobs)), initializer=_pool_init) as pool:
                yield from pool.imap_unordered(_pool_call, jobs)
        finally:
            _POOL_TASK = None

    def write_figure(self, fig, fig_id: str, *, dataset: str, caption: str, budget: Any = None,
                     extra: Mapping[str, Any] | None = None) -> Path:
        record = self.provenance_extra()
        record["training_budget"] = jsonable(budget)
        record.update(extra or {})
        return write_figure(fig, fig_id, profile=self.profile, dataset=dataset, seed=self.seed,
                            extra=jsonable(record), caption=caption)


#: the context and method the worker processes of :meth:`ChapterContext.in_worker_processes` call
_POOL_TASK: tuple[ChapterContext, str] | None = None


def _pool_init() -> None:
    torch.set_num_threads(1)


def _pool_call(job: Any) -> Any:
    if _POOL_TASK is None:
        raise RuntimeError("no chapter to work for (in_worker_processes sets it before forking)")
    ctx, method = _POOL_TASK
    ctx.log = lambda message: None
    getattr(ctx, method)(job)
    return job
