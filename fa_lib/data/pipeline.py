"""From a face sample to network inputs and targets (thesis 4.3: 256x256 crops, 64x64 heatmaps).

``FanInputs`` turns a face *sample* (the dict every dataset of the project yields: image, 2D/3D
landmarks, visibility, box, ...) into a *prepared item*:

==================  =================================================================================
``image``           float32 (C, R, R): the crop, RGB / 255 with no mean subtraction (as the official
                    FAN); C = 3, or 3 + N with ``guide=True`` (2D-to-3D-FAN, section 4.3.1: one
                    Gaussian of std 1 px per 2D landmark, at the input resolution, after the RGB)
``heatmaps``        float32 (N, H, H): Gaussian targets of std ``sigma`` heatmap px centred on the
                    landmarks (the regression targets of chapters 3.1.2 and 4)
``landmarks``       float32 (N, 2): the landmarks in heatmap px (after augmentation)
``depth``           float32 (N,): z of the 3D landmarks in heatmap px units (only for ``"3d"``)
``visibility``      bool (N,): self-occlusion visibility (all True when the sample has none)
``matrix``          float64 (3, 3): image px -> heatmap px affine (crop, rotation, scale, flip)
``center``/``scale`` the crop's centre (2,) and scale (official FAN convention) after box noise and
                    scale augmentation
``box``             float32 (4,): the ground-truth box (thesis 4.1.3), for the NME of eq. 4.1
``landmarks_image`` float32 (N, 2): ground-truth landmarks in image px, original label order
``flipped``         bool; ``index`` (added by ``TransformedDataset``): the dataset index
==================  =================================================================================

A flipped item's ``landmarks``/``heatmaps``/``visibility`` are in flipped label order (the
network learns the mirrored face as a face); ``fa_lib.train.heatmap_points_to_image`` maps
predictions back through ``matrix`` and un-permutes them.

``TransformedDataset`` applies a transform with a random generator seeded by (seed, epoch,
index), so the augmentation of every item is reproducible and a resumed training run sees exactly
the data of an uninterrupted one, whatever the number of loader workers.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from fa_lib import geometry
from fa_lib.data.augment import (Augmentation, flip_permutation, jitter_colour, occlude,
                                 sample_params, AugmentParams)
from fa_lib.heatmaps import disc_heatmaps, gaussian_heatmaps

LANDMARK_SETS = ("2d", "3d")


def _rgb(image: np.ndarray, source: str) -> np.ndarray:
    """(H, W, 3) view of a grey (H, W) / (H, W, 1) or colour (H, W, 3) image."""
    array = np.asarray(image)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return array
    raise ValueError(f"sample image{source} must be (H, W) grey or (H, W, 3) RGB, got shape {array.shape}")


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32)  # already in [0, 1]
    raise ValueError(f"sample image must be uint8 or float in [0, 1], got dtype {image.dtype}")


class FanInputs:
    """Prepare a face sample for a FAN-family network (see the module docstring for the output).

    - ``landmarks``: ``"2d"`` (300-W style, jaw on the silhouette) or ``"3d"`` (2D projections of
      the 3D landmarks, with depth); the sample must carry ``landmarks_2d`` / ``landmarks_3d``.
    - ``input_size`` R, ``heatmap_size`` H (thesis 256 and 64).
    - ``sigma``: std of the target Gaussians in heatmap px. The thesis does not state it for FAN;
      1 px at 64x64 is the stacked-hourglass default the project uses.
    - ``augment``: an ``Augmentation`` (``thesis_augmentation(...)``) or None for evaluation.
    - ``guide``: append N guide channels (2D-to-3D-FAN, section 4.3.1), Gaussians of std
      ``guide_sigma`` input px at the 2D landmarks: ``sample["guide_landmarks"]`` when present
      (e.g. 2D-FAN's predictions at test time), else ``sample["landmarks_2d"]``.
    - ``zoom``: multiplies the crop's side (< 1: a tighter crop, the face larger in it).
    """

    def __init__(self, landmarks: str = "2d", *, input_size: int = 256, heatmap_size: int = 64,
                 sigma: float = 1.0, augment: Augmentation | None = None, guide: bool = False,
                 guide_sigma: float = 1.0, zoom: float = 1.0):
        if landmarks not in LANDMARK_SETS:
            raise ValueError(f"landmarks must be one of {LANDMARK_SETS}, got {landmarks!r}")
        if input_size <= 0 or heatmap_size <= 0:
            raise ValueError(f"input_size and heatmap_size must be positive, got {input_size}, {heatmap_size}")
        if not sigma > 0 or not guide_sigma > 0:
            raise ValueError(f"sigma and guide_sigma must be positive, got {sigma}, {guide_sigma}")
        if augment is not None and not isinstance(augment, Augmentation):
            raise ValueError(f"augment must be an Augmentation or None, got {type(augment).__name__}")
        self.landmarks, self.input_size, self.heatmap_size = landmarks, int(input_size), int(heatmap_size)
        self.sigma, self.augment = float(sigma), augment
        self.guide, self.guide_sigma = bool(guide), float(guide_sigma)
        if not zoom > 0:
            raise ValueError(f"zoom must be positive, got {zoom}")
        self.zoom = float(zoom)

    def __repr__(self) -> str:
        return (f"FanInputs({self.landmarks!r}, input_size={self.input_size}, heatmap_size="
                f"{self.heatmap_size}, sigma={self.sigma}, augment={self.augment}, guide={self.guide})")

    def _points(self, sample: Mapping[str, Any]) -> np.ndarray:
        key = f"landmarks_{self.landmarks}"
        points = sample.get(key)
        if points is None:
            raise ValueError(f"FanInputs({self.landmarks!r}) needs sample[{key!r}], which is missing "
                             f"(source {sample.get('source', '?')!r})")
        points = np.asarray(points, dtype=np.float32)
        want = 3 if self.landmarks == "3d" else 2
        if points.ndim != 2 or points.shape[1] < want:
            raise ValueError(f"sample[{key!r}] must be (N, {want}), got {points.shape}")
        return points

    def __call__(self, sample: Mapping[str, Any],
                 rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        if "image" not in sample:
            raise ValueError("a face sample needs an 'image'")
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        points = self._points(sample)
        n_points = points.shape[0]
        image = _rgb(sample["image"], f" (source {sample.get('source', '?')!r})")

        box = sample.get("box")
        if box is None:
            base = sample.get("landmarks_2d")
            box = geometry.box_from_landmarks(points if base is None else np.asarray(base))
        box = np.asarray(box, dtype=np.float32)
        crop_box = box
        params = AugmentParams()
        if self.augment is not None:
            if self.augment.box_noise > 0:
                crop_box = geometry.perturb_box(box, self.augment.box_noise, generator)
            params = sample_params(self.augment, generator)
        center, scale = geometry.box_to_center_scale(crop_box)
        scale = float(scale) * params.scale_factor * self.zoom

        size_in, size_hm = self.input_size, self.heatmap_size
        to_input = geometry.rotation_scale_matrix(center, scale, size_in, angle_deg=params.angle,
                                                  flip=params.flip)
        to_heatmap = np.diag([size_hm / size_in, size_hm / size_in, 1.0]) @ to_input

        crop = _to_unit_float(geometry.warp_image(image, to_input, size_in))
        if self.augment is not None:
            if self.augment.colour > 0:
                crop = jitter_colour(crop, params.colour_gains)
            crop = occlude(crop, params, generator)

        permutation = flip_permutation(n_points) if params.flip else np.arange(n_points)
        hm_points = np.asarray(geometry.transform_points(points, to_heatmap), dtype=np.float32)[permutation]
        visibility = sample.get("visibility")
        visibility = (np.ones(n_points, dtype=bool) if visibility is None
                      else np.asarray(visibility, dtype=bool)[permutation])
        if visibility.shape != (n_points,):
            raise ValueError(f"sample visibility must be ({n_points},), got {visibility.shape}")

        channels = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        if self.guide:
            guide_points = sample.get("guide_landmarks")
            if guide_points is None:
                guide_points = sample.get("landmarks_2d")
            if guide_points is None:
                raise ValueError("guide=True needs sample['guide_landmarks'] or sample['landmarks_2d']")
            guide_points = np.asarray(guide_points, dtype=np.float32)[:, :2]
            guide_in = np.asarray(geometry.transform_points(guide_points, to_input),
                                  dtype=np.float32)[flip_permutation(len(guide_points)) if params.flip
                                                    else np.arange(len(guide_points))]
            channels = torch.cat([channels, gaussian_heatmaps(guide_in, size_in, self.guide_sigma)], 0)

        item: dict[str, Any] = {
            "image": channels.float(),
            "heatmaps": gaussian_heatmaps(hm_points[:, :2], size_hm, self.sigma),
            "landmarks": torch.from_numpy(np.ascontiguousarray(hm_points[:, :2])),
            "visibility": torch.from_numpy(visibility),
            "matrix": torch.from_numpy(to_heatmap.astype(np.float64)),
            "center": torch.as_tensor(np.asarray(center, dtype=np.float32)),
            "scale": torch.tensor(scale, dtype=torch.float32),
            "box": torch.from_numpy(box.copy()),
            "landmarks_image": torch.from_numpy(np.ascontiguousarray(points[:, :2])),
            "flipped": params.flip,
        }
        if self.landmarks == "3d":
            item["depth"] = torch.from_numpy(np.ascontiguousarray(hm_points[:, 2]))
        return item


class TransformedDataset(Dataset):
    """``transform(dataset[i], rng)`` with ``rng`` seeded by (seed, epoch, i): reproducible
    augmentation. The trainer calls ``set_epoch`` at the start of every epoch; each item also gets
    its ``"index"``."""

    def __init__(self, dataset: Dataset, transform: Callable[..., dict[str, Any]], seed: int = 0):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.transform(self.dataset[index], rng)
        item["index"] = index
        return item


class CaleInputs:
    """Prepare a face sample for CALE (thesis chapter 3): a ``FanInputs`` crop of side ``input_size``
    (``zoom`` times FAN's crop) whose targets are at the input resolution, as both of CALE's
    subnetworks output:

    - ``discs`` (N, R, R): the detector's targets (section 3.1.1): 1 within ``disc_radius`` x face
      size of each **visible** point (the thesis: 10 px for a 200 px face), all zero for an
      invisible one;
    - ``heatmaps`` (N, R, R): the regressor's targets (section 3.1.2): Gaussians of std ``sigma`` x
      face size (the thesis: 5 px for a 200 px face) at **every** point;
    - ``image``: (``channels``, R, R); 1 channel is the grey image (AFLW-PIFA), 3 the colour one;
    - ``face_size``: the face size in crop px (square root of the box's area in the crop).

    The face size is the square root of the area of the sample's box (eq. 3.3's normaliser), so
    the targets scale with the face whatever the crop. ``augment``: the thesis's is
    ``thesis_augmentation("cale")`` (flip and scale 0.8-1.2 only, section 3.1.4).
    """

    def __init__(self, input_size: int = 256, *, zoom: float = 1.0, disc_radius: float = 0.05,
                 sigma: float = 0.025, augment: Augmentation | None = None, channels: int = 1):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels}")
        if not disc_radius > 0 or not sigma > 0:
            raise ValueError(f"disc_radius and sigma must be positive fractions of the face size, got "
                             f"{disc_radius}, {sigma}")
        self.input_size, self.channels = int(input_size), int(channels)
        self.disc_radius, self.sigma = float(disc_radius), float(sigma)
        self.crop = FanInputs("2d", input_size=input_size, heatmap_size=input_size, sigma=1.0, augment=augment,
                              zoom=zoom)

    def __repr__(self) -> str:
        return (f"CaleInputs(input_size={self.input_size}, zoom={self.crop.zoom}, disc_radius={self.disc_radius}, "
                f"sigma={self.sigma}, augment={self.crop.augment}, channels={self.channels})")

    def record(self) -> dict[str, Any]:
        """What of the inputs changes a trained network (part of a run's key)."""
        return {"input_size": self.input_size, "zoom": self.crop.zoom, "disc_radius": self.disc_radius,
                "sigma": self.sigma, "channels": self.channels,
                "augment": None if self.crop.augment is None else vars(self.crop.augment).copy()}

    def __call__(self, sample: Mapping[str, Any], rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        item = self.crop(sample, rng)
        matrix = item["matrix"].numpy()
        x1, y1, x2, y2 = (float(v) for v in item["box"])
        zoom = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
        face = float(np.sqrt(max(x2 - x1, 1e-6) * max(y2 - y1, 1e-6))) * zoom
        points = item["landmarks"]
        visible = item["visibility"]
        hidden = torch.full_like(points, float("nan"))
        item["discs"] = disc_heatmaps(torch.where(visible[:, None], points, hidden), self.input_size,
                                      self.disc_radius * face)
        item["heatmaps"] = gaussian_heatmaps(points, self.input_size, self.sigma * face)
        if self.channels == 1:
            item["image"] = item["image"].mean(0, keepdim=True)
        item["face_size"] = torch.tensor(face, dtype=torch.float32)
        return item

