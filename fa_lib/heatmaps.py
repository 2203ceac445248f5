"""Heatmap targets and their decoding (thesis 3.1.1, 3.1.2 and the FAN decoding of chapter 4).

The target and decoding functions take numpy arrays or torch tensors and return torch tensors.
Coordinates are continuous heatmap pixels: the centre of heatmap pixel (row i, col j) is at
(x = j + 0.5, y = i + 0.5). :func:`heatmaps_to_image_points` is the one decoder from heatmaps to
image pixels (decode, then undo the crop's affine); it returns numpy arrays.
"""
from __future__ import annotations

import numpy as np
import math

import torch

from . import geometry

__all__ = ["gaussian_heatmaps", "disc_heatmaps", "decode_heatmaps", "decode_heatmaps_subpixel",
           "DECODERS", "heatmap_coords_to_image", "heatmaps_to_image_points"]

#: the decoders :func:`heatmaps_to_image_points` knows: the official FAN rule and the sub-pixel fit
DECODERS = ("quarter", "subpixel")


def _as_tensor(values, name: str, dtype=torch.float32) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(dtype) if dtype is not None else values
    try:
        array = np.asarray(values)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
        raise ValueError(f"{name} must be a numpy array or torch tensor") from error
    if dtype is None:
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.as_tensor(array, dtype=dtype)


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        try:
            height, width = (int(s) for s in size)
        except (TypeError, ValueError) as error:
            raise ValueError(f"size must be an int or (H, W), got {size!r}") from error
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {(height, width)}")
    return height, width


def _points_xy(points) -> torch.Tensor:
    tensor = _as_tensor(points, "points")
    if tensor.ndim < 2 or tensor.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (..., N, 2) or (..., N, 3), got {tuple(tensor.shape)}")
    return tensor[..., :2]


