"""The chapter-3 context: the AFLW-PIFA data, CALE trained in the stages of section 3.1.4 (once per
seed, kept in the run cache), and every trained network's predictions on the test faces.

Two cached runs per seed, in the order of section 3.1.4:

1. the **detector** (:class:`~fa_lib.models.cale.CaleDetector`) trained alone, first as FCN-32s, then
   as FCN-8s (its output is the "CNN detector" row of Table 3.3);
2. **CALE**: the regressor trained with that detector frozen, then both jointly (eq. 3.1 + eq. 3.2);
   its key records the detector run's key, so a new detector means a new CALE.

Each stage goes through the project's one trainer (``fa_lib.train.Trainer``) with its resumable
checkpoint in a sub-folder of the run, so a killed chapter continues where it stopped.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from fa_lib import metrics
from fa_lib.data.augment import thesis_augmentation
from fa_lib.data.pets import pet_landmark_dataset
from fa_lib.data.pipeline import CaleInputs, TransformedDataset
from fa_lib.data.real import RealFaceDataset, make_dataset
from fa_lib.data.synthetic import pifa_standin
from fa_lib.experiments.runs import dataset_identity
from fa_lib.experiments.common import jsonable
from fa_lib.experiments.context import ChapterContext
from fa_lib.experiments.runs import run_key, seeded
from fa_lib.heatmaps import blur_heatmaps, heatmaps_to_image_points
from fa_lib.models.cale import Cale, cale, cale_stage_loss
from fa_lib.models.checkpoints import read_state_dict
from fa_lib.models.fan import parameter_count
from fa_lib.bundled import sha256
from fa_lib.profiles import Ch3Scale, Profile
from fa_lib.train import Trainer, split_train_val

#: bump when the training code changes what a cached CALE's weights would be
RUN_FORMAT = 1
#: the four stages of section 3.1.4 (sub-folders of the runs keep their resumable checkpoints)
STAGES = ("detector-32s", "detector-8s", "regressor", "joint")
#: offset of the validation faces' crop seed from the notebook's seed
VALIDATION_SEED = 7919
EVALUATION = ("NME of eq. 3.3: mean error over the visible points (or all points), divided by the square root of "
              "the area of the face box (the tight box of the 68 ground-truth 2D points); crops from that box; "
              "the 21-point columns are the first 21 of the 34 points (AFLW's); mean and sample std over seeds")


@dataclass
class Ch3Data:
    """Training and test faces of the chapter (the AFLW-PIFA stand-ins unless ``data_root`` is given)."""

    train: Dataset
    test: Dataset
    real: bool = False
    note: str = ""

    def describe(self) -> dict[str, Any]:
        def name(ds):
            if isinstance(ds, RealFaceDataset):
                return f"real {ds.kind} {ds.split} under {ds.root} ({len(ds)} faces)"
            return f"{getattr(ds, 'name', type(ds).__name__)} ({len(ds)} faces)"

        d = {"train": name(self.train), "test": name(self.test), "real": self.real}
        if self.note:
            d["note"] = self.note
        return d


#: where the real AFLW-PIFA may lie under a data root (each with ``train/`` and ``test/`` folders)
PIFA_FOLDERS = ("aflw_pifa", "AFLW-PIFA", ".")
#: the reader's key names (``points_key``, ``visibility_key``) when not given: a JSON file in the
#: AFLW-PIFA folder
PIFA_READER_FILE = "reader.json"


def find_aflw_pifa(data_root) -> Path | None:
    """The AFLW-PIFA folder under ``data_root`` (``aflw_pifa/``, ``AFLW-PIFA/`` or the root itself,
    with ``train/`` and ``test/`` sub-folders of images and ``.mat`` files), or None."""
    root = Path(data_root).expanduser()
    for name in PIFA_FOLDERS:
        folder = root / name
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder.resolve()
    return None


def load_data(profile: Profile, seed: int = 0, data_root=None, pifa_options: Mapping[str, Any] | None = None,
              progress: bool = False) -> Ch3Data:
    """The AFLW-PIFA training and test faces.

    Without ``data_root``, or when it holds no AFLW-PIFA (:func:`find_aflw_pifa`), the synthetic
    stand-ins (train and test drawn from different people, visibility counting occluders). With it,
    the real AFLW-PIFA through :func:`fa_lib.data.real.make_dataset`; the ``.mat`` files' key names
    come from ``pifa_options`` or from ``reader.json`` in the AFLW-PIFA folder, e.g.
    ``{"points_key": "pts", "visibility_key": "vis"}`` (see :func:`fa_lib.data.formats.read_aflw_pifa_mat`).
    """
    folder = None if data_root is None else find_aflw_pifa(data_root)
    if folder is None:
        note = ("" if data_root is None else
                f"no AFLW-PIFA (train/ and test/) under {data_root}: the synthetic stand-in is used")
        return Ch3Data(train=pifa_standin(profile, split="train", seed=seed, progress=progress),
                       test=pifa_standin(profile, split="test", seed=seed, progress=progress), note=note)
    options = dict(pifa_options or {})
    if not options and (folder / PIFA_READER_FILE).is_file():
        options = json.loads((folder / PIFA_READER_FILE).read_text())
    if not {"points_key", "visibility_key"} <= set(options):
        raise ValueError(f"AFLW-PIFA found at {folder}, but the key names of its .mat files are unknown: write "
                         f'{folder / PIFA_READER_FILE} with {{"points_key": ..., "visibility_key": ...}} or pass '
                         "pifa_options=")
    return Ch3Data(train=make_dataset("aflw_pifa", profile, folder, split="train", **options),
                   test=make_dataset("aflw_pifa", profile, folder, split="test", **options), real=True)


@dataclass
class Predictions:
    """A network's output on the test faces: ``points`` (M, N, 2) image px and ``confidence`` (M, N),
    the detector's sigmoid maximum (CALE's per-point visibility score)."""

    points: np.ndarray
    confidence: np.ndarray


@dataclass
class CaleRun:
    """One seed's detector and CALE, their training budget and their test predictions."""

    seed: int
    model: Cale
    detector_steps: int
    cale_steps: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    detector: Predictions | None = None
    cale: Predictions | None = None
    cached: bool = False
    folder: Path | None = None

    @property
    def parameters(self) -> dict[str, int]:
        return {"detector": parameter_count(self.model.detector), "regressor": parameter_count(self.model.regressor)}

    def summary(self) -> dict[str, Any]:
        return {"seed": self.seed, "parameters": self.parameters, "detector_steps": self.detector_steps,
                "cale_steps": self.cale_steps, "train_seconds": round(self.train_seconds, 1),
                "from_run_cache": self.cached}


