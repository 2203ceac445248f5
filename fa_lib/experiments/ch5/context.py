"""The chapter-5 context: its setup and data, and every trained run, cached on disk.

:class:`Chapter5` trains each (network, recipe, seed) once and shares it between the tables that use
it, exactly as the thesis's tables share their "Ours, Final" row. A trained network is kept in the
on-disk run cache (``ctx.runs``, :class:`fa_lib.experiments.runs.RunCache`): its key records
everything that changes its weights (the :class:`~fa_lib.experiments.ch5.scale.NetSpec` and the
network's constructor arguments at this scale, the :class:`~fa_lib.experiments.ch5.scale.Recipe`,
the crops and targets, the training budget, the training set's identity and size, the seed and,
for a stage-wise stack, the key of the smaller network it starts from), so a second context with
the same profile and runs root trains nothing. Evaluation on the test sets is recomputed each time
a run is loaded (a few seconds; nothing about the test sets is cached). An interrupted run resumes
from the trainer's checkpoint in its folder (a checkpoint that does not match is discarded and the
run restarts).

All runs of a comparison use the same data, the same data order for a given seed, the same schedule
and the same number of optimiser steps; comparisons are repeated over ``setup.seeds``.
"""
from __future__ import annotations

import multiprocessing as mp
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from fa_lib import metrics
from fa_lib.data.augment import thesis_augmentation
from fa_lib.data.parsing import N_PARSING_CLASSES, ParsingInputs
from fa_lib.data.pipeline import FanInputs, TransformedDataset
from fa_lib.experiments.ch5.data import (Ch5Data, PreparedSet, dataset_identity, load_data, outputs_to_landmarks,
                                         predict_outputs, yaw_bins)
from fa_lib.experiments.ch5.scale import (BLOCK_SPECS, BOTTLENECK, BOTTLENECK_REAL, BOTTLENECK_WIDER_REAL, L2_LOSS,
                                          LANDMARKS, MS_NO1X1, MULTISCALE, NO_AUGMENTATION, OURS, OURS_AVG_POOL,
                                          OURS_IMPROVED, OURS_REAL, OURS_REDUCED, OURS_RELU, PARSING, PARSING_ROWS,
                                          PLAIN_NO1X1, WIDER, Ch5Setup, NetSpec, Recipe, cardinality_spec, ch5_setup,
                                          depth_spec, stacked_spec)
from fa_lib.experiments.ch3.context import CaleRun, Chapter3, cached_cale
from fa_lib.experiments.common import AUC_THRESHOLD, jsonable
from fa_lib.experiments.context import ChapterContext
from fa_lib.experiments.runs import TRAINER_CHECKPOINT, run_key, seeded
from fa_lib.models.fan import parameter_count
from fa_lib.profiles import Profile
from fa_lib.train import HISTORY_NAME, Trainer, fan_stack_modules, split_train_val

#: bump when the training code changes what a cached run's weights would be
RUN_FORMAT = 1
#: sub-folders of a stacked run's folder holding each phase's resumable checkpoint (5.7.2)
STACK_PHASES = ("stage", "joint")
#: offset of the validation faces' (deterministic) crop seed from the notebook's seed
VALIDATION_SEED = 7919
#: images per forward pass of the validation (inference only: larger than a training batch is cheaper)
VALIDATION_BATCH = 32