def _pixel_centres(count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(count, dtype=like.dtype, device=like.device) + 0.5


def gaussian_heatmaps(points, size, sigma: float) -> torch.Tensor:
    """Gaussian confidence maps, one per point (thesis 3.1.2, the regression / FAN target).

    ``points`` (..., N, 2|3) in heatmap pixels (z ignored); ``size`` an int or (H, W); ``sigma``
    the standard deviation in heatmap pixels (the thesis uses 5 px for CALE's regression maps; FAN
    heatmaps use about 1 px at 64x64). Each map is ``exp(-d^2 / (2 sigma^2))`` with d the distance
    from the pixel centre to the point: un-normalised (value 1 at the point itself), not truncated,
    and centred at the exact sub-pixel location (the official code rounds the centre to an integer
    pixel). Points with a NaN/inf coordinate give an all-zero map. Returns (..., N, H, W) float32.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    xy = _points_xy(points)
    height, width = _size_hw(size)
    finite = torch.isfinite(xy).all(dim=-1, keepdim=True)
    xy = torch.where(finite, xy, torch.zeros_like(xy))
    # The 2D Gaussian is separable: an outer product of a row and a column profile.
    dx = _pixel_centres(width, xy) - xy[..., 0:1]
    dy = _pixel_centres(height, xy) - xy[..., 1:2]
    gx = torch.exp(-(dx * dx) / (2.0 * sigma * sigma))
    gy = torch.exp(-(dy * dy) / (2.0 * sigma * sigma))
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    return (maps * finite.unsqueeze(-1).to(maps.dtype)).to(torch.float32)


def disc_heatmaps(points, size, radius: float) -> torch.Tensor:
    """Binary disc maps, one per point (thesis 3.1.1, the detection target of CALE).

    A pixel is 1 when the distance from its centre to the point is <= ``radius`` (heatmap pixels),
    else 0. The thesis uses radius 10 px for a 200 px face size (square root of the tight box
    area); scale it with the map resolution. NaN points give all-zero maps (CALE's detector is
    trained on visible points only: pass NaN for invisible ones). Returns (..., N, H, W) float32.
    """
    if not radius >= 0:
        raise ValueError(f"radius must be non-negative, got {radius}")
    xy = _points_xy(points)
    height, width = _size_hw(size)
    dx = _pixel_centres(width, xy) - xy[..., 0:1]
    dy = _pixel_centres(height, xy) - xy[..., 1:2]
    squared = dy.unsqueeze(-1) ** 2 + dx.unsqueeze(-2) ** 2
    # NaN distances compare False, so missing points give empty maps.
    return (squared <= radius * radius).to(torch.float32)


def decode_heatmaps(heatmaps) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and scores from heatmaps: argmax + the official FAN code's quarter-pixel refinement.

    ``heatmaps`` (..., N, H, W) (normally (B, N, 64, 64)). For each map: the argmax pixel
    (row i, col j); when it is not on the border (0 < i < H-1 and 0 < j < W-1) each coordinate moves
    0.25 px toward its larger neighbour (sign of the neighbour difference; no move on a tie), as in
    the official FAN code. The result is the continuous coordinate of that pixel's centre,
    ``x = j + 0.5 +- 0.25``, ``y = i + 0.5 +- 0.25`` (the official code's "+1 ... -0.5" equals this).
    Returns (points (..., N, 2) float32 in heatmap pixels, scores (..., N) = the maximum value).
    Fully vectorised; the points are never rounded.
    """
    maps = _as_tensor(heatmaps, "heatmaps", dtype=None)
    if maps.ndim < 3:
        raise ValueError(f"heatmaps must have shape (..., N, H, W), got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        maps = maps.to(torch.float32)
    height, width = maps.shape[-2:]
    if height == 0 or width == 0:
        raise ValueError(f"heatmaps must be non-empty, got {tuple(maps.shape)}")
    flat = maps.reshape(*maps.shape[:-2], height * width)
    scores, index = flat.max(dim=-1)
    row = torch.div(index, width, rounding_mode="floor")
    col = index - row * width

    interior = (row > 0) & (row < height - 1) & (col > 0) & (col < width - 1)

    def value_at(r, c):
        flat_index = r.clamp(0, height - 1) * width + c.clamp(0, width - 1)
        return flat.gather(-1, flat_index.unsqueeze(-1)).squeeze(-1)

    shift_x = torch.sign(value_at(row, col + 1) - value_at(row, col - 1))
    shift_y = torch.sign(value_at(row + 1, col) - value_at(row - 1, col))
    shift = 0.25 * torch.stack([shift_x, shift_y], dim=-1).to(torch.float32)
    shift = torch.where(interior.unsqueeze(-1), shift, torch.zeros_like(shift))
    # NaN neighbours (NaN maps) would give NaN signs: treat as no refinement.
    shift = torch.nan_to_num(shift, nan=0.0)
    points = torch.stack([col, row], dim=-1).to(torch.float32) + 0.5 + shift
    return points, scores


def _gaussian_kernel(sigma: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def decode_heatmaps_subpixel(heatmaps, smooth_sigma: float = 1.0,
                             max_shift: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and scores from heatmaps with a distribution-aware sub-pixel step.

    A network's heatmap near its peak is close to the Gaussian it was trained to regress, whose
    logarithm is a quadratic: one Newton step on the log-heatmap from the argmax pixel lands on the
    Gaussian's centre exactly. For each map: smooth it with a Gaussian of ``smooth_sigma`` heatmap
    px (a Gaussian convolved with a Gaussian stays one; smoothing tames the noise of a network's
    output and keeps the log finite), take the log, estimate its gradient g and Hessian H at the raw
    map's argmax pixel by central differences, and move by ``-H^-1 g`` (at most ``max_shift`` px per
    axis). Where the Hessian is not negative definite or the argmax is on the border, the point is
    the argmax pixel's centre. This is the decoding of Zhang et al., "Distribution-aware coordinate
    representation for human pose estimation" (CVPR 2020), used here because the official
    quarter-pixel rule (:func:`decode_heatmaps`) quantises to 0.25 px, about 1.5% NME per quarter pixel
    on 32 px heatmaps. Same conventions and return values as :func:`decode_heatmaps` (scores are
    the raw maps' maxima).
    """
    if not smooth_sigma >= 0:
        raise ValueError(f"smooth_sigma must be non-negative, got {smooth_sigma}")
    maps = _as_tensor(heatmaps, "heatmaps", dtype=None)
    if maps.ndim < 3:
        raise ValueError(f"heatmaps must have shape (..., N, H, W), got {tuple(maps.shape)}")
    maps = maps.detach().to(torch.float64)
    height, width = maps.shape[-2:]
    if height == 0 or width == 0:
        raise ValueError(f"heatmaps must be non-empty, got {tuple(maps.shape)}")
    lead = maps.shape[:-2]
    flat_maps = maps.reshape(-1, 1, height, width)
    scores = flat_maps.reshape(flat_maps.shape[0], -1).max(dim=-1).values
    smooth = flat_maps
    if smooth_sigma > 0:
        k = _gaussian_kernel(smooth_sigma, flat_maps.dtype, flat_maps.device)
        pad = k.numel() // 2
        # replicate padding: a peak near the border is not pulled toward a zero frame
        smooth = torch.nn.functional.pad(flat_maps, (pad, pad, 0, 0), mode="replicate")
        smooth = torch.nn.functional.conv2d(smooth, k.view(1, 1, 1, -1))
        smooth = torch.nn.functional.pad(smooth, (0, 0, pad, pad), mode="replicate")
        smooth = torch.nn.functional.conv2d(smooth, k.view(1, 1, -1, 1))
    smooth = smooth[:, 0]
    peak = smooth.amax(dim=(-2, -1), keepdim=True)
    # log of the map relative to its peak; a floor keeps it finite where the map is ~0 or negative
    logmap = torch.log(torch.clamp(smooth / torch.clamp(peak, min=1e-30), min=1e-10))
    # the raw map's argmax, as the quarter-pixel rule takes it: the fit refines that mode, it never
    # jumps to another one of a multi-modal map
    index = flat_maps.reshape(flat_maps.shape[0], -1).argmax(dim=-1)
    row = torch.div(index, width, rounding_mode="floor")
    col = index - row * width
    interior = (row > 0) & (row < height - 1) & (col > 0) & (col < width - 1)
    n = torch.arange(smooth.shape[0], device=smooth.device)
    r, c = row.clamp(1, max(height - 2, 1)), col.clamp(1, max(width - 2, 1))

    def at(dr: int, dc: int) -> torch.Tensor:
        return logmap[n, (r + dr).clamp(0, height - 1), (c + dc).clamp(0, width - 1)]

    centre = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2 * centre + at(0, -1)
    hyy = at(1, 0) - 2 * centre + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    usable = interior & (hxx < 0) & (det > 1e-12) & torch.isfinite(det)
    safe = torch.where(usable, det, torch.ones_like(det))
    dx = -(hyy * gx - hxy * gy) / safe
    dy = -(hxx * gy - hxy * gx) / safe
    shift = torch.stack([dx, dy], dim=-1).clamp(-max_shift, max_shift)
    shift = torch.where(usable.unsqueeze(-1), shift, torch.zeros_like(shift))
    points = torch.stack([col, row], dim=-1).to(torch.float64) + 0.5 + shift
    return (points.to(torch.float32).reshape(*lead, 2),
            scores.to(torch.float32).reshape(*lead))


def _float64_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to(torch.float64).cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def heatmap_coords_to_image(points, matrix=None, *, inverse=None) -> np.ndarray:
    """Heatmap px -> image px: undo the affine a crop's heatmaps were made with.

    ``points`` (..., N, 2|3) in heatmap pixels (numpy or torch; a third column, depth, is scaled
    like x and y, see :func:`fa_lib.geometry.transform_points`). Give exactly one of

    - ``matrix``: the image px -> heatmap px affine (..., 3, 3) the crop was made with (the
      ``"matrix"`` of a :class:`fa_lib.data.pipeline.FanInputs` item, with any rotation / flip of
      the augmentation); it is inverted in float64 with ``np.linalg.inv``;
    - ``inverse``: the heatmap px -> image px affine (..., 3, 3) itself, e.g.
      ``geometry.uncrop_matrix(center, scale, heatmap_size)`` for an official FAN crop of
      (center, scale) (the exact analytic inverse of ``geometry.crop_matrix``).

    The matrices' leading dimensions broadcast against the points' (a (3, 3) matrix serves a whole
    batch). The map is computed in float64; returns float32 numpy (..., N, 2|3).
    """
    if (matrix is None) == (inverse is None):
        raise ValueError("give exactly one of matrix (image -> heatmap) and inverse (heatmap -> image)")
    back = np.linalg.inv(_float64_numpy(matrix)) if inverse is None else _float64_numpy(inverse)
    out = geometry.transform_points(_float64_numpy(points), back)
    return np.asarray(out, dtype=np.float64).astype(np.float32)


def heatmaps_to_image_points(heatmaps, matrix=None, *, inverse=None,
                             decoder: str = "quarter") -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in image pixels from heatmaps: the one decoder of the library.

    ``heatmaps_to_image_points(heatmaps, matrix) -> (points, scores)``, or
    ``heatmaps_to_image_points(heatmaps, inverse=uncrop) -> (points, scores)``:

    1. ``decoder="quarter"``: :func:`decode_heatmaps` (argmax + the official quarter-pixel rule,
       heatmap pixels); ``decoder="subpixel"``: :func:`decode_heatmaps_subpixel`;
    2. :func:`heatmap_coords_to_image`: back to image pixels through the inverse of ``matrix``, the
       image px -> heatmap px affine of the crop ((B, 3, 3) one per map set, or (3, 3) for all;
       inverted in float64 with ``np.linalg.inv``), or through ``inverse``, the heatmap px -> image
       px affine, e.g. ``geometry.uncrop_matrix(center, scale, heatmap_size)``.

    ``heatmaps`` (B, N, H, W) (or (..., N, H, W)), numpy or torch, any device. Returns
    ``points`` float32 numpy (B, N, 2) in image pixels (continuous convention: the centre of image
    pixel (row i, col j) is (j + 0.5, i + 0.5); never rounded) and ``scores`` float32 numpy (B, N),
    the heatmap maxima. A flipped crop's points keep the order of the heatmap channels: permute
    them back (``fa_lib.train.heatmap_points_to_image`` does for prepared batches).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    decode = decode_heatmaps if decoder == "quarter" else decode_heatmaps_subpixel
    points, scores = decode(heatmaps)
    image_points = heatmap_coords_to_image(points, matrix, inverse=inverse)
    return image_points, scores.detach().cpu().numpy().astype(np.float32, copy=False)


def blur_heatmaps(heatmaps, sigma: float) -> torch.Tensor:
    """Each map (..., N, H, W) convolved with a Gaussian of std ``sigma`` px (zero padding).

    Decoding a disc map (CALE's detector, section 3.1.1) by its argmax lands anywhere on the disc's
    flat top; blurred with a Gaussian of about half the disc's radius, the disc has one peak, at its
    centre, which the decoders find."""
    maps = torch.as_tensor(heatmaps, dtype=torch.float32)
    if not sigma > 0:
        return maps
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    shape = maps.shape
    flat = maps.reshape(-1, 1, shape[-2], shape[-1])
    flat = torch.nn.functional.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
    flat = torch.nn.functional.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return flat.reshape(shape)