class Chapter3(ChapterContext):
    """Chapter 3's context: ``Chapter3("quick", seed=0)``. ``run(seed)`` gives a seed's trained
    detector and CALE (:class:`CaleRun`, from the run cache when it is there); ``runs()`` every seed
    of the profile; ``errors(kind, points, visible_only)`` the per-image NME of eq. 3.3."""

    chapter = 3

    def __init__(self, profile: str | Profile = "quick", *, seed: int = 0, device: str = "auto",
                 data_root: str | os.PathLike | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = print, runs_root: Any = None,
                 pifa_options: Mapping[str, Any] | None = None):
        super().__init__(profile, seed=seed, device=device, data_root=data_root, progress=progress, log=log,
                         runs_root=runs_root)
        self.setup: Ch3Scale = self.profile.ch3
        started = time.perf_counter()
        self.data = load_data(self.profile, seed=self.seed, data_root=self.data_root, pifa_options=pifa_options,
                              progress=progress)
        self.data_seconds = time.perf_counter() - started
        if self.data.note:
            self.log(f"[ch3] {self.data.note}")
        self._runs: dict[int, CaleRun] = {}
        self._test: dict[str, torch.Tensor] | None = None
        self.results_cache: dict[str, Any] = {}  # baselines computed once per context
        # the human faces: grey, the setup's points; the pets (Table 3.6): colour, 22 points, no flips
        self.n_points, self.image_channels, self.flips, self.run_prefix = self.setup.n_points, 1, True, "cale"

    def variant(self, data: Ch3Data, *, n_points: int, image_channels: int, flips: bool, run_prefix: str) -> "Chapter3":
        """A copy of this context on other faces (the pets of Table 3.6), sharing the run cache."""
        other = copy.copy(self)
        other.data, other.n_points, other.image_channels = data, int(n_points), int(image_channels)
        other.flips, other.run_prefix = bool(flips), run_prefix
        other._runs, other._test, other.results_cache = {}, None, {}
        return other

    def pets(self) -> tuple[dict[str, Any] | None, str]:
        """Table 3.6's CALE on the pets (:meth:`pet_runs`, made once per context) when ``data_root``
        holds the 22-point annotations (:mod:`fa_lib.data.pets`), else (None, why not)."""
        if "pets" not in self.results_cache:
            if self.data_root is None:
                self.results_cache["pets"] = (None, "the thesis's 22-point pet annotations are not public and no "
                                                    "data_root was given (see fa_lib.data.pets for the layout)")
            else:
                try:
                    sets = {split: pet_landmark_dataset(self.data_root, split) for split in ("trainval", "test")}
                except FileNotFoundError as error:
                    self.results_cache["pets"] = (None, f"the thesis's 22-point pet annotations are not public: "
                                                        f"{error}")
                else:
                    self.results_cache["pets"] = (self.pet_runs(sets), "")
        return self.results_cache["pets"]

    def pet_runs(self, pets: Mapping[str, Dataset]) -> dict[str, Any]:
        """Table 3.6: CALE trained on the pets' ``trainval`` faces (colour, 22 points; no flips: the
        left/right pairs of the thesis's markup are not published) for every seed, and its per-image
        NME on the ``test`` faces of each species."""
        ctx = self.variant(Ch3Data(train=pets["trainval"], test=pets["test"], real=True), n_points=22,
                           image_channels=3, flips=False, run_prefix="cale-pets")
        runs = ctx.runs_all()
        species = np.asarray(pets["test"].species)
        errors = []
        gt, _, boxes = ctx.ground_truth(22)
        for run in runs:
            e = np.asarray(metrics.nme_box(run.cale.points, gt, boxes), np.float64)
            errors.append({"Cats": e[species == "cat"], "Dogs": e[species == "dog"]})
        return {"runs": runs, "errors": errors, "context": ctx}

    # -- data --------------------------------------------------------------------------------------

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + s for s in self.setup.seeds)

    def inputs(self, augment: bool) -> CaleInputs:
        s = self.setup
        scheme = thesis_augmentation("cale")
        if not self.flips:
            scheme = replace(scheme, flip=False)
        return CaleInputs(s.input_size, zoom=s.zoom, disc_radius=s.disc_radius, sigma=s.sigma,
                          augment=scheme if augment else None, channels=self.image_channels)

    def _split(self) -> tuple[Dataset, Dataset | None]:
        if self.setup.val_fraction <= 0:
            return self.data.train, None
        train, val = split_train_val(self.data.train, self.setup.val_fraction, seed=self.seed)
        return train, (val if len(val) else None)

    def training_set(self, seed: int) -> Dataset:
        return TransformedDataset(self._split()[0], self.inputs(True), seed=seed)

    def validation_set(self) -> Dataset | None:
        val = self._split()[1]
        return None if val is None else TransformedDataset(val, self.inputs(False), seed=self.seed + VALIDATION_SEED)

    def test_tensors(self) -> dict[str, torch.Tensor]:
        """The test faces cropped once: ``image``, ``matrix`` (image -> map px), ``landmarks_image``,
        ``visibility``, ``box`` (every network sees the same inputs)."""
        if self._test is None:
            items = TransformedDataset(self.data.test, self.inputs(False), seed=0)
            parts: dict[str, list[torch.Tensor]] = {}
            for batch in DataLoader(items, batch_size=64, shuffle=False):
                for key in ("image", "matrix", "landmarks_image", "visibility", "box", "face_size"):
                    parts.setdefault(key, []).append(batch[key])
            self._test = {k: torch.cat(v) for k, v in parts.items()}
        return self._test

    # -- what identifies a run ---------------------------------------------------------------------

    def model_kwargs(self) -> dict[str, Any]:
        s = self.setup
        return dict(n_points=self.n_points, image_channels=self.image_channels, width_divisor=s.width_divisor,
                    fc_channels=s.fc_channels, fc6_kernel=s.fc6_kernel, regressor_kernels=s.regressor_kernels,
                    batch_norm=s.batch_norm)

    def detector_record(self, seed: int) -> dict[str, Any]:
        s = self.setup
        record = {"chapter": 3, "format": RUN_FORMAT, "network": "cale-detector",
                  "model": jsonable(self.model_kwargs()), "inputs": jsonable(self.inputs(True).record()),
                  "stages": [jsonable(s.stage_config(k).key_record()) for k in (0, 1)],
                  "train_set": dataset_identity(self.data.train),
                  "held_out": {"fraction": s.val_fraction, "split_seed": self.seed}, "seed": int(seed)}
        if s.vgg16_weights:  # the starting weights change the trained ones
            record["vgg16_weights"] = sha256(s.vgg16_weights)
        return record

    def cale_record(self, seed: int) -> dict[str, Any]:
        s = self.setup
        record = dict(self.detector_record(seed), network="cale",
                      stages=[jsonable(s.stage_config(k).key_record()) for k in (2, 3)],
                      detector=run_key(self.detector_record(seed)), detector_weight=s.detector_weight)
        return record

    # -- training ----------------------------------------------------------------------------------

    def _build(self, seed: int) -> Cale:
        with seeded(seed):
            model = cale(**self.model_kwargs())
        if self.setup.vgg16_weights:
            model.detector.load_vgg16_features(read_state_dict(self.setup.vgg16_weights))
        return model

    def _fit(self, model: nn.Module, stage: int, seed: int, folder: Path | None, **extra: Any):
        config = self.setup.stage_config(stage)
        name = STAGES[stage]
        trainer = Trainer(model, self.training_set(seed), self.validation_set(), loss=cale_stage_loss(
            "detector" if stage < 2 else STAGES[stage], self.setup.detector_weight), device=self.device, seed=seed,
            progress=self.progress, checkpoint_dir=None if folder is None else folder / name, val_batch_size=32,
            name=f"CALE {name} seed{seed}", history_extra={"stage": name}, decode_landmarks=True,
            **config.trainer_kwargs(), **extra)
        started = time.perf_counter()
        history = trainer.fit()
        return history, time.perf_counter() - started, trainer.step

    def _train_detector(self, model: Cale, seed: int, folder: Path | None):
        detector = model.detector
        history, seconds, steps = [], 0.0, 0
        for stage, fusion in ((0, "32s"), (1, "8s")):
            detector.fusion = fusion
            h, t, n = self._fit(detector, stage, seed, folder)
            history, seconds, steps = history + h, seconds + t, steps + n
        detector.fusion = "8s"
        return {"steps": steps, "train_seconds": seconds}, history

    def _train_cale(self, model: Cale, seed: int, folder: Path | None):
        h1, t1, n1 = self._fit(model, 2, seed, folder, trainable_modules=[model.regressor])
        h2, t2, n2 = self._fit(model, 3, seed, folder)
        return {"steps": n1 + n2, "train_seconds": t1 + t2}, h1 + h2

    def run(self, seed: int | None = None) -> CaleRun:
        """Seed ``seed``'s detector and CALE: from memory, else from the run cache, else trained now."""
        seed = self.seed if seed is None else int(seed)
        if seed in self._runs:
            return self._runs[seed]
        model = self._build(seed)
        det = self.runs.get_or_train(f"{self.run_prefix}-detector-seed{seed}", self.detector_record(seed), model.detector,
                                     lambda folder: self._train_detector(model, seed, folder))
        detector_predictions = self.predict(model, detector_only=True)
        full = self.runs.get_or_train(f"{self.run_prefix}-seed{seed}", self.cale_record(seed), model,
                                      lambda folder: self._train_cale(model, seed, folder))
        for cached in (det, full):
            if not cached.cached and cached.folder is not None:
                for stage in STAGES:
                    shutil.rmtree(cached.folder / stage, ignore_errors=True)
        model = full.model.to(self.device).eval()
        result = CaleRun(seed=seed, model=model, detector_steps=int(det.budget["steps"]),
                         cale_steps=int(full.budget["steps"]),
                         train_seconds=float(det.budget["train_seconds"]) + float(full.budget["train_seconds"]),
                         history=list(det.history) + list(full.history), cached=det.cached and full.cached,
                         folder=full.folder)
        result.detector = detector_predictions
        result.cale = self.predict(model)
        self._runs[seed] = result
        how = "loaded from the run cache" if result.cached else "trained"
        self.log(f"[ch3] seed {seed}: detector {self.nme(result, 'detector', 34, True):.2f}% / CALE "
                 f"{self.nme(result, 'cale', 34, True):.2f}% NME (34 visible points), {result.detector_steps} + "
                 f"{result.cale_steps} steps in {result.train_seconds:.0f} s ({how})")
        return result

    def jobs(self) -> list[str]:
        return [f"seed:{s}" for s in self.seeds]

    def run_job(self, job: str) -> None:
        kind, _, seed = job.partition(":")
        if kind != "seed" or not seed.lstrip("-").isdigit():
            raise ValueError(f"unknown chapter-3 job {job!r}; the jobs are {', '.join(self.jobs())}")
        self.run(int(seed))

    def runs_all(self) -> list[CaleRun]:
        """Every seed's run; on a CPU with ``workers`` > 1 the missing ones are trained in parallel
        processes (one torch thread each) first."""
        missing = [s for s in self.seeds if s not in self._runs and not self._is_cached(s)]
        workers = self.setup.workers if self.setup.workers is not None else min(2, os.cpu_count() or 1)
        if len(missing) > 1 and workers > 1 and self.device.type == "cpu":
            self.test_tensors()
            for job in self.in_worker_processes([f"seed:{s}" for s in missing], "run_job", workers):
                self.log(f"[ch3] {job} trained in a worker process")
        return [self.run(s) for s in self.seeds]

    def _is_cached(self, seed: int) -> bool:
        return (self.runs.is_finished(f"{self.run_prefix}-detector-seed{seed}", self.detector_record(seed))
                and self.runs.is_finished(f"{self.run_prefix}-seed{seed}", self.cale_record(seed)))

    # -- evaluation --------------------------------------------------------------------------------

    @torch.no_grad()
    def _outputs(self, model: Cale, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(detector sigmoid maps, regressed maps) of the test faces ``indices`` (default: all)."""
        images = self.test_tensors()["image"]
        if indices is not None:
            images = images[list(indices)]
        was_training = model.training
        model.eval()
        det, reg = [], []
        try:
            for i in range(0, len(images), 32):
                logits, regressed = model(images[i:i + 32].to(self.device))
                det.append(torch.sigmoid(logits.float()).cpu())
                reg.append(regressed.float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(det), torch.cat(reg)

    def predict(self, model: Cale, detector_only: bool = False) -> Predictions:
        """The points and the per-point confidence of every test face: decoded from CALE's regressed
        maps, or from the detector's disc maps, each first blurred with a Gaussian of half its
        face's disc radius (:func:`fa_lib.heatmaps.blur_heatmaps`: a disc's argmax is anywhere on its
        flat top, the blurred disc peaks at its centre)."""
        det, reg = self._outputs(model)
        data = self.test_tensors()
        if detector_only:
            radii = self.setup.disc_radius * data["face_size"].numpy()
            maps = torch.cat([blur_heatmaps(det[i:i + 1], 0.5 * float(r)) for i, r in enumerate(radii)])
        else:
            maps = reg
        points, _ = heatmaps_to_image_points(maps, data["matrix"], decoder=self.setup.decoder)
        return Predictions(points=points, confidence=det.flatten(2).amax(-1).numpy())

    def maps(self, run: CaleRun, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """CALE's detector (sigmoid) and regressor maps (K, N, R, R) on the test faces ``indices``."""
        det, reg = self._outputs(run.model, indices)
        return det.numpy(), reg.numpy()

    def ground_truth(self, points: int = 34) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(landmarks (M, points, 2), visibility (M, points), box (M, 4)) of the test faces."""
        data = self.test_tensors()
        return (data["landmarks_image"].numpy()[:, :points], data["visibility"].numpy()[:, :points].astype(bool),
                data["box"].numpy())

    def errors(self, run: CaleRun, kind: str, points: int = 34, visible_only: bool = True) -> np.ndarray:
        """Per-image NME (eq. 3.3, fraction) of ``kind`` ("detector" or "cale") on the first ``points``
        points, visible ones only or all (images without a visible point are dropped)."""
        pred = getattr(run, kind).points[:, :points]
        gt, vis, box = self.ground_truth(points)
        if visible_only:
            e = np.asarray(metrics.nme_visible(pred, gt, vis, box), np.float64)
            return e[np.isfinite(e)]
        return np.asarray(metrics.nme_box(pred, gt, box), np.float64)

    def nme(self, run: CaleRun, kind: str, points: int = 34, visible_only: bool = True) -> float:
        """Mean NME (%) of eq. 3.3."""
        return 100.0 * float(np.mean(self.errors(run, kind, points, visible_only)))

    def provenance_extra(self) -> dict[str, Any]:
        extra = super().provenance_extra()
        extra.update(evaluation=EVALUATION, data=self.data.describe())
        return extra


def cached_cale(profile: str | Profile, *, seed: int = 0, runs_root: Any = None, data_root=None,
                device: str = "cpu") -> tuple[Chapter3, list[CaleRun]]:
    """Chapter 3's context and the CALE runs the run cache already holds (none is trained): what
    chapter 5 compares its binary network with on the same AFLW-PIFA test faces (Tables 5.11, 5.12,
    Fig. 5.5a). Run chapter 3 first to fill them."""
    ctx = Chapter3(profile, seed=seed, runs_root=runs_root, data_root=data_root, device=device, log=None)
    return ctx, [ctx.run(s) for s in ctx.seeds if ctx._is_cached(s)]
