"""Low-resolution face pairs for Super-FAN (thesis chapter 6).

Chapter 6 super-resolves 16x16 faces to 64x64 (6.2.1) and localises landmarks on the result; the
low-resolution inputs are made by bilinear down-sampling of 64x64 faces whose height is about 50
px, tested across pose with the LS3D-W Balanced bins (6.1). For real-world images (6.3.3) the
thesis retrains with degraded inputs: random Gaussian blur with kernels of 3 to 7 px, JPEG
artefacts and colour distortion. :func:`degrade_low_resolution` is that degradation.

The 64x64 faces are a synthetic set (:mod:`fa_lib.data.synthetic`, rendered with 2x supersampling
and cached); the 16x16 inputs are derived per item, deterministically from (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fa_lib.data.render import RenderConfig
from fa_lib.data.synthetic import YAW_BINS, SyntheticFaces, SyntheticSpec, build_synthetic
from fa_lib.heatmaps import gaussian_heatmaps
from fa_lib.landmarks import flip_landmarks
from fa_lib.profiles import get_profile

HIGH_RES = 64
LOW_RES = 16
#: brows-to-chin height of the rendered faces as a fraction of 64 px (about 50 px, thesis 6.1)
FACE_HEIGHT = (0.74, 0.82)


@dataclass(frozen=True)
class Degradation:
    """The real-world degradations of thesis 6.3.3, each applied with its probability."""

    blur_probability: float = 0.5
    blur_kernels: tuple[int, ...] = (3, 5, 7)      # Gaussian kernel sizes (px at 64x64)
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (20, 80)
    colour_probability: float = 0.5
    colour_strength: float = 0.15

    def __post_init__(self):
        for k in self.blur_kernels:
            if k < 1 or k % 2 == 0:
                raise ValueError(f"blur kernels must be odd positive sizes, got {self.blur_kernels}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= lo <= hi <= 100, got {self.jpeg_quality}")


def downsample_bilinear(image: np.ndarray, size: int = LOW_RES) -> np.ndarray:
    """Bilinear down-sampling with a filter widened to the scale factor (no aliasing), as
    image-processing libraries' "bilinear" resize does (Pillow's ``Image.resize(BILINEAR)``)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    return np.asarray(Image.fromarray(array).resize((size, size), Image.BILINEAR))


def degrade_low_resolution(high: np.ndarray, rng: np.random.Generator,
                           degradation: Degradation | None = Degradation(),
                           size: int = LOW_RES) -> np.ndarray:
    """The low-resolution input of a high-resolution face: optional blur of the high-resolution
    image (kernel 3-7 px), bilinear down-sampling, then optional colour distortion and JPEG."""
    image = np.asarray(high)
    if degradation is not None and rng.random() < degradation.blur_probability:
        k = int(rng.choice(degradation.blur_kernels))
        image = cv2.GaussianBlur(image, (k, k), 0)
    low = downsample_bilinear(image, size)
    if degradation is None:
        return low
    if rng.random() < degradation.colour_probability:
        s = degradation.colour_strength
        x = low.astype(np.float32) / 255.0
        gain = rng.uniform(1 - s, 1 + s, 3 if x.ndim == 3 else 1).astype(np.float32)
        gamma = float(rng.uniform(1 - s, 1 + s))
        x = np.clip(x * gain, 0, 1) ** gamma
        if x.ndim == 3:
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * rng.uniform(1 - 2 * s, 1 + s)
        low = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < degradation.jpeg_probability:
        quality = int(rng.integers(degradation.jpeg_quality[0], degradation.jpeg_quality[1] + 1))
        bgr = low[..., ::-1] if low.ndim == 3 else low
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        dec = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        low = dec[..., ::-1].copy() if dec.ndim == 3 else dec
    return low


class LowResPairs(SyntheticFaces):
    """64x64 synthetic faces with their 16x16 inputs: the sample dict plus ``image_lr``.

    Landmarks, box and depth are in the 64x64 image's pixels (multiply by 16 / 64 for the input).
    ``degradation`` None: plain bilinear down-sampling (the protocol of Tables 6.1-6.2).
    """

    def __init__(self, folder, degradation: Degradation | None = None, seed: int = 0,
                 transform: Callable[[dict], Any] | None = None):
        super().__init__(folder, points="68", transform=None)
        self.degradation = degradation
        self.seed = int(seed)
        self.pair_transform = transform

    def __getitem__(self, index: int):
        sample = super().__getitem__(index)
        index = index % len(self)
        rng = np.random.default_rng([self.seed, index, 0x10])
        sample["image_lr"] = degrade_low_resolution(sample["image"], rng, self.degradation)
        return self.pair_transform(sample) if self.pair_transform is not None else sample


