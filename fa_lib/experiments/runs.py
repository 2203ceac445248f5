"""The on-disk cache of trained networks, shared by every chapter.

A run is one network trained with one budget on one dataset with one seed. Its **key** is a hash of a
record that names all of these (the chapter builds the record: model constructor arguments, data,
:class:`~fa_lib.profiles.TrainConfig`, seed, anything else that changes the weights). A finished run
lives in ``<root>/<profile>/<name>-<key>/`` as ``model.pt`` (the state_dict) and ``meta.json`` (the
record, the budget actually spent, the training history); an interrupted one keeps the trainer's
resumable checkpoint there and continues where it stopped. Every notebook, table and rerun asks the
cache first, so a rerun of an unchanged chapter retrains nothing.

``fa-lib runs list`` and ``fa-lib runs clear`` show and remove cached runs. The root is
``$FA_LIB_RUNS`` when set, else ``<checkout>/checkpoints`` (git-ignored), else
``<fa_lib cache>/checkpoints``.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset

from fa_lib.atomic import atomic_torch_save, atomic_write_text
from fa_lib.data.face_model import cache_root
from fa_lib.data.real import RealFaceDataset
from fa_lib.data.synthetic import SyntheticFaces
from fa_lib.paths import project_root

ROOT_ENV = "FA_LIB_RUNS"
MODEL_FILE = "model.pt"
META_FILE = "meta.json"
#: the trainer's resumable checkpoint (``fa_lib.train.CHECKPOINT_NAME``); older finished runs kept it
#: as their only weights file
TRAINER_CHECKPOINT = "last.pt"


def default_root() -> Path:
    """``$FA_LIB_RUNS``, else ``<checkout>/checkpoints``, else ``<fa_lib cache>/checkpoints``."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    try:
        return project_root() / "checkpoints"
    except FileNotFoundError:
        return cache_root() / "checkpoints"


