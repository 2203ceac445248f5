"""Face boxes, crops and the affine maps between image and crop (official FAN convention).

Thesis 1.2 (the face region is a function of the detector's scale and location), 4.3 (256x256 crops,
64x64 heatmaps) and Table 4.3 (box noise); the constants below are those of the official
face-alignment code (the box -> centre/scale of its ``get_landmarks_from_image``, the crop of its
``utils.crop`` / ``utils.transform``).

Coordinates are continuous pixels: the centre of pixel (row i, col j) is at (x = j + 0.5, y = i + 0.5).
A face is cropped from ``center`` (image px) and ``scale``: the crop covers a square of side
``200 * scale`` image pixels centred on ``center`` and is resampled to ``resolution`` pixels, i.e.

    crop_px = (image_px - center) / (200 * scale) * resolution + resolution / 2

exactly (no integer rounding, unlike the official code). The same formula with ``resolution = 64``
maps image pixels to heatmap pixels. Matrices are 3x3 homogeneous affines acting on column vectors
(x, y, 1), with leading batch dimensions allowed everywhere ((..., 3, 3)).

Points and matrices may be numpy arrays or torch tensors; functions return the same kind they get.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

# Official FAN constants (face-alignment's detector box -> crop convention).
REFERENCE_SCALE = 195.0      # scale = (w + h) / 195
CENTER_SHIFT = 0.12          # the centre moves up by 0.12 h
CROP_SIDE_PER_SCALE = 200.0  # crop side in image px = 200 * scale


def _is_torch(*values) -> bool:
    return any(isinstance(v, torch.Tensor) for v in values)


def _float_array(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values,
                           dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}") from error
    return array


def _float_tensor(values, like: torch.Tensor | None = None) -> torch.Tensor:
    device = like.device if like is not None else None
    if isinstance(values, torch.Tensor):
        return values.to(dtype=torch.float64, device=device)
    return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)


def _check_box(box) -> None:
    if box.shape[-1:] != (4,):
        raise ValueError(f"box must have shape (..., 4) [x1, y1, x2, y2], got {tuple(box.shape)}")


def box_to_center_scale(box):
    """Official FAN centre and scale of a face box [x1, y1, x2, y2] (..., 4).

    ``center = (x2 - w/2, y2 - h/2 - 0.12 h)`` and ``scale = (w + h) / 195`` (the official code's), so the
    crop (side 200*scale) is slightly larger than the box and shifted up toward the forehead.
    Returns (center (..., 2), scale (...)) as float64 numpy or torch (same kind as ``box``).
    """
    as_torch = _is_torch(box)
    values = _float_tensor(box) if as_torch else _float_array(box, "box")
    _check_box(values)
    x1, y1, x2, y2 = (values[..., k] for k in range(4))
    width, height = x2 - x1, y2 - y1
    if (width <= 0).any() or (height <= 0).any():
        raise ValueError("box must have x2 > x1 and y2 > y1")
    center_x = x2 - width / 2.0
    center_y = y2 - height / 2.0 - CENTER_SHIFT * height
    stack = torch.stack if as_torch else np.stack
    center = stack([center_x, center_y], -1)
    scale = (width + height) / REFERENCE_SCALE
    return center, scale


def crop_box(center, scale):
    """The square image region [x1, y1, x2, y2] (..., 4) that a crop of (center, scale) covers."""
    as_torch = _is_torch(center, scale)
    center = _float_tensor(center) if as_torch else _float_array(center, "center")
    scale = _float_tensor(scale, center) if as_torch else _float_array(scale, "scale")
    half = CROP_SIDE_PER_SCALE * scale / 2.0
    stack = torch.stack if as_torch else np.stack
    return stack([center[..., 0] - half, center[..., 1] - half,
                  center[..., 0] + half, center[..., 1] + half], -1)


def _affine(a, tx, ty, as_torch: bool, like=None):
    """3x3 matrices [[a, 0, tx], [0, a, ty], [0, 0, 1]] broadcast over the leading dims."""
    if as_torch:
        a, tx, ty = torch.broadcast_tensors(a, tx, ty)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        rows = [torch.stack([a, zero, tx], -1), torch.stack([zero, a, ty], -1),
                torch.stack([zero, zero, one], -1)]
        return torch.stack(rows, -2)
    a, tx, ty = np.broadcast_arrays(a, tx, ty)
    zero, one = np.zeros_like(a), np.ones_like(a)
    rows = [np.stack([a, zero, tx], -1), np.stack([zero, a, ty], -1), np.stack([zero, zero, one], -1)]
    return np.stack(rows, -2)


def _center_scale(center, scale, resolution):
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    as_torch = _is_torch(center, scale)
    center = _float_tensor(center) if as_torch else _float_array(center, "center")
    scale = _float_tensor(scale, center) if as_torch else _float_array(scale, "scale")
    if center.shape[-1:] != (2,):
        raise ValueError(f"center must have shape (..., 2), got {tuple(center.shape)}")
    if (scale <= 0).any():
        raise ValueError("scale must be positive")
    return center, scale, as_torch


def crop_matrix(center, scale, resolution: float):
    """Image px -> crop px affine (..., 3, 3): ``(p - center) / (200 scale) * res + res/2``.

    ``center`` (..., 2) and ``scale`` (...) broadcast together; ``resolution`` is the side of the
    target space (256 for the network input crop, 64 for the heatmaps).
    """
    center, scale, as_torch = _center_scale(center, scale, resolution)
    a = resolution / (CROP_SIDE_PER_SCALE * scale)
    return _affine(a, resolution / 2.0 - a * center[..., 0], resolution / 2.0 - a * center[..., 1],
                   as_torch)


def uncrop_matrix(center, scale, resolution: float):
    """Crop px -> image px affine (..., 3, 3), the exact inverse of :func:`crop_matrix`."""
    center, scale, as_torch = _center_scale(center, scale, resolution)
    a = CROP_SIDE_PER_SCALE * scale / resolution
    return _affine(a, center[..., 0] - a * resolution / 2.0, center[..., 1] - a * resolution / 2.0,
                   as_torch)


def transform_points(points, matrix):
    """Apply affine ``matrix`` (..., 3, 3) or (..., 2, 3) to ``points`` (..., N, 2|3).

    The matrix's leading dims broadcast against the points' leading dims (those before N). For 3D
    points z is multiplied by the affine's isotropic scale sqrt(|det A|) (no translation), so depth
    stays in the same pixel units as x and y. Returns the kind (numpy/torch) and float dtype of
    ``points`` (float32 for integer input).
    """
    as_torch = _is_torch(points, matrix)
    if as_torch:
        like = points if isinstance(points, torch.Tensor) else None
        out_dtype = points.dtype if isinstance(points, torch.Tensor) and points.is_floating_point() \
            else torch.float32
        p = _float_tensor(points, like)
        m = _float_tensor(matrix, p)
    else:
        source = np.asarray(points)
        out_dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.float32
        p = _float_array(points, "points")
        m = _float_array(matrix, "matrix")
    if p.ndim < 2 or p.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (..., N, 2) or (..., N, 3), got {tuple(p.shape)}")
    if m.ndim < 2 or m.shape[-1] != 3 or m.shape[-2] not in (2, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3) or (..., 2, 3), got {tuple(m.shape)}")
    linear = m[..., :2, :2]
    translation = m[..., None, :2, 2]
    linear_t = linear.transpose(-1, -2) if as_torch else np.swapaxes(linear, -1, -2)
    xy = p[..., :2] @ linear_t + translation
    if p.shape[-1] == 3:
        det = linear[..., 0, 0] * linear[..., 1, 1] - linear[..., 0, 1] * linear[..., 1, 0]
        z_scale = det.abs().sqrt() if as_torch else np.sqrt(np.abs(det))
        z = p[..., 2] * z_scale[..., None]
        xy = torch.cat([xy, z[..., None]], -1) if as_torch else np.concatenate([xy, z[..., None]], -1)
    return xy.to(out_dtype) if as_torch else xy.astype(out_dtype)


def uncrop_points(points, center, scale, resolution: float):
    """Crop or heatmap px -> image px (inverse of the crop); ``resolution`` is the side of the
    space the points are in (256 for the crop, 64 for heatmaps). Batched over leading dims."""
    return transform_points(points, uncrop_matrix(center, scale, resolution))


def crop_points(points, center, scale, resolution: float):
    """Image px -> crop or heatmap px; the inverse of :func:`uncrop_points`."""
    return transform_points(points, crop_matrix(center, scale, resolution))


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(s) for s in size)
    return height, width


def warp_image(image, matrix, size, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample ``image`` (H, W) or (H, W, C) through the affine ``matrix`` (3x3 or 2x3,
    image px -> output px in our continuous convention) into an output of ``size`` (int or (H, W)).

    OpenCV places pixel (i, j) at integer (x = j, y = i); ours is at (j + 0.5, i + 0.5). With
    T(d) a translation by d, the OpenCV matrix is ``T(-0.5) @ matrix @ T(+0.5)``, which keeps the
    linear part and changes the translation to ``t + A @ (0.5, 0.5) - 0.5``. Bilinear by default,
    constant 0 border. Returns the image's dtype.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, C) and non-empty, got {array.shape}")
    m = _float_array(matrix, "matrix")
    if m.shape not in ((3, 3), (2, 3)):
        raise ValueError(f"matrix must be a single 3x3 or 2x3 affine, got {m.shape}")
    height, width = _size_hw(size)
    linear, translation = m[:2, :2], m[:2, 2]
    opencv = np.concatenate([linear, (translation + linear @ np.array([0.5, 0.5]) - 0.5)[:, None]], 1)
    # cv2 needs a supported depth (uint8, uint16, int16, float32, float64) and <= 4 channels per call.
    source = array if array.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64) \
        else array.astype(np.float32)
    warp = lambda img: cv2.warpAffine(  # noqa: E731 - one call, two uses below
        np.ascontiguousarray(img), opencv, (width, height), flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if source.ndim == 3 and source.shape[2] > 4:
        out = np.stack([warp(source[..., c]) for c in range(source.shape[2])], -1)
    else:
        out = warp(source)
        if source.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
            out = out[..., None]
    return out.astype(array.dtype, copy=False)


def crop_image(image, center, scale, resolution: int) -> np.ndarray:
    """Crop a face (official FAN convention, exact continuous affine) with bilinear resampling.

    ``image`` (H, W) grey or (H, W, C) colour; ``center`` (2,), ``scale`` a number; returns a
    (resolution, resolution[, C]) array of the image's dtype, zero outside the image. A point p of
    the image lands at ``transform_points(p, crop_matrix(center, scale, resolution))`` in the crop.
    """
    center_array = _float_array(center, "center")
    if center_array.shape != (2,) or np.ndim(_float_array(scale, "scale")) != 0:
        raise ValueError("crop_image takes one face: center (2,) and a scalar scale")
    return warp_image(image, crop_matrix(center_array, float(_float_array(scale, "scale")),
                                         resolution), resolution)


def rotation_scale_matrix(center, scale, resolution: float, angle_deg: float = 0.0,
                          scale_factor: float = 1.0, flip: bool = False) -> np.ndarray:
    """Image px -> augmented crop px (3, 3) for training augmentation (thesis 4.3.2).

    Starts from :func:`crop_matrix` and, about the crop centre, (1) zooms by ``1 / scale_factor``
    (``scale_factor`` multiplies the face scale: > 1 shows more context, the face looks smaller;
    the thesis jitters it in 0.8..1.2), (2) rotates the content by ``angle_deg`` counter-clockwise
    as displayed (y down), (3) if ``flip``, mirrors horizontally (x -> resolution - x). With
    ``flip=True`` the landmark labels must also be swapped: ``points[..., FLIP_PERMUTATION_68, :]``
    after :func:`transform_points` (the matrix mirrors the coordinates, not the point identities).
    """
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    base = _float_array(crop_matrix(_float_array(center, "center"), _float_array(scale, "scale"),
                                    resolution), "matrix")
    half = resolution / 2.0
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # Counter-clockwise on screen with y pointing down: (1, 0) -> (cos, -sin).
    rotation = np.array([[cos, sin], [-sin, cos]]) / scale_factor
    if flip:
        rotation = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ rotation
    about_centre = np.eye(3)
    about_centre[:2, :2] = rotation
    about_centre[:2, 2] = half - rotation @ np.array([half, half])
    return about_centre @ base


def box_from_landmarks(points):
    """Tight box [x1, y1, x2, y2] (..., 4) of landmarks (..., N, 2|3) (x, y only; NaN ignored).

    Keeps the points' float dtype (float32 for integer points) and kind (numpy/torch).

    Thesis 4.1.3: the ground-truth box of a face is computed from its 2D landmarks.
    """
    as_torch = _is_torch(points)
    array = _float_array(points, "points")
    if array.ndim < 2 or array.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (..., N, 2) or (..., N, 3), got {array.shape}")
    xy = array[..., :2]
    if np.isnan(xy).all(axis=(-2, -1)).any():
        raise ValueError("every point of a face is NaN: no box")
    box = np.concatenate([np.nanmin(xy, axis=-2), np.nanmax(xy, axis=-2)], -1)
    if as_torch:
        dtype = points.dtype if points.is_floating_point() else torch.float32
        return torch.from_numpy(box).to(device=points.device, dtype=dtype)
    source_dtype = np.asarray(points).dtype
    return box.astype(source_dtype if np.issubdtype(source_dtype, np.floating) else np.float32)


def perturb_box(box, fraction: float, rng=None) -> np.ndarray:
    """Randomly perturb a box's shape (thesis Table 4.3: uniform noise on the box shape).

    Each side moves independently by ``U(-fraction, fraction)`` times the box width (x1, x2) or
    height (y1, y2); e.g. fraction 0.1 is the "10% noise" of the thesis's evaluation and 0.2 its
    training noise. ``box`` (..., 4); ``rng`` a numpy Generator, an int seed or None. fraction must
    be in [0, 0.5) so the box can never collapse. Returns float32 (..., 4).
    """
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"fraction must be in [0, 0.5), got {fraction}")
    values = _float_array(box, "box")
    _check_box(values)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    width = values[..., 2] - values[..., 0]
    height = values[..., 3] - values[..., 1]
    size = np.stack([width, height, width, height], -1)
    noise = generator.uniform(-fraction, fraction, size=values.shape)
    return (values + noise * size).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# the scaled-orthographic camera of a 3D face model (thesis 4.1: how 3D landmarks project)

def fit_orthographic_camera(points, reference) -> tuple[float, np.ndarray, np.ndarray]:
    """The scaled-orthographic camera ``p = s R[:2] X + t`` that best maps the 3D ``reference`` points
    (K, 3; the face model's axes: x to the subject's left, y up, z to the camera) onto the image
    ``points`` (K, 2|3 px; z ignored; rows with a NaN are left out; at least 4 finite): ``(s, R, t)``
    with R (3, 3) a rotation and t (2,) in image px, y down. The 2x3 map is fitted by linear least squares; its
    nearest matrix with orthonormal rows (SVD) gives the first two rows of R, the third is their cross
    product, s is the mean of its two singular values. Apply it with :func:`project_orthographic`."""
    xy = np.asarray(points, np.float64)[:, :2]
    model = np.asarray(reference, np.float64)
    if xy.shape[0] != model.shape[0] or model.shape[1:] != (3,):
        raise ValueError(f"fit_orthographic_camera needs (K, 2|3) points and (K, 3) reference points, got "
                         f"{np.shape(points)} and {np.shape(reference)}")
    finite = np.isfinite(xy).all(1) & np.isfinite(model).all(1)
    if finite.sum() < 4:
        raise ValueError(f"fit_orthographic_camera needs at least 4 finite points, got {int(finite.sum())}")
    image = xy[finite] * np.array([1.0, -1.0])  # y up, as the model
    world = model[finite]
    image_mean, world_mean = image.mean(0), world.mean(0)
    linear, *_ = np.linalg.lstsq(world - world_mean, image - image_mean, rcond=None)  # (3, 2)
    u, singular, vt = np.linalg.svd(linear.T, full_matrices=False)                    # (2, 3) = u s vt
    rows = u @ vt                                                                       # nearest orthonormal rows
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    scale = float(singular.mean())
    translation = (image_mean - scale * rows @ world_mean) * np.array([1.0, -1.0])
    return scale, rotation, translation


def project_orthographic(reference, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(K, 3) model points -> (K, 2) image px (y down) through a camera of :func:`fit_orthographic_camera`."""
    projected = scale * np.asarray(reference, np.float64) @ np.asarray(rotation)[:2].T
    return projected * np.array([1.0, -1.0]) + np.asarray(translation)


def pose_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``R = Rz(roll) Rx(pitch) Ry(yaw)`` (the renderer's convention, :func:`fa_lib.data.render.rotation_matrix`)."""
    rotation = np.asarray(rotation, np.float64)
    third = rotation[2]
    yaw = np.degrees(np.arctan2(-third[0], third[2]))
    pitch = np.degrees(np.arcsin(np.clip(third[1], -1.0, 1.0)))
    # column 2 of R is (-sin r cos p, cos r cos p, sin p)
    roll = np.degrees(np.arctan2(-rotation[0, 1], rotation[1, 1]))
    return float(yaw), float(pitch), float(roll)
