"""Training augmentation of the thesis: flip, rotation, scale, colour jitter, occlusion, box noise.

Section 4.3.2 (2D-FAN and 3D-FAN): "flipping, rotation (from -50 to 50 degrees), colour jittering,
scale noise (from 0.8 to 1.2) and random occlusion"; 2D-to-3D-FAN: rotation -70..70 and scale
0.7..1.3. Section 5.5.1 (binary networks): rotation -40..40, flipping and scale 0.7..1.3. Table 4.3:
FAN is trained with box noise of up to 20% (uniform perturbation of the box shape).

The thesis gives ranges, not distributions; here every quantity is uniform on its range, a flip
happens with probability 1/2, each colour channel is multiplied by a gain uniform in
[1 - colour, 1 + colour] (the stacked-hourglass recipe the thesis follows), and an occluder is a
rectangle (10-40% of the crop side per dimension, by default) filled with uniform noise or one
random colour. These choices are ours and are recorded in ``Augmentation``.

Geometry (the crop matrix, rotation, scale, flip) lives in ``fa_lib.geometry``; this module only
draws the random parameters and applies the photometric changes to a crop. All randomness comes
from a numpy ``Generator`` passed in, so a sample's augmentation is a function of its seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fa_lib.landmarks import FLIP_PERMUTATION_21, FLIP_PERMUTATION_34, FLIP_PERMUTATION_68


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random augmentation (see the module docstring for the distributions).

    ``flip``: mirror half of the samples (landmark labels swapped with the flip permutation);
    ``rotation``: maximum |angle| in degrees; ``scale``: range of the factor multiplying the face
    scale (> 1 zooms out); ``colour``: per-channel gain half-range (0 = off); ``occlusion``:
    probability of one occluding rectangle; ``occlusion_size``: its side range as a fraction of
    the crop side; ``box_noise``: fraction of ``geometry.perturb_box`` (0 = off).
    """

    flip: bool = True
    rotation: float = 50.0
    scale: tuple[float, float] = (0.8, 1.2)
    colour: float = 0.2
    occlusion: float = 0.5
    occlusion_size: tuple[float, float] = (0.1, 0.4)
    box_noise: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        low, high = self.scale
        if not 0.0 < low <= high:
            raise ValueError(f"scale must be a range 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.colour < 1.0:
            raise ValueError(f"colour must be in [0, 1), got {self.colour}")
        if not 0.0 <= self.occlusion <= 1.0:
            raise ValueError(f"occlusion is a probability, got {self.occlusion}")
        small, large = self.occlusion_size
        if not 0.0 < small <= large <= 1.0:
            raise ValueError(f"occlusion_size must be a range in (0, 1], got {self.occlusion_size}")
        if not 0.0 <= self.box_noise < 0.5:
            raise ValueError(f"box_noise must be in [0, 0.5), got {self.box_noise}")

    def to_dict(self) -> dict:
        return asdict(self)


def thesis_augmentation(network: str = "fan") -> Augmentation:
    """The augmentation of the thesis for ``network``:

    - ``"fan"`` (2D-FAN, 3D-FAN; section 4.3.2 and Table 4.3): flip, rotation +-50, scale 0.8-1.2,
      colour jitter, random occlusion, box noise up to 20%.
    - ``"2d_to_3d"`` (2D-to-3D-FAN, section 4.3.2): the same with rotation +-70 and scale 0.7-1.3.
    - ``"binary"`` (chapter 5, section 5.5.1): flip, rotation +-40, scale 0.7-1.3 only.
    - ``"cale"`` (chapter 3, section 3.1.4): flip and scale 0.8-1.2 only (no rotation).
    """
    if network == "fan":
        return Augmentation(rotation=50.0, scale=(0.8, 1.2), box_noise=0.2)
    if network == "2d_to_3d":
        return Augmentation(rotation=70.0, scale=(0.7, 1.3), box_noise=0.2)
    if network == "binary":
        return Augmentation(rotation=40.0, scale=(0.7, 1.3), colour=0.0, occlusion=0.0)
    if network == "cale":
        return Augmentation(rotation=0.0, scale=(0.8, 1.2), colour=0.0, occlusion=0.0)
    raise ValueError(f"unknown network {network!r}; choose fan, 2d_to_3d, binary or cale")


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the random augmentation for one sample."""

    flip: bool = False
    angle: float = 0.0             # degrees, counter-clockwise as displayed
    scale_factor: float = 1.0      # multiplies the face scale
    colour_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    occluder: tuple[float, float, float, float] | None = None  # x, y, w, h as fractions of the crop
    occluder_noise: bool = True    # fill with uniform noise (True) or one colour (False)
    occluder_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)


def sample_params(augmentation: Augmentation, rng: np.random.Generator) -> AugmentParams:
    """Draw one ``AugmentParams`` from ``rng``. The number of draws is fixed (every quantity is
    drawn even when switched off) so that changing one range does not shift the others."""
    flip = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-1.0, 1.0)) * augmentation.rotation
    scale_factor = float(rng.uniform(*augmentation.scale))
    gains = rng.uniform(1.0 - augmentation.colour, 1.0 + augmentation.colour, size=3)
    occlude = bool(rng.random() < augmentation.occlusion)
    width, height = rng.uniform(*augmentation.occlusion_size, size=2)
    x, y = rng.uniform(0.0, 1.0, size=2) * (1.0 - np.array([width, height]))
    noise_fill = bool(rng.random() < 0.5)
    fill = rng.uniform(0.0, 1.0, size=3)
    return AugmentParams(
        flip=flip and augmentation.flip,
        angle=angle,
        scale_factor=scale_factor,
        colour_gains=tuple(float(g) for g in gains),
        occluder=(float(x), float(y), float(width), float(height)) if occlude else None,
        occluder_noise=noise_fill,
        occluder_colour=tuple(float(c) for c in fill),
    )


def flip_permutation(n_points: int) -> np.ndarray:
    """Left/right label permutation of a horizontal flip for the 68-, 34- or 21-point markup."""
    by_count = {68: FLIP_PERMUTATION_68, 34: FLIP_PERMUTATION_34, 21: FLIP_PERMUTATION_21}
    if n_points not in by_count:
        raise ValueError(f"no flip permutation for {n_points} landmarks (known: 68, 34, 21); "
                         "switch flipping off")
    return np.asarray(by_count[n_points])


def jitter_colour(image: np.ndarray, gains) -> np.ndarray:
    """Multiply each channel of a float (H, W, 3) image in [0, 1] by its gain and clip to [0, 1]."""
    gains = np.asarray(gains, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != gains.shape[0]:
        raise ValueError(f"image must be (H, W, {gains.shape[0]}), got {image.shape}")
    return np.clip(image * gains, 0.0, 1.0, dtype=np.float32)


def occlude(image: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Paint ``params.occluder`` (fractions of the crop) onto a float (H, W, C) image in [0, 1]:
    uniform noise drawn from ``rng`` or a solid colour. Returns a new array."""
    out = np.array(image, dtype=np.float32, copy=True)
    if params.occluder is None:
        return out
    height, width = out.shape[:2]
    fx, fy, fw, fh = params.occluder
    x0, y0 = int(round(fx * width)), int(round(fy * height))
    x1, y1 = min(width, x0 + max(1, int(round(fw * width)))), min(height, y0 + max(1, int(round(fh * height))))
    if params.occluder_noise:
        out[y0:y1, x0:x1] = rng.uniform(0.0, 1.0, size=(y1 - y0, x1 - x0, out.shape[2]))
    else:
        out[y0:y1, x0:x1] = np.asarray(params.occluder_colour, dtype=np.float32)[: out.shape[2]]
    return out