def lowres_pairs(profile="quick", split: str = "train", *, degraded: bool = False, seed: int = 0,
                 count: int | None = None, root=None, workers=None, progress=False,
                 transform=None, degradation: Degradation | None = None) -> LowResPairs:
    """16x16 -> 64x64 pairs for chapter 6: ``split`` "train" (yaw uniform in [-90, 90]) or "test"
    (yaw-balanced like LS3D-W Balanced, thesis 6.1; people unseen in training).

    ``degraded=True`` adds the real-world degradations of 6.3.3 (``degradation`` to tune them).
    Sizes come from ``profile.data.lowres_train_size`` / ``lowres_test_size``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = get_profile(profile).data
    n = count or (data.lowres_train_size if split == "train" else data.lowres_test_size)
    config = RenderConfig(size=HIGH_RES, supersample=2, face_height=FACE_HEIGHT, centre_jitter=0.03,
                          occluder_probability=0.1, blur_probability=0.0, noise_probability=0.2,
                          max_noise_std=3.0)
    if split == "test":
        n = max(3, n - n % len(YAW_BINS))
    spec = SyntheticSpec(name=f"synthetic-lowres-{split}", count=n, seed=seed, config=config,
                         views_per_identity=2 if split == "train" else 1,
                         yaw_bins=YAW_BINS if split == "test" else None,
                         namespace=4 if split == "train" else 5)
    folder = build_synthetic(spec, root, workers, progress)
    if degraded and degradation is None:
        degradation = Degradation()
    return LowResPairs(folder, degradation=degradation if degraded else None, seed=seed,
                       transform=transform)


#: heatmap side of the FANs that take the 64 px faces (the FAN's stem reduces by 4)
HEATMAP_SIZE = HIGH_RES // 4


class SuperResolutionInputs:
    """A low/high-resolution pair as tensors for chapter 6 (``TransformedDataset`` transform):
    ``image_lr`` (3, 16, 16) and ``image_hr`` (3, 64, 64) in [0, 1]; ``image`` the FAN's input (the
    HR face, or with ``fan_input="bilinear"`` the LR face bilinearly upsampled to 64 px, what the
    retrained FAN-bilinear of Table 6.2 sees); ``heatmaps`` (68, 16, 16) Gaussians of std ``sigma`` at
    the 3D landmarks' projections; ``landmarks_image`` (68, 2) 64 px coordinates; ``landmarks_norm``
    (136,) in [-1, 1] (the stand-in feature networks' pretraining target); ``matrix`` (64 px image ->
    16 px map), ``box``, ``pose``. ``flip``: mirror half the faces (LR and HR together, landmarks
    permuted)."""

    def __init__(self, sigma: float = 1.0, *, flip: bool = False, fan_input: str = "hr"):
        if fan_input not in ("hr", "bilinear"):
            raise ValueError(f"fan_input must be 'hr' or 'bilinear', got {fan_input!r}")
        self.sigma, self.flip, self.fan_input = float(sigma), bool(flip), fan_input

    def record(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "flip": self.flip, "fan_input": self.fan_input, "heatmap_size": HEATMAP_SIZE}

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        hr, lr = np.asarray(sample["image"]), np.asarray(sample["image_lr"])
        points = np.asarray(sample["landmarks_3d"], np.float32)[:, :2]
        box = np.asarray(sample["box"], np.float32)
        if self.flip and rng.random() < 0.5:
            hr, lr = hr[:, ::-1], lr[:, ::-1]
            points = flip_landmarks(points, HIGH_RES)
            box = np.array([HIGH_RES - box[2], box[1], HIGH_RES - box[0], box[3]], np.float32)
        if hr.ndim == 2:
            hr, lr = np.repeat(hr[..., None], 3, 2), np.repeat(lr[..., None], 3, 2)
        image_hr = torch.from_numpy(np.array(hr)).permute(2, 0, 1).float() / 255.0
        image_lr = torch.from_numpy(np.array(lr)).permute(2, 0, 1).float() / 255.0
        if self.fan_input == "bilinear":
            image = F.interpolate(image_lr[None], size=HIGH_RES, mode="bilinear", align_corners=False)[0].clamp(0, 1)
        else:
            image = image_hr
        scale = HEATMAP_SIZE / HIGH_RES
        points_t = torch.from_numpy(np.ascontiguousarray(points))
        return {"image_lr": image_lr, "image_hr": image_hr, "image": image,
                "heatmaps": gaussian_heatmaps(points_t * scale, HEATMAP_SIZE, self.sigma),
                "landmarks_image": points_t, "landmarks_norm": (points_t / (HIGH_RES / 2) - 1).flatten(),
                "matrix": torch.tensor(np.diag([scale, scale, 1.0]), dtype=torch.float64),
                "box": torch.from_numpy(box), "pose": torch.from_numpy(np.asarray(sample["pose"], np.float32))}
