"""The chapter's data: the synthetic 300-W-LP stand-in (training) and the yaw-balanced test set,
the test-time inputs (box noise only), the samples seen at a lower resolution (Fig. 4.10), the
guides of 2D-to-3D-FAN, the depth network's inputs (section 4.8) and the mean-shape baseline.

The thesis trains on 300-W-LP and tests on 300-W, 300-VW, Menpo, AFLW2000-3D and LS3D-W; none of them
can be downloaded here. Every experiment therefore trains on the synthetic 300-W-LP stand-in
(:func:`fa_lib.data.synthetic.train_300wlp_standin`: rendered faces of the 3D face model, yaw in
[-90, 90], 2D and 3D landmarks) and tests on the yaw-balanced stand-in
(:func:`fa_lib.data.synthetic.test_yaw_balanced`: equal counts in |yaw| 0-30, 30-60, 60-90, people
never seen in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fa_lib import geometry, metrics
from fa_lib.data.augment import Augmentation
from fa_lib.data.pipeline import FanInputs
from fa_lib.data.synthetic import test_yaw_balanced, train_300wlp_standin, yaw_bin_of
from fa_lib.experiments.ch4.scale import EVAL_BOX_NOISE, EVAL_SEED, Ch4Setup
from fa_lib.heatmaps import gaussian_heatmaps


@dataclass
class Ch4Data:
    """The training and test sets of the chapter (synthetic stand-ins, see the module docstring)."""

    train: Any
    test: Any
    seed: int

    @property
    def test_bins(self) -> np.ndarray:
        return yaw_bin_of(np.asarray(self.test.array("pose")))

    def describe(self) -> dict[str, Any]:
        return {"train": f"{self.train.name} ({len(self.train)} faces)",
                "test": f"{self.test.name} ({len(self.test)} faces, yaw-balanced)",
                "seed": self.seed}


def load_data(setup: Ch4Setup, seed: int = 0, progress: bool = False) -> Ch4Data:
    """Render (or reuse the cached) 300-W-LP stand-in and yaw-balanced test set of the profile."""
    train = train_300wlp_standin(setup.profile, seed=seed, progress=progress)
    test = test_yaw_balanced(setup.profile, seed=seed, progress=progress)
    return Ch4Data(train=train, test=test, seed=seed)


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
    """(points (M, 68, 2|3), boxes (M, 4)) of a synthetic set."""
    key = "landmarks_2d" if landmarks == "2d" else "landmarks_3d"
    return np.asarray(samples.array(key), np.float32), np.asarray(samples.array("box"), np.float32)


def mean_shape(samples: Dataset, landmarks: str) -> np.ndarray:
    """The mean landmark configuration of a training set in box coordinates ((p - x1y1) / wh)."""
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