@dataclass
class RunResult:
    """A trained network and its measurements on the chapter's test sets. ``cached``: loaded from the
    run cache (trained by an earlier context), not trained by this one."""

    net: NetSpec
    recipe: Recipe
    seed: int
    model: nn.Module
    parameters: int
    thesis_parameters: int
    steps: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    predictions: np.ndarray | None = None   # (M, 68, 2) image px on the test set (landmarks)
    nme: np.ndarray | None = None           # (M,) eq. 4.1 on all 68 points
    parsing: dict[str, Any] | None = None   # segmentation_scores on the parsing test set
    parsing_pred: np.ndarray | None = None  # (M, H, H) predicted labels
    pifa_predictions: np.ndarray | None = None  # (M, 68, 2) image px on the AFLW-PIFA faces
    note: str = ""
    cached: bool = False
    folder: Path | None = None

    @property
    def auc(self) -> float:
        """AUC@7% (in %) of the box-normalised NME (eq. 4.1) on the yaw-balanced test set."""
        return 100.0 * metrics.auc_at(self.nme, AUC_THRESHOLD)

    @property
    def mean_nme(self) -> float:
        """Mean NME (eq. 4.1, in %) on the yaw-balanced test set."""
        return 100.0 * float(np.mean(self.nme))

    @property
    def seconds_per_step(self) -> float:
        return self.train_seconds / max(self.steps, 1)

    def summary(self) -> dict[str, Any]:
        d = {"network": self.net.describe(), "recipe": self.recipe.describe(), "seed": self.seed,
             "parameters": self.parameters, "steps": self.steps,
             "train_seconds": round(self.train_seconds, 2), "from_run_cache": self.cached}
        if self.nme is not None:
            d.update(auc=round(self.auc, 3), mean_nme_pct=round(100 * float(np.mean(self.nme)), 3))
        if self.parsing is not None:
            d.update({k: round(100 * self.parsing[k], 3) for k in ("pixel_accuracy", "mean_accuracy", "mean_iu")})
        if self.note:
            d["note"] = self.note
        return d


Job = tuple[NetSpec, Recipe, int]