def run_key(record: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-1 of the record as sorted JSON (tuples as lists, others as str)."""
    return hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("/", "-")


def dataset_identity(dataset: Dataset) -> dict[str, Any]:
    """What identifies a training set in a run's cache key: a rendered synthetic set by its name,
    size and the hash of its generator spec (people, poses, seed, image size, generator version); a
    real set by its kind, folder, split and size."""
    if isinstance(dataset, SyntheticFaces):
        manifest = dataset.manifest
        return {"synthetic": manifest["name"], "size": len(dataset),
                "spec": run_key({"spec": manifest.get("spec"), "generator": manifest.get("generator_version")})}
    if isinstance(dataset, RealFaceDataset):
        return {"real": dataset.kind, "root": str(dataset.root), "split": dataset.split, "size": len(dataset)}
    if isinstance(getattr(dataset, "identity", None), dict):  # e.g. chapter 6's pairs made from real faces
        return dict(dataset.identity)
    return {"dataset": type(dataset).__name__, "name": getattr(dataset, "name", None), "size": len(dataset)}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """A block whose torch random numbers (e.g. a network's initial weights) depend on ``seed`` only,
    not on whatever ran before in the process; the global generator is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@dataclass
class CachedRun:
    """A trained network and how it was obtained."""

    name: str
    model: nn.Module
    folder: Path | None
    record: dict[str, Any]
    budget: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False

    @property
    def key(self) -> str:
        return run_key(self.record)


class RunCache:
    """Trained networks on disk, keyed by :func:`run_key`. ``root=False`` disables the disk (runs
    are trained and kept in memory only, e.g. for tests that must not touch the checkout)."""

    def __init__(self, root: str | os.PathLike | None | bool = None, profile: str = "quick"):
        self.root = None if root is False else Path(root) if root not in (None, True) else default_root()
        self.profile = str(profile)

    def folder(self, name: str, record: Mapping[str, Any]) -> Path | None:
        if self.root is None:
            return None
        return self.root / self.profile / f"{slug(name)}-{run_key(record)}"

    def is_finished(self, name: str, record: Mapping[str, Any]) -> bool:
        folder = self.folder(name, record)
        return folder is not None and _finished(folder)

    def load(self, name: str, record: Mapping[str, Any], model: nn.Module) -> CachedRun | None:
        """Load a finished run's weights into ``model`` (returned in eval mode), or None."""
        folder = self.folder(name, record)
        if folder is None or not _finished(folder):
            return None
        meta = json.loads((folder / META_FILE).read_text())
        weights = folder / MODEL_FILE
        if weights.is_file():
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        else:
            state = torch.load(folder / TRAINER_CHECKPOINT, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
        model.eval()
        return CachedRun(name, model, folder, dict(record), meta.get("budget", {}), meta.get("history", []),
                         cached=True)

    def get_or_train(self, name: str, record: Mapping[str, Any], model: nn.Module,
                     train: Callable[[Path | None], tuple[dict[str, Any], list[dict[str, Any]]]]) -> CachedRun:
        """The finished run of ``record`` loaded into ``model``, else ``train(folder)``: it trains
        ``model`` in place (it may keep a resumable checkpoint in ``folder``) and returns
        ``(budget, history)``; the weights and the meta data are then written atomically."""
        hit = self.load(name, record, model)
        if hit is not None:
            return hit
        folder = self.folder(name, record)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        budget, history = train(folder)
        budget = dict(budget)
        budget.setdefault("wall_time_s", round(time.perf_counter() - started, 1))
        model.eval()
        # under torchrun every process trained the same replica: one writes it, all go on together
        distributed = dist.is_available() and dist.is_initialized()
        if folder is not None and (not distributed or dist.get_rank() == 0):
            atomic_torch_save(model.state_dict(), folder / MODEL_FILE)
            atomic_write_text(folder / META_FILE, json.dumps({"name": name, "budget": budget, "history": history,
                                                              "key": dict(record)}, indent=1, default=str))
            resumable = folder / TRAINER_CHECKPOINT
            if resumable.exists():
                resumable.unlink()  # the weights are in MODEL_FILE; the optimiser state is not needed
        if distributed:
            dist.barrier()
        return CachedRun(name, model, folder, dict(record), budget, history, cached=False)

    # -- listing and clearing ----------------------------------------------------------------------

    def entries(self, profile: str | None = None) -> list[dict[str, Any]]:
        """One dict per run folder: profile, name, key, finished, size (MB), wall time, modified."""
        if self.root is None or not self.root.is_dir():
            return []
        out = []
        for prof_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if profile is not None and prof_dir.name != profile:
                continue
            for folder in sorted(p for p in prof_dir.iterdir() if p.is_dir()):
                name, _, key = folder.name.rpartition("-")
                meta = {}
                if (folder / META_FILE).is_file():
                    try:
                        meta = json.loads((folder / META_FILE).read_text())
                    except ValueError:
                        meta = {}
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                out.append({"profile": prof_dir.name, "name": meta.get("name", name), "key": key,
                            "finished": _finished(folder), "size_mb": round(size / 2**20, 2),
                            "wall_time_s": meta.get("budget", {}).get("wall_time_s"),
                            "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(folder.stat().st_mtime)),
                            "folder": str(folder)})
        return out

    def clear(self, profile: str | None = None, name: str | None = None, unfinished_only: bool = False,
              dry_run: bool = False) -> list[str]:
        """Remove cached runs (all, or of one profile, or whose name matches the glob ``name``);
        returns the folders removed (``dry_run``: the folders that would be removed)."""
        removed = []
        for entry in self.entries(profile):
            if name is not None and not fnmatch.fnmatch(entry["name"].lower(), name.lower()) \
                    and not fnmatch.fnmatch(Path(entry["folder"]).name, name.lower()):
                continue
            if unfinished_only and entry["finished"]:
                continue
            if not dry_run:
                shutil.rmtree(entry["folder"], ignore_errors=True)
            removed.append(entry["folder"])
        return removed


def _finished(folder: Path) -> bool:
    return (folder / META_FILE).is_file() and ((folder / MODEL_FILE).is_file()
                                               or (folder / TRAINER_CHECKPOINT).is_file())
