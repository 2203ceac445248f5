"""The chapter's data: the synthetic 300-W-LP stand-in (training) and the yaw-balanced test set,
the test-time inputs (box noise only), the samples seen at a lower resolution (Fig. 4.10), the
guides of 2D-to-3D-FAN, the depth network's inputs (section 4.8) and the mean-shape baseline.

The thesis trains on 300-W-LP and tests on 300-W, 300-VW, Menpo, AFLW2000-3D and LS3D-W; none of them
can be downloaded here. Without a data root every experiment therefore trains on the synthetic 300-W-LP
stand-in (:func:`fa_lib.data.synthetic.train_300wlp_standin`: rendered faces of the 3D face model, yaw in
[-90, 90], 2D and 3D landmarks) and tests on the yaw-balanced stand-in
(:func:`fa_lib.data.synthetic.test_yaw_balanced`: equal counts in |yaw| 0-30, 30-60, 60-90, people
never seen in training).

With ``data_root`` (:func:`load_data`) the networks train on the real 300-W-LP and the 3D tables test on
the real LS3D-W balanced, whose files carry no head pose: its |yaw| bins come from the pose fitted to each
face's landmarks (:func:`fa_lib.convert_ls3dw.estimate_pose`, the conversion tool's estimate). Table 4.1's
2D test sets (300-W test, Menpo, 300-VW) and AFLW2000-3D are read when they are under the root
(:data:`REAL_2D_SETS`; AFLW2000-3D in the layout of :mod:`fa_lib.data.real`). 300-W-LP stores only the
projections of its 3D landmarks; the depth network of section 4.8 trains on their depth rebuilt from each
face's 3DDFA fit (:func:`fa_lib.data.real.depth_from_3ddfa`, the face model keeping 3DDFA's first 40
identity and 10 expression components) when :func:`depth_fit_check` finds the rebuilt landmarks close
enough to the stored ones (and, on AFLW2000-3D, to its stored depth), and tests on AFLW2000-3D
(:attr:`Ch4Data.has_depth`, :attr:`Ch4Data.depth_check`).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fa_lib import geometry, metrics
from fa_lib.convert_ls3dw import estimate_pose
from fa_lib.data.augment import Augmentation
from fa_lib.data.pipeline import FanInputs
from fa_lib.data import formats
from fa_lib.data.face_model import load_face_model
from fa_lib.data.real import RealFaceDataset, depth_from_3ddfa
from fa_lib.data.synthetic import test_yaw_balanced, train_300wlp_standin, yaw_bin_of
from fa_lib.experiments.ch4.scale import EVAL_BOX_NOISE, EVAL_SEED, Ch4Setup
from fa_lib.experiments.common import evenly_spaced
from fa_lib.experiments.runs import dataset_identity, run_key
from fa_lib.heatmaps import gaussian_heatmaps

#: Table 4.1's real 2D test sets, by the thesis's row names: label -> (reader kind, folder names tried under
#: the data root); "300-W" is the 300-W test set (Indoor and Outdoor)
REAL_2D_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "300-W": ("pts_folder", ("300W", "300w", "300W_test", "300w_test")),
    "Menpo": ("pts_folder", ("Menpo", "menpo", "Menpo-2D")),
    "300-VW": ("300vw", ("300VW", "300vw", "300VW_Dataset_2015_12_14")),
}
#: 300-VW's A/B/C test categories are not in its files: ``<300-VW folder>/categories.json``
#: (``{"A": [video ids], "B": [...], "C": [...]}``), when present, splits Table 4.1's 300-VW row
VW_CATEGORIES_FILE = "categories.json"
#: ``Chapter4.unavailable``'s name for "needs 2D annotations on the test set"
TEST_2D_LABELS = "2D test labels"
#: faces of a large real training set read for the mean-shape baseline (evenly spaced)
MEAN_SHAPE_FACES = 2000
#: faces of 300-W-LP (and of AFLW2000-3D) whose rebuilt 3D landmarks :func:`depth_fit_check` measures
DEPTH_CHECK_FACES = 200
#: the largest median error of the rebuilt landmarks (fraction of the face size sqrt(w h)) with which their
#: depth is used as the depth network's target: beyond it the targets would be about as wrong as the
#: networks the chapter compares
DEPTH_FIT_TOLERANCE = 0.03


class AnnotatedSet(Dataset):
    """A real dataset read as the chapter reads its synthetic sets: samples by index, and
    ``array(key)`` (landmarks, box, pose of every sample, gathered on first use). ``estimate_yaw``:
    samples without a head pose get the one fitted to their 3D landmarks' projections
    (:func:`fa_lib.convert_ls3dw.estimate_pose`; ``pose_estimated`` says so)."""

    def __init__(self, dataset: RealFaceDataset, name: str, estimate_yaw: bool = False):
        self.dataset, self.name, self.estimate_yaw = dataset, name, estimate_yaw
        self._arrays: dict[str, np.ndarray] = {}
        self.pose_estimated = False

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        if self.estimate_yaw and not np.isfinite(np.asarray(sample["pose"], np.float64)).all():
            points = sample["landmarks_3d"] if sample.get("landmarks_3d") is not None else sample["landmarks_2d"]
            sample["pose"] = np.asarray(estimate_pose(points), np.float32)
            self.pose_estimated = True
        return sample

    @property
    def identity(self) -> dict[str, Any]:
        return dataset_identity(self.dataset)

    @functools.cached_property
    def has_depth(self) -> bool:
        """Whether the 3D landmarks carry depth (z), judged on the first sample."""
        first = self.dataset[0].get("landmarks_3d")
        return first is not None and bool(np.isfinite(np.asarray(first, np.float64)[:, 2]).all())

    def array(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            samples = [self[i] for i in range(len(self))]
            for name in ("landmarks_2d", "landmarks_3d", "box", "pose"):
                values = [s.get(name) for s in samples]
                if all(v is not None for v in values):
                    self._arrays[name] = np.stack([np.asarray(v, np.float32) for v in values])
            if key not in self._arrays:
                raise KeyError(f"{self.name} has no {key!r} for every face")
        return self._arrays[key]


def _face_size(points_xy: np.ndarray) -> float:
    box = geometry.box_from_landmarks(np.asarray(points_xy, np.float64)[:, :2])
    return float(metrics.face_size(box[None])[0])


def depth_fit_check(lp: RealFaceDataset, aflw2000: RealFaceDataset | None = None,
                    faces: int = DEPTH_CHECK_FACES) -> dict[str, Any]:
    """Whether 300-W-LP's landmark depth can be rebuilt from its 3DDFA fits (read from the annotation files
    alone, ``faces`` evenly spaced faces of each set): the median over faces of the median distance between
    the rebuilt landmarks' fitted projection and the stored ``pts_3d`` (fraction of the face size), and on
    AFLW2000-3D, which stores the depth, the median over faces of the mean |z error| (and of the projection
    error) likewise. ``usable`` when each is within :data:`DEPTH_FIT_TOLERANCE`; ``why`` says otherwise."""
    try:
        model = load_face_model()
    except FileNotFoundError as error:
        return {"usable": False, "why": f"the face model the depth is rebuilt with is not installed ({error})"}
    fit = []
    for i in evenly_spaced(len(lp.records), faces):
        record = lp.records[int(i)]
        if not record["landmarks"].is_file():
            continue
        annotation = formats.read_3ddfa_mat(record["annotation"])
        _, points = formats.read_300w_lp_landmarks_mat(record["landmarks"])
        _, residual = depth_from_3ddfa(points, annotation.shape_para, annotation.exp_para, model)
        fit.append(float(np.median(residual)) / _face_size(points))
    if not fit:
        return {"usable": False, "why": f"no 300-W-LP face under {lp.root} has its landmarks/<subset>/*_pts.mat"}
    out: dict[str, Any] = {"faces": len(fit), "fit_error": float(np.median(fit)), "tolerance": DEPTH_FIT_TOLERANCE,
                           "source": "each face's 3DDFA fit in the face model (3DDFA's first 40 identity and 10 "
                                     "expression components), seen through the camera fitted to its stored projections"}
    problems = []
    if out["fit_error"] > DEPTH_FIT_TOLERANCE:
        problems.append(f"the rebuilt landmarks of {len(fit)} 300-W-LP faces miss the stored projections by a median "
                        f"{out['fit_error']:.1%} of the face size")
    if aflw2000 is not None:
        depth, projection = [], []
        for i in evenly_spaced(len(aflw2000.records), faces):
            annotation = formats.read_3ddfa_mat(aflw2000.records[int(i)]["annotation"])
            truth = annotation.landmarks_3d
            z, residual = depth_from_3ddfa(truth[:, :2], annotation.shape_para, annotation.exp_para, model)
            size = _face_size(truth)
            depth.append(float(np.mean(np.abs(z - truth[:, 2]))) / size)
            projection.append(float(np.median(residual)) / size)
        out.update(aflw2000_faces=len(depth), aflw2000_depth_error=float(np.median(depth)),
                   aflw2000_fit_error=float(np.median(projection)))
        if out["aflw2000_depth_error"] > DEPTH_FIT_TOLERANCE:
            problems.append(f"on AFLW2000-3D the rebuilt depth misses the stored one by a median "
                            f"{out['aflw2000_depth_error']:.1%} of the face size")
    out["usable"] = not problems
    out["why"] = "; ".join(problems) + (f" (tolerance {DEPTH_FIT_TOLERANCE:.0%})" if problems else "")
    return out


@dataclass
class Ch4Data:
    """The training and test sets of the chapter (synthetic stand-ins, or real ones with a data root;
    see the module docstring). ``tests_2d``: Table 4.1's real 2D test sets found under the root;
    ``missing``: the real sets that were not (name -> why); ``aflw2000``: AFLW2000-3D if found."""

    train: Any
    test: Any
    seed: int
    real: bool = False
    tests_2d: dict[str, Any] | None = None
    aflw2000: Any = None
    missing: dict[str, str] | None = None
    depth_check: dict[str, Any] | None = None

    @property
    def test_bins(self) -> np.ndarray:
        return yaw_bin_of(np.asarray(self.test.array("pose")))

    @property
    def has_depth(self) -> bool:
        """Whether the training set's 3D landmarks carry depth the depth network can learn (on real data:
        rebuilt from 300-W-LP's 3DDFA fits and passed by :func:`depth_fit_check`)."""
        if not self.real:
            return True
        return bool(self.depth_check and self.depth_check["usable"]) and bool(self.train.has_depth)

    @functools.cached_property
    def has_2d_test_labels(self) -> bool:
        """Whether the test set has 2D landmarks (LS3D-W has only the 3D landmarks' projections)."""
        return not self.real or self.test.dataset[0].get("landmarks_2d") is not None

    def train_set_key(self) -> str:
        """The training set in the run-cache records (the synthetic set's folder name, as always)."""
        if not self.real:
            return str(Path(self.train.folder).name)
        return f"real-{self.train.dataset.kind}-{run_key(self.train.identity)}"

    def describe(self) -> dict[str, Any]:
        yaw = " (|yaw| fitted to the landmarks)" if self.real and self.test.estimate_yaw else ""
        out = {"train": f"{self.train.name} ({len(self.train)} faces)",
               "test": f"{self.test.name} ({len(self.test)} faces, yaw-balanced){yaw}",
               "seed": self.seed, "real": self.real}
        if self.real:
            out["tests_2d"] = {name: f"{ds.name} ({len(ds)} faces)" for name, ds in (self.tests_2d or {}).items()}
            out["aflw2000"] = None if self.aflw2000 is None else f"{self.aflw2000.name} ({len(self.aflw2000)} faces)"
            out["missing"] = dict(self.missing or {})
            out["depth_check"] = dict(self.depth_check or {})
        return out