class Chapter5(ChapterContext):
    """The chapter's state: setup, data, prepared test sets and every run used so far.

    ``run(net, recipe, seed)`` loads the run from the on-disk cache or trains it (once) and returns
    its :class:`RunResult`; ``runs(net, recipe)`` does it for every seed of the setup;
    ``train_all()`` makes every run of the notebook, ``setup.workers`` at a time.
    """

    chapter = 5

    def __init__(self, profile: str | Profile = "quick", *, seed: int = 0, device: str = "auto",
                 data_root=None, progress: bool = False, log: Callable[[str], None] | None = print,
                 runs_root: Any = None):
        super().__init__(profile, seed=seed, device=device, data_root=data_root, progress=progress, log=log,
                         runs_root=runs_root)
        self.setup: Ch5Setup = ch5_setup(self.profile)
        if self.setup.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(int(self.setup.threads))
        started = time.perf_counter()
        self.data: Ch5Data = load_data(self.setup, seed=self.seed, data_root=self.data_root, progress=progress)
        self.data_seconds = time.perf_counter() - started
        self._prepared: dict[str, PreparedSet] = {}
        self._runs: dict[Job, RunResult] = {}
        self.test_bins = yaw_bins(self.data.test)
        self.packed_inference = None  # the PackedInferenceResult of table 5.packed_inference, once built

    # -- data --------------------------------------------------------------------------------------

    @property
    def seeds(self) -> tuple[int, ...]:
        """Training seeds: the setup's, offset by the notebook's ``seed``."""
        return tuple(self.seed + s for s in self.setup.seeds)

    @property
    def sweep_seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + s for s in self.setup.sweep_seeds)

    def landmark_inputs(self, augment: bool, landmarks: str = "3d") -> FanInputs:
        return FanInputs(landmarks, input_size=self.setup.input_size, heatmap_size=self.setup.heatmap_size,
                         sigma=self.setup.sigma, augment=thesis_augmentation("binary") if augment else None)

    def parsing_inputs(self, augment: bool) -> ParsingInputs:
        return ParsingInputs(input_size=self.setup.parsing_input_size, output_size=self.setup.parsing_output_size,
                             zoom=self.setup.parsing_zoom, augment=thesis_augmentation("binary") if augment else None)

    def _split(self) -> tuple[Dataset, Dataset | None]:
        """The training faces and the held-out validation faces (``setup.val_fraction`` of them, the
        same split for every run of the notebook; None when there are none)."""
        if self.setup.val_fraction <= 0:
            return self.data.train, None
        train, val = split_train_val(self.data.train, self.setup.val_fraction, seed=self.seed)
        return train, (val if len(val) else None)

    def training_set(self, recipe: Recipe, seed: int) -> Dataset:
        transform = (self.parsing_inputs(recipe.augment) if recipe.task == "parsing"
                     else self.landmark_inputs(recipe.augment))
        return TransformedDataset(self._split()[0], transform, seed=seed)

    def validation_set(self, recipe: Recipe) -> Dataset | None:
        """The held-out faces as at test time (no augmentation), for a landmark run's per-epoch
        validation NME; None for face parsing or when ``setup.val_fraction`` is 0."""
        val = self._split()[1]
        if val is None or recipe.task == "parsing":
            return None
        return TransformedDataset(val, self.landmark_inputs(False), seed=self.seed + VALIDATION_SEED)

    def prepared(self, name: str) -> PreparedSet:
        """``"test"`` (68 points), ``"pifa"`` (34 points) or ``"parsing"`` (test faces with masks)."""
        if name not in self._prepared:
            if name == "test":
                self._prepared[name] = PreparedSet(self.data.test, self.landmark_inputs(False))
            elif name == "pifa":
                if self.data.pifa is None:
                    raise FileNotFoundError("no AFLW-PIFA set: put it under data_root (see fa_lib.data.real)")
                # the real AFLW-PIFA's 34 points are annotated "from a 3D perspective" but stored as its 2D
                # points (fa_lib.data.formats.read_aflw_pifa_mat); the stand-in stores them as 3D projections
                kind = "2d" if getattr(self.data.pifa, "kind", None) == "aflw_pifa" else "3d"
                self._prepared[name] = PreparedSet(self.data.pifa, self.landmark_inputs(False, kind))
            elif name == "parsing":
                self._prepared[name] = PreparedSet(self.data.test, self.parsing_inputs(False))
            else:
                raise ValueError(f"unknown prepared set {name!r}; choose test, pifa or parsing")
        return self._prepared[name]

    # -- what identifies a run ---------------------------------------------------------------------

    def inputs_record(self, recipe: Recipe) -> dict[str, Any]:
        """The crops and targets a recipe trains on (part of a run's key)."""
        s = self.setup
        augment = asdict(thesis_augmentation("binary")) if recipe.augment else None
        if recipe.task == "parsing":
            return {"parsing": True, "input_size": s.parsing_input_size, "output_size": s.parsing_output_size,
                    "zoom": s.parsing_zoom, "augment": augment}
        return {"landmarks": "3d", "input_size": s.input_size, "heatmap_size": s.heatmap_size, "sigma": s.sigma,
                "augment": augment}

    def run_record(self, net: NetSpec, recipe: Recipe, seed: int) -> dict[str, Any]:
        """Everything that changes a run's weights: its cache key is :func:`~fa_lib.experiments.runs.run_key`
        of this record. A stage-wise stack records the key of the smaller network it starts from."""
        net, recipe, seed = self._normalise(net, recipe, seed)
        s = self.setup
        record: dict[str, Any] = {
            "chapter": 5, "format": RUN_FORMAT, "net": asdict(net),
            "model": jsonable(net.fan_kwargs(s.width, s.hg_depth, s.stem_channels)),
            "recipe": asdict(recipe), "inputs": self.inputs_record(recipe),
            "train": jsonable(s.train_config().key_record()), "train_set": dataset_identity(self.data.train),
            "seed": seed}
        if s.val_fraction > 0:  # fewer training faces (validation itself changes no weight)
            record["held_out"] = {"fraction": s.val_fraction, "split_seed": self.seed}
        if net.stacks > 1:
            record["chain"] = {"previous": run_key(self.run_record(replace(net, stacks=net.stacks - 1), recipe, seed)),
                               "phase_iterations": s.stage_iterations(), "stage_fraction": s.stage_fraction}
        return record

    @staticmethod
    def run_name(net: NetSpec, recipe: Recipe, seed: int) -> str:
        """The readable part of a run's folder name."""
        aug = "" if recipe.augment else " no-aug"
        text = f"{net.describe()} {recipe.task} {recipe.loss}{aug} seed{seed}"
        return "-".join("".join(c if c.isalnum() or c == "." else " " for c in text).split())

    # -- training ----------------------------------------------------------------------------------

    def _normalise(self, net: NetSpec, recipe: Recipe, seed: int) -> Job:
        outputs = N_PARSING_CLASSES if recipe.task == "parsing" else 68
        return (net if net.outputs == outputs else replace(net, outputs=outputs), recipe, int(seed))

    def _build(self, net: NetSpec, seed: int) -> nn.Module:
        with seeded(seed):  # the same initial weights for a given (network, seed), whatever ran before
            return net.build(self.setup)

    def _fit(self, model: nn.Module, recipe: Recipe, seed: int, folder: Path | None, iterations: int | None = None,
             name: str | None = None, **extra: Any) -> tuple[list[dict[str, Any]], float, int]:
        """Train ``model`` in place (the trainer seeds itself with ``seed``); ``folder`` keeps its
        resumable checkpoint. Returns (history, seconds, optimiser steps)."""
        config = self.setup.train_config()
        if iterations is not None:
            config = replace(config, iterations=int(iterations), epochs=None)

        def trainer() -> Trainer:
            return Trainer(model, self.training_set(recipe, seed), self.validation_set(recipe), loss=recipe.loss,
                           device=self.device, seed=seed, progress=self.progress, checkpoint_dir=folder,
                           val_batch_size=VALIDATION_BATCH, name=name, **config.trainer_kwargs(), **extra)

        started = time.perf_counter()
        t = trainer()
        try:
            history = t.fit()
        except ValueError as error:
            if folder is None or "cannot resume" not in str(error):
                raise
            # a checkpoint of other settings (older code): start this run again from its initial weights
            self.log(f"[ch5] {folder.name}: {error}; restarting the run")
            for p in model.parameters():
                p.requires_grad_(True)
            (folder / TRAINER_CHECKPOINT).unlink(missing_ok=True)
            (folder / HISTORY_NAME).unlink(missing_ok=True)
            t = trainer()
            history = t.fit()
        return history, time.perf_counter() - started, t.step

    def _train_single(self, model: nn.Module, net: NetSpec, recipe: Recipe, seed: int, folder: Path | None):
        history, seconds, steps = self._fit(model, recipe, seed, folder, name=self.run_name(net, recipe, seed))
        return {"steps": steps, "train_seconds": seconds, "note": ""}, history

    def _train_stacked(self, model: nn.Module, net: NetSpec, recipe: Recipe, seed: int, folder: Path | None):
        """Section 5.7.2: the K-stack network starts from the trained (K-1)-stack one; its new stack
        is trained with the others frozen (supervising the first K outputs), then the whole network
        jointly. Budgets: ``stage_fraction`` of one run for each phase."""
        previous = self.run(replace(net, stacks=net.stacks - 1), recipe, seed)
        missing, unexpected = model.load_state_dict(previous.model.state_dict(), strict=False)
        if unexpected:
            raise RuntimeError(f"stacked network does not contain the {net.stacks - 1}-stack one: {unexpected}")
        phase = self.setup.stage_iterations()
        stage, joint = (None, None) if folder is None else (folder / STACK_PHASES[0], folder / STACK_PHASES[1])
        name = self.run_name(net, recipe, seed)
        h1, s1, n1 = self._fit(model, recipe, seed, stage, phase, name=f"{name} (new stack)",
                               trainable_modules=fan_stack_modules(model, net.stacks - 1),
                               supervised_stacks=net.stacks, history_extra={"phase": f"stage{net.stacks}"})
        h2, s2, n2 = self._fit(model, recipe, seed, joint, phase, name=f"{name} (joint)",
                               history_extra={"phase": "joint"})
        note = (f"stage-wise: {previous.steps} steps as {net.stacks - 1} stack(s), "
                f"{n1} steps new stack only, {n2} steps jointly")
        budget = {"steps": previous.steps + n1 + n2, "train_seconds": previous.train_seconds + s1 + s2, "note": note}
        return budget, previous.history + h1 + h2

    def run(self, net: NetSpec, recipe: Recipe = LANDMARKS, seed: int | None = None) -> RunResult:
        """The run of ``net`` with ``recipe`` and ``seed``: from memory, else from the run cache, else
        trained now (and cached)."""
        net, recipe, seed = self._normalise(net, recipe, self.seed if seed is None else seed)
        key = (net, recipe, seed)
        if key in self._runs:
            return self._runs[key]
        model = self._build(net, seed)
        train = self._train_stacked if net.stacks > 1 else self._train_single
        cached = self.runs.get_or_train(self.run_name(net, recipe, seed), self.run_record(net, recipe, seed), model,
                                        lambda folder: train(model, net, recipe, seed, folder))
        if not cached.cached and cached.folder is not None:
            for phase in STACK_PHASES:  # the phases' resumable checkpoints: the run is finished
                shutil.rmtree(cached.folder / phase, ignore_errors=True)
        budget = cached.budget
        result = RunResult(net=net, recipe=recipe, seed=seed, model=cached.model.to(self.device),
                           parameters=parameter_count(cached.model), thesis_parameters=net.thesis_parameters(),
                           steps=int(budget["steps"]), train_seconds=float(budget["train_seconds"]),
                           history=list(cached.history), note=budget.get("note", ""), cached=cached.cached,
                           folder=cached.folder)
        self.evaluate(result)
        self._runs[key] = result
        self._log_run(result)
        return result

    def _log_run(self, result: RunResult) -> None:
        info = result.summary()
        score = (f"AUC@7% {info['auc']:.1f}" if "auc" in info else
                 f"mean IU {info.get('mean_iu', float('nan')):.1f}")
        how = "loaded from the run cache" if result.cached else "trained"
        self.log(f"[ch5] {result.net.describe()} | {result.recipe.describe()} | seed {result.seed}: {score}, "
                 f"{result.steps} steps in {result.train_seconds:.0f} s ({how})")

    def train_all(self, jobs: Sequence[Job] | None = None) -> None:
        """Make every run of ``jobs`` (default: :func:`chapter_jobs`) not in memory yet, ``setup.workers``
        at a time: each is loaded from the run cache, or trained and cached.

        Small networks use a CPU badly through intra-op threads (on a 2-core machine shared with
        other processes, two torch threads made a training step ten times slower than one), while
        independent runs parallelise perfectly. So on a CPU each run is made in its own forked
        process with one torch thread, which writes it to the run cache; the parent's test sets are
        prepared before the fork and shared. Each run seeds itself, so its result does not depend on
        which process trained it. Stacked networks (a chain of runs, 5.7.2) go after the
        single-stack ones, one chain per process. With ``workers`` <= 1 or a GPU, runs are made here,
        one after the other.
        """
        jobs = list(jobs if jobs is not None else chapter_jobs(self))
        todo = [j for j in dict.fromkeys(self._normalise(*j) for j in jobs) if j not in self._runs]
        if not todo:
            return
        for name in ("test", "parsing") + (("pifa",) if self.data.pifa is not None else ()):
            self.prepared(name)
        single = [j for j in todo if j[0].stacks == 1]
        chains = [j for j in todo if j[0].stacks > 1]
        # a chain is made by one process: keep only the longest chain per (recipe, seed, base)
        longest: dict[tuple, Job] = {}
        for net, recipe, seed in chains:
            key = (replace(net, stacks=1), recipe, seed)
            if key not in longest or longest[key][0].stacks < net.stacks:
                longest[key] = (net, recipe, seed)
        for batch in (single, list(longest.values())):
            batch = sorted(batch, key=lambda j: -_relative_cost(j[0]))
            if self.setup.workers <= 1 or self.device.type != "cpu" or len(batch) <= 1:
                for net, recipe, seed in batch:
                    self.run(net, recipe, seed)
                continue
            global _POOL_CHAPTER
            _POOL_CHAPTER = self
            try:
                ctx = mp.get_context("fork")
                with ctx.Pool(min(self.setup.workers, len(batch)), initializer=_pool_init) as pool:
                    for results in pool.imap_unordered(_pool_run, batch):
                        for result in results:
                            key = (result.net, result.recipe, result.seed)
                            if key not in self._runs:
                                self._runs[key] = result
                                self._log_run(result)
            finally:
                _POOL_CHAPTER = None

    # -- fa-lib train ------------------------------------------------------------------------------

    def jobs(self) -> list[str]:
        """What ``fa-lib train ch5`` can train: every run of the notebook (:func:`chapter_jobs`), by its
        run name (network, task, loss, augmentation, seed)."""
        return list(dict.fromkeys(self.run_name(*self._normalise(*job)) for job in chapter_jobs(self)))

    def run_job(self, job: str) -> None:
        jobs = {self.run_name(*self._normalise(*j)): self._normalise(*j) for j in chapter_jobs(self)}
        if job not in jobs:
            raise ValueError(f"unknown chapter-5 job {job!r}; `fa-lib train ch5 --list` names them")
        self.run(*jobs[job])

    def runs_of(self, net: NetSpec, recipe: Recipe = LANDMARKS, seeds: Iterable[int] | None = None) -> list[RunResult]:
        """The runs of ``net`` with ``recipe`` for every seed of the setup (or ``seeds``)."""
        return [self.run(net, recipe, s) for s in (self.seeds if seeds is None else seeds)]

    def trained(self) -> list[RunResult]:
        """Every run used so far (trained here or loaded from the run cache)."""
        return list(self._runs.values())

    def newly_trained(self) -> list[RunResult]:
        """The runs this context trained (not loaded from the run cache)."""
        return [r for r in self._runs.values() if not r.cached]

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self, result: RunResult) -> None:
        if result.recipe.task == "parsing":
            data = self.prepared("parsing")
            logits = predict_outputs(result.model, data["image"], device=self.device)
            pred = logits.argmax(1).numpy().astype(np.uint8)
            result.parsing_pred = pred
            result.parsing = metrics.segmentation_scores(pred, data["mask"].numpy(), N_PARSING_CLASSES)
            return
        data = self.prepared("test")
        heat = predict_outputs(result.model, data["image"], device=self.device)
        result.predictions = outputs_to_landmarks(heat, data["matrix"], self.setup.decoder)
        result.nme = np.asarray(metrics.nme_box(result.predictions, data["landmarks_image"].numpy(),
                                                data["box"].numpy()), np.float64)

    def cale(self) -> tuple[Chapter3 | None, list[CaleRun]]:
        """Chapter 3's CALE runs on the same AFLW-PIFA test faces, from the run cache (trained by the
        chapter-3 notebook; none is trained here): (chapter-3 context, runs), runs empty when chapter 3
        has not been run with this profile and run cache."""
        if not hasattr(self, "_cale"):
            if self.data.pifa is None:
                self._cale = (None, [])
            else:
                root = self.runs.root if self.runs.root is not None else False
                ch3, runs = cached_cale(self.profile, seed=self.seed, runs_root=root, data_root=self.data_root,
                                        device=str(self.device))
                # CALE's numbers count only on the very faces this chapter tests
                same_faces = dataset_identity(ch3.data.test) == dataset_identity(self.data.pifa)
                self._cale = (ch3, runs if same_faces else [])
        return self._cale

    def pifa_predictions(self, result: RunResult) -> np.ndarray:
        """68-point predictions (image px) of a landmark run on the AFLW-PIFA (stand-in) faces."""
        if result.pifa_predictions is None:
            data = self.prepared("pifa")
            heat = predict_outputs(result.model, data["image"], device=self.device)
            result.pifa_predictions = outputs_to_landmarks(heat, data["matrix"], self.setup.decoder)
        return result.pifa_predictions


