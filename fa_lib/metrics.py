"""Evaluation metrics of the thesis (numpy).

- NME normalised by the ground-truth box size, eq. 4.1 (section 4.1.3), and its visibility-aware
  AFLW-PIFA form, eq. 3.3 (section 3.2.1); the classic inter-ocular NME for comparison.
- Cumulative error distribution (CED) curves and the area under them up to a threshold (AUC@0.07).
- PSNR, eq. 6.6, and SSIM (section 6.3) for super-resolution.
- Pixel accuracy, mean class accuracy and mean IU, eq. 5.4-5.6 (section 5.8) for face parsing.

Errors are returned as fractions (0.05 = 5 %); the thesis tables print percentages (multiply by 100).
"""
from __future__ import annotations

import numpy as np

from .geometry import box_from_landmarks


def _points_pair(pred, gt, dims: int):
    pred = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64)
    gt = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt, dtype=np.float64)
    if pred.shape[:-1] != gt.shape[:-1] or pred.ndim not in (2, 3):
        raise ValueError(f"pred and gt must both be (N, 2|3) or (B, N, 2|3) with the same N, got "
                         f"{pred.shape} and {gt.shape}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if pred.shape[-1] < dims or gt.shape[-1] < dims:
        raise ValueError(f"dims={dims} needs points with at least {dims} coordinates")
    return pred, gt


def face_size(box) -> np.ndarray:
    """d = sqrt(w * h) of boxes [x1, y1, x2, y2] (..., 4) (eq. 4.1; eq. 3.3's f_i)."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1:] != (4,):
        raise ValueError(f"box must have shape (..., 4), got {box.shape}")
    width, height = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    if (width <= 0).any() or (height <= 0).any():
        raise ValueError("box must have x2 > x1 and y2 > y1")
    return np.sqrt(width * height)


def _normaliser(gt, box):
    if box is None:
        box = box_from_landmarks(gt[..., :2])
    size = face_size(box)
    if size.shape != gt.shape[:-2]:
        raise ValueError(f"box must give one size per image: expected shape {gt.shape[:-2] + (4,)}")
    return size


def _point_errors(pred, gt, dims):
    return np.linalg.norm(pred[..., :dims] - gt[..., :dims], axis=-1)


def nme_box(pred, gt, box=None, dims: int = 2):
    """Box-normalised mean error per image, eq. 4.1 (section 4.1.3).

    Mean over the points of ``||pred - gt||`` divided by ``d = sqrt(w_bbox * h_bbox)``. The box is
    the tight box of the ground-truth landmarks ``gt`` unless ``box`` (..., 4) is given; the thesis
    uses the box of the *2D* landmarks for 3D experiments too, so pass it when ``gt`` holds 3D
    landmarks. ``pred``/``gt``: (N, 2|3) -> a float, or (B, N, 2|3) -> (B,) array. Distances use
    x, y only unless ``dims=3``. All points count, visible or not.
    """
    pred, gt = _points_pair(pred, gt, dims)
    errors = _point_errors(pred, gt, dims).mean(axis=-1) / _normaliser(gt, box)
    return float(errors) if errors.ndim == 0 else errors


def nme_visible(pred, gt, visibility, box=None, dims: int = 2):
    """Visibility-aware NME per image, eq. 3.3 (AFLW-PIFA, section 3.2.1).

    ``sum_j v(j) ||pred_j - gt_j|| / (f * |v|_1)``: the mean error over the *visible* points,
    divided by the face size f = sqrt(w * h) of the face's bounding box ("the square root of the
    face size calculated from the bounding box as in [54]"). ``box`` is that box (..., 4); when
    omitted the tight box of *all* ground-truth points (visible and not) is used, which for
    3D-perspective annotations is the whole face. Images without visible points give NaN.
    """
    pred, gt = _points_pair(pred, gt, dims)
    mask = np.asarray(visibility).astype(bool)
    if mask.shape != gt.shape[:-1]:
        raise ValueError(f"visibility must have shape {gt.shape[:-1]}, got {mask.shape}")
    errors = _point_errors(pred, gt, dims)
    count = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_visible = np.where(mask, errors, 0.0).sum(axis=-1) / count
    result = mean_visible / _normaliser(gt, box)
    return float(result) if np.ndim(result) == 0 else result


def nme_interocular(pred, gt, dims: int = 2):
    """Mean error normalised by the outer-eye-corner distance ||gt[36] - gt[45]|| (68 points).

    The traditional normalisation that section 4.1.3 replaces by the box size because it shrinks
    (and the error explodes) for profile faces. Per image, like :func:`nme_box`.
    """
    pred, gt = _points_pair(pred, gt, dims)
    if gt.shape[-2] != 68:
        raise ValueError(f"nme_interocular needs the 68-point markup, got {gt.shape[-2]} points")
    distance = np.linalg.norm(gt[..., 36, :2] - gt[..., 45, :2], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = _point_errors(pred, gt, dims).mean(axis=-1) / distance
    return float(errors) if errors.ndim == 0 else errors


def ced_curve(errors, thresholds) -> np.ndarray:
    """Cumulative error distribution: fraction of images with error <= t, for each threshold t.

    NaN errors (e.g. no visible point) count as failures: they are never <= t.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if errors.size == 0:
        raise ValueError("errors is empty")
    with np.errstate(invalid="ignore"):
        below = errors[None, :] <= thresholds.ravel()[:, None]
    return below.mean(axis=1).reshape(thresholds.shape)


def auc_at(errors, threshold: float = 0.07, num_steps: int | None = None) -> float:
    """Area under the CED curve on [0, threshold], divided by threshold (1 = perfect).

    With ``num_steps=None`` (default) the integral is exact: the CED is a step function, and an
    image with error e contributes ``max(0, 1 - e / threshold)``, so AUC is the mean of that over
    images. With an integer ``num_steps`` the CED is sampled at ``num_steps + 1`` equally spaced
    thresholds 0, t/num_steps, ..., t and integrated with the trapezoidal rule (as common evaluation
    scripts do); the two differ by at most 1 / num_steps. NaN errors count as failures.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if errors.size == 0:
        raise ValueError("errors is empty")
    if num_steps is None:
        contribution = np.clip(1.0 - errors / threshold, 0.0, 1.0)
        return float(np.nan_to_num(contribution, nan=0.0).mean())
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    grid = np.linspace(0.0, threshold, int(num_steps) + 1)
    curve = ced_curve(errors, grid)
    area = np.sum((curve[1:] + curve[:-1]) * np.diff(grid)) / 2.0
    return float(area / threshold)


def _default_max(image: np.ndarray) -> float:
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    return 1.0


def _image_pair(reference, estimate):
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    if reference.shape != estimate.shape or reference.ndim not in (2, 3):
        raise ValueError(f"images must have the same (H, W) or (H, W, C) shape, got "
                         f"{reference.shape} and {estimate.shape}")
    return reference, estimate


#: ITU-R BT.601 luma of RGB in [0, 1], in [16, 235] (MATLAB's ``rgb2ycbcr``; BasicSR's ``test_y_channel``)
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
SSIM_CONVENTIONS = ("skimage", "wang")


def rgb_to_y(image) -> np.ndarray:
    """The Y channel (BT.601, range 16-235, float64) of an RGB image (H, W, 3): uint8 or floats in
    [0, 1]. The convention of the super-resolution literature's PSNR/SSIM on Y (BasicSR, EDSR)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"rgb_to_y needs an (H, W, 3) RGB image, got shape {image.shape}")
    unit = image.astype(np.float64) / _default_max(image)
    return unit @ _Y_WEIGHTS + 16.0


def _prepare(reference, estimate, max_value, channel: str, crop_border: int):
    """The pair as compared: RGB or its Y channel (then MAX = 255), minus ``crop_border`` px per side."""
    reference, estimate = _image_pair(reference, estimate)
    peak = _default_max(reference) if max_value is None else float(max_value)
    if channel == "y":
        reference, estimate, peak = rgb_to_y(reference), rgb_to_y(estimate), 255.0
    elif channel != "rgb":
        raise ValueError(f"channel must be 'rgb' or 'y', got {channel!r}")
    if crop_border:
        if 2 * crop_border >= min(reference.shape[:2]):
            raise ValueError(f"crop_border {crop_border} leaves nothing of {reference.shape[:2]} px images")
        reference = reference[crop_border:-crop_border, crop_border:-crop_border]
        estimate = estimate[crop_border:-crop_border, crop_border:-crop_border]
    return reference, estimate, peak


def psnr(reference, estimate, max_value: float | None = None, *, channel: str = "rgb", crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB, eq. 6.6: ``20 log10(MAX_I) - 10 log10(MSE)``.

    MSE is the mean squared difference over all pixels (and channels). ``max_value`` (MAX_I)
    defaults to the dtype maximum for integer images (255 for uint8) and to 1.0 for floats.
    ``channel="y"``: on the BT.601 Y channel (:func:`rgb_to_y`, MAX 255) and ``crop_border`` px removed
    from each side, the super-resolution literature's convention (the thesis states neither).
    Identical images give +inf.
    """
    reference, estimate, peak = _prepare(reference, estimate, max_value, channel, crop_border)
    mse = np.mean((reference.astype(np.float64) - estimate.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(peak) - 10.0 * np.log10(mse))


def ssim(reference, estimate, max_value: float | None = None, *, convention: str = "skimage", channel: str = "rgb",
         crop_border: int = 0) -> float:
    """Structural similarity (Wang et al. 2004, thesis [104]) via scikit-image.

    (H, W) grey or (H, W, C) colour (``channel_axis=-1``, mean over channels); ``max_value`` is
    the data range (default as in :func:`psnr`). ``convention``: ``"skimage"`` (its default 7x7
    uniform window with the sample covariance, shrunk to the largest odd size that fits images
    smaller than 7 px) or ``"wang"`` (the paper's and MATLAB's: an 11x11 Gaussian window of std 1.5
    and the population covariance). ``channel``/``crop_border`` as in :func:`psnr`.
    """
    from skimage.metrics import structural_similarity

    if convention not in SSIM_CONVENTIONS:
        raise ValueError(f"convention must be one of {SSIM_CONVENTIONS}, got {convention!r}")
    reference, estimate, peak = _prepare(reference, estimate, max_value, channel, crop_border)
    axis = -1 if reference.ndim == 3 else None
    if convention == "wang":
        if min(reference.shape[:2]) < 11:
            raise ValueError(f"images of {reference.shape[:2]} px are too small for the 11x11 window of Wang's SSIM")
        return float(structural_similarity(
            reference.astype(np.float64), estimate.astype(np.float64), data_range=peak, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, channel_axis=axis))
    window = min(7, min(reference.shape[:2]))
    window -= (window + 1) % 2
    if window < 3:
        raise ValueError(f"images of {reference.shape[:2]} px are too small for SSIM (>= 3 px)")
    return float(structural_similarity(
        reference.astype(np.float64), estimate.astype(np.float64), data_range=peak,
        win_size=window, channel_axis=axis))


def confusion_matrix(pred, gt, n_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """n[i, j] = number of pixels of ground-truth class i predicted as class j (int64)."""
    pred = np.asarray(pred).astype(np.int64).ravel()
    gt = np.asarray(gt).astype(np.int64).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {np.shape(pred)} and {np.shape(gt)}")
    keep = np.ones_like(gt, dtype=bool) if ignore_index is None else gt != ignore_index
    pred, gt = pred[keep], gt[keep]
    if gt.size and (min(pred.min(), gt.min()) < 0 or max(pred.max(), gt.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return np.bincount(gt * n_classes + pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def segmentation_scores(pred, gt, n_classes: int, ignore_index: int | None = None) -> dict:
    """Pixel accuracy, mean class accuracy and mean IU, eq. 5.4-5.6 (section 5.8, as in FCN [66]).

    ``pred`` and ``gt`` are label maps of any (equal) shape, e.g. (B, H, W): the counts are
    accumulated over all pixels of all images before the ratios are taken (dataset-level scores,
    as in FCN's evaluation). With n[i, j] pixels of class i predicted as j and t_i = sum_j n[i, j]:

    - pixel accuracy = sum_i n[i, i] / sum_i t_i                     (5.4)
    - mean accuracy  = mean over classes with t_i > 0 of n[i, i] / t_i (5.5)
    - mean IU        = mean over classes of n[i, i] / (t_i + sum_j n[j, i] - n[i, i])   (5.6)

    Classes absent from both ground truth and prediction have 0/0 and are ignored. For mean
    accuracy a class absent from the ground truth is ignored too (the thesis's n_cl counts the
    classes present in the ground truth); for mean IU a class that is only predicted (false
    positives) counts with IU 0, as in FCN's evaluation code. Returns a dict with the three
    scores (fractions), per-class ``accuracy``/``iu`` arrays (NaN where undefined) and the
    ``confusion`` matrix.
    """
    confusion = confusion_matrix(pred, gt, n_classes, ignore_index)
    total = confusion.sum()
    if total == 0:
        raise ValueError("no labelled pixels to score")
    correct = np.diag(confusion).astype(np.float64)
    per_gt = confusion.sum(axis=1).astype(np.float64)
    per_pred = confusion.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(per_gt > 0, correct / per_gt, np.nan)
        union = per_gt + per_pred - correct
        iu = np.where(union > 0, correct / union, np.nan)
    return {
        "pixel_accuracy": float(correct.sum() / total),
        "mean_accuracy": float(np.nanmean(accuracy)),
        "mean_iu": float(np.nanmean(iu)),
        "accuracy": accuracy,
        "iu": iu,
        "confusion": confusion,
    }