def find_2d_set(root, label: str) -> Path | None:
    """The folder of Table 4.1's real 2D test set ``label`` (:data:`REAL_2D_SETS`) under ``root``, or None."""
    root = Path(root)
    return next((root / name for name in REAL_2D_SETS[label][1] if (root / name).is_dir()), None)


def _real_set(kind: str, folder: Path, split: str, **options) -> AnnotatedSet:
    dataset = RealFaceDataset(kind, folder, split, **options)
    return AnnotatedSet(dataset, f"real {kind} {split or 'all'} under {folder}", estimate_yaw=(kind == "ls3dw"))


def load_data(setup: Ch4Setup, seed: int = 0, progress: bool = False, data_root=None) -> Ch4Data:
    """Render (or reuse the cached) 300-W-LP stand-in and yaw-balanced test set of the profile, or with
    ``data_root`` read the real sets (see the module docstring): 300-W-LP and LS3D-W balanced are
    required; Table 4.1's 2D sets and AFLW2000-3D are used when found (``missing`` says which were not)."""
    if data_root is None:
        train = train_300wlp_standin(setup.profile, seed=seed, progress=progress)
        test = test_yaw_balanced(setup.profile, seed=seed, progress=progress)
        return Ch4Data(train=train, test=test, seed=seed)
    root = Path(data_root).expanduser()
    train = _real_set("300w_lp", root, "train")
    test = _real_set("ls3dw", root, "balanced")
    tests_2d, missing = {}, {}
    for label, (kind, folders) in REAL_2D_SETS.items():
        folder = find_2d_set(root, label)
        if folder is None:
            missing[label] = f"not found under {root} (looked for {', '.join(folders)})"
            continue
        if kind == "300vw" and (folder / VW_CATEGORIES_FILE).is_file():
            categories = json.loads((folder / VW_CATEGORIES_FILE).read_text())
            for category, videos in categories.items():
                subset = _real_set(kind, folder, "all", videos=videos)
                subset.name = f"real 300vw videos {', '.join(str(v) for v in videos)} under {folder}"
                tests_2d[f"300-VW-{category}"] = subset  # the thesis's rows 300-VW-A/B/C
        else:
            tests_2d[label] = _real_set(kind, folder, "all" if kind == "300vw" else "")
    aflw = None
    try:
        aflw = _real_set("aflw2000_3d", root, "test")
    except FileNotFoundError as err:
        missing["AFLW2000-3D"] = str(err)
    depth_check = depth_fit_check(train.dataset, None if aflw is None else aflw.dataset)
    if depth_check["usable"]:  # the landmarks' depth rebuilt from the 3DDFA fits (section 4.8's targets)
        train = _real_set("300w_lp", root, "train", depth="3ddfa")
    return Ch4Data(train=train, test=test, seed=seed, real=True, tests_2d=tests_2d, aflw2000=aflw, missing=missing,
                   depth_check=depth_check)