_POOL_CHAPTER: Chapter5 | None = None  # the chapter a forked training process works for


def _pool_init() -> None:
    torch.set_num_threads(1)


def _pool_run(job: Job) -> list[RunResult]:
    """In a forked process: make ``job`` (and what it depends on; written to the run cache) and
    return the new results."""
    ch = _POOL_CHAPTER
    if ch is None:
        raise RuntimeError("no chapter to train for (train_all sets it before forking)")
    before = set(ch._runs)
    ch.log = lambda message: None  # the parent logs the results as they come back
    ch.run(*job)
    return [r for key, r in ch._runs.items() if key not in before]


def _relative_cost(net: NetSpec) -> float:
    """Rough cost of a run relative to binary "Ours" (to start the longest runs first)."""
    cost = {"multiscale": 1.8, "multiscale_no1x1": 1.6, "wider": 1.4}.get(net.block, 1.0)
    cost *= 0.65 if not net.binary else 1.0
    cost *= (net.cardinality or 1) ** 0.3
    return cost * net.stacks


def chapter_jobs(ch: Chapter5) -> list[Job]:
    """Every (network, recipe, seed) the notebook's tables, figures and explorer use."""
    s = ch.setup
    per_seed = [BOTTLENECK, BOTTLENECK_REAL, WIDER, MULTISCALE, MS_NO1X1, PLAIN_NO1X1, OURS, OURS_REDUCED,
                BOTTLENECK_WIDER_REAL, OURS_REAL, OURS_AVG_POOL, OURS_RELU, OURS_IMPROVED]
    jobs = [(net, LANDMARKS, seed) for seed in ch.seeds for net in per_seed]
    jobs += [(OURS, NO_AUGMENTATION, seed) for seed in ch.seeds]
    jobs += [(OURS, L2_LOSS, seed) for seed in ch.seeds]
    jobs += [(net, PARSING, seed) for seed in ch.seeds for _, net in PARSING_ROWS]
    if s.real_twins:
        jobs += [(replace(spec, binary=False), LANDMARKS, ch.seed) for spec in BLOCK_SPECS.values()]
    for seed in ch.sweep_seeds:
        jobs += [(depth_spec(d), LANDMARKS, seed) for d in s.depths]
        jobs += [(cardinality_spec(c), LANDMARKS, seed) for c in s.cardinalities]
        jobs += [(stacked_spec(k), LANDMARKS, seed) for k in range(2, s.max_stacks + 1)]
    return jobs


def explorer_networks(ch: Chapter5) -> list[tuple[str, RunResult]]:
    """(label, run) of every Fig. 5.3 block, real and binary (real twins when ``setup.real_twins``;
    otherwise only the bottleneck's and the hierarchical block's)."""
    out = []
    for name, spec in BLOCK_SPECS.items():
        specs = [replace(spec, binary=False), spec] if ch.setup.real_twins else [spec]
        if not ch.setup.real_twins and name in ("bottleneck", "hierarchical"):
            specs = [replace(spec, binary=False), spec]
        for s in specs:
            out.append((f"{name}, {'binary' if s.binary else 'real'}", ch.run(s)))
    return out