class ListSamples(Dataset):
    """A list of sample dicts as a dataset (each item a shallow copy)."""

    def __init__(self, samples: list[dict]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return dict(self.samples[index])


class SampleMap(Dataset):
    """``fn(sample, index)`` applied to every sample of ``base`` (guides, lower resolution, ...)."""

    def __init__(self, base: Dataset, fn: Callable[[dict, int], dict]):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        return self.fn(dict(self.base[index]), index)


def with_points(samples: Dataset, points: np.ndarray, key: str) -> SampleMap:
    """Samples whose ``key`` is ``points[i]`` (image px), e.g. 2D-FAN's predictions as guides."""
    points = np.asarray(points, dtype=np.float32)
    if len(points) != len(samples):
        raise ValueError(f"{len(points)} point sets for {len(samples)} samples")

    def add(sample, index):
        sample[key] = points[index]
        return sample

    return SampleMap(samples, add)


def with_guides(samples: Dataset, points: np.ndarray) -> SampleMap:
    """Samples whose 2D-to-3D-FAN guide is ``points[i]`` (image px), e.g. 2D-FAN's predictions."""
    return with_points(samples, points, "guide_landmarks")


def reduce_resolution(image: np.ndarray, box, face_px: float) -> np.ndarray:
    """Fig. 4.10: the image down-scaled so that the face (sqrt(w*h) of ``box``) is ``face_px``
    pixels, then up-scaled back to its size (area down-sampling, bilinear up-sampling). A face
    already smaller than ``face_px`` is returned unchanged."""
    if face_px <= 0:
        raise ValueError(f"face_px must be positive, got {face_px}")
    d = float(metrics.face_size(np.asarray(box, np.float32)))
    factor = face_px / d
    if factor >= 1.0:
        return image
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def at_resolution(samples: Dataset, face_px: float) -> SampleMap:
    """The samples with every face at ``face_px`` (:func:`reduce_resolution`)."""
    def lower(sample, index):
        sample["image"] = reduce_resolution(sample["image"], sample["box"], face_px)
        return sample

    return SampleMap(samples, lower)


def eval_augmentation(box_noise: float) -> Augmentation | None:
    """Test-time inputs: no augmentation except the box noise of section 4.7 / Table 4.3."""
    if box_noise == 0:
        return None
    return Augmentation(flip=False, rotation=0.0, scale=(1.0, 1.0), colour=0.0, occlusion=0.0,
                        box_noise=float(box_noise))


def fan_inputs(setup: Ch4Setup, landmarks: str, *, augment: Augmentation | None = None,
               guide: bool = False) -> FanInputs:
    """Prepared FAN items at this scale (crop, heatmap targets, optionally the guide maps)."""
    return FanInputs(landmarks, input_size=setup.input_size, heatmap_size=setup.heatmap_size,
                     sigma=setup.sigma, augment=augment, guide=guide)


# --------------------------------------------------------------------------------------------------
# the depth subnetwork's inputs (section 4.8)


def depth_sigma(setup: Ch4Setup) -> float:
    """Std (depth-input px) of the depth network's landmark maps: the official 2 px at 256 px,
    scaled with the input, at least 1 px."""
    return max(1.0, 2.0 * setup.depth_input_size / 256.0)


class DepthInputs:
    """Prepared items for the depth ResNet of 3D-FAN-full (section 4.8, Fig. 4.11).

    ``depth_input``: the RGB crop (resized to ``depth_input_size``) stacked with one Gaussian map
    per landmark, at the ground-truth 3D-landmark projections in training, at ``sample
    ["depth_points"]`` (image px, e.g. 3D-FAN's predictions) when present. ``depth_target``: z of
    the 3D landmarks in depth-input pixels (so the network's output has the units of its input).
    """

    def __init__(self, setup: Ch4Setup, augment: Augmentation | None):
        self.inputs = fan_inputs(setup, "3d", augment=augment)
        self.size, self.heatmap_size = setup.depth_input_size, setup.heatmap_size
        self.sigma = depth_sigma(setup)

    def __call__(self, sample: Mapping[str, Any], rng=None) -> dict[str, Any]:
        item = self.inputs(sample, rng)
        to_depth = self.size / self.heatmap_size
        points = item["landmarks"]
        if sample.get("depth_points") is not None:
            hm = geometry.transform_points(np.asarray(sample["depth_points"], np.float32)[:, :2],
                                           item["matrix"].numpy())
            points = torch.from_numpy(np.asarray(hm, np.float32))
        rgb = item["image"][:3]
        if rgb.shape[-1] != self.size:
            rgb = F.interpolate(rgb[None], size=(self.size, self.size), mode="area")[0]
        maps = gaussian_heatmaps(points * to_depth, self.size, self.sigma)
        item["depth_input"] = torch.cat([rgb, maps], 0)
        item["depth_target"] = item["depth"] * to_depth
        return item


# --------------------------------------------------------------------------------------------------
# ground truth and the mean-shape baseline


def ground_truth(samples: Dataset, landmarks: str) -> tuple[np.ndarray, np.ndarray]:
    """(points (M, 68, 2|3), boxes (M, 4)) of a synthetic set or an :class:`AnnotatedSet`."""
    key = "landmarks_2d" if landmarks == "2d" else "landmarks_3d"
    return np.asarray(samples.array(key), np.float32), np.asarray(samples.array("box"), np.float32)


def mean_shape(samples: Dataset, landmarks: str) -> np.ndarray:
    """The mean landmark configuration of a training set in box coordinates ((p - x1y1) / wh); of
    :data:`MEAN_SHAPE_FACES` evenly spaced faces of a larger real set."""
    if isinstance(samples, AnnotatedSet) and len(samples) > MEAN_SHAPE_FACES:
        key = "landmarks_2d" if landmarks == "2d" else "landmarks_3d"
        picked = [samples[int(i)] for i in np.linspace(0, len(samples) - 1, MEAN_SHAPE_FACES).round()]
        points = np.stack([np.asarray(s[key], np.float32) for s in picked])
        boxes = np.stack([np.asarray(s["box"], np.float32) for s in picked])
    else:
        points, boxes = ground_truth(samples, landmarks)
    origin, size = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    return ((points[..., :2] - origin) / size).mean(axis=0).astype(np.float32)


def mean_shape_errors(shape: np.ndarray, samples: Dataset, landmarks: str,
                      box_noise: float = EVAL_BOX_NOISE, seed: int = 0) -> np.ndarray:
    """NME (eq. 4.1) of the baseline that places the training mean shape in the (noisy) box: what a
    network that ignores the image would score. An honest floor for every table."""
    points, boxes = ground_truth(samples, landmarks)
    noisy = geometry.perturb_box(boxes, box_noise, np.random.default_rng(seed + EVAL_SEED)) if box_noise else boxes
    pred = noisy[:, None, :2] + shape[None] * (noisy[:, 2:] - noisy[:, :2])[:, None, :]
    return np.asarray(metrics.nme_box(pred, points[..., :2], boxes), np.float64)


def example_indices(bins: np.ndarray, per_bin: int) -> list[int]:
    """The first ``per_bin`` test faces of each |yaw| bin (frontal to profile)."""
    out = []
    for b in range(3):
        out += np.flatnonzero(bins == b)[:per_bin].tolist()
    return out
