"""Tests of fa_lib.metrics: NME (eq. 4.1, 3.3), CED/AUC, PSNR (eq. 6.6), SSIM, eq. 5.4-5.6."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import gaussian_filter

from fa_lib import metrics
from fa_lib.geometry import box_from_landmarks


def square_face():
    gt = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 10.0], [40.0, 10.0]])  # box 40 x 10 -> d = 20
    return gt


def test_nme_box_hand_values():
    gt = square_face()
    pred = gt + np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0], [-6.0, 8.0]])  # errors 5, 0, 0, 10
    assert metrics.nme_box(pred, gt) == pytest.approx(15 / 4 / 20)
    # An explicit box overrides the landmark box: sqrt(100 * 25) = 50.
    assert metrics.nme_box(pred, gt, box=np.array([0, 0, 100, 25])) == pytest.approx(15 / 4 / 50)
    batch = metrics.nme_box(np.stack([pred, gt]), np.stack([gt, gt]))
    np.testing.assert_allclose(batch, [15 / 80, 0.0])


def test_nme_box_3d_uses_xy_unless_told():
    gt = np.c_[square_face(), np.zeros(4)]
    pred = gt.copy()
    pred[:, 2] += 8.0
    assert metrics.nme_box(pred, gt) == 0.0
    assert metrics.nme_box(pred, gt, dims=3) == pytest.approx(8 / 20)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (2, 68, 2), elements=st.floats(0, 100)),
       arrays(np.float64, (2, 68, 2), elements=st.floats(-3, 3)),
       st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), st.floats(0.1, 10))
def test_nme_translation_invariant_and_scales_with_one_over_d(gt, noise, shift, factor):
    gt = gt + np.linspace(0, 50, 68)[None, :, None] * np.array([1.0, 0.7])  # never a 0-size box
    pred = gt + noise
    base = metrics.nme_box(pred, gt)
    np.testing.assert_allclose(metrics.nme_box(pred + shift, gt + shift), base, rtol=1e-6, atol=1e-12)
    # Scaling both sets scales errors and d alike: NME unchanged; a larger box alone divides it.
    np.testing.assert_allclose(metrics.nme_box(pred * factor, gt * factor), base, rtol=1e-6, atol=1e-12)
    box = box_from_landmarks(gt).astype(np.float64)
    bigger = box.copy()
    bigger[:, 2:] = box[:, :2] + (box[:, 2:] - box[:, :2]) * factor
    np.testing.assert_allclose(metrics.nme_box(pred, gt, box=bigger), base / factor, rtol=1e-5)


def test_nme_visible_hand_values():
    gt = square_face()
    pred = gt + np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0], [-6.0, 8.0]])
    visible = np.array([True, True, False, False])
    # Mean over visible points (5 + 0) / 2, divided by f = 20.
    assert metrics.nme_visible(pred, gt, visible) == pytest.approx(2.5 / 20)
    all_visible = metrics.nme_visible(pred, gt, np.ones(4, bool))
    assert all_visible == pytest.approx(metrics.nme_box(pred, gt))
    batch = metrics.nme_visible(np.stack([pred, pred]), np.stack([gt, gt]),
                                np.stack([visible, np.zeros(4, bool)]))
    assert batch[0] == pytest.approx(2.5 / 20) and np.isnan(batch[1])


def test_nme_interocular():
    gt = np.zeros((68, 2))
    gt[:, 0] = np.linspace(0, 100, 68)
    gt[36] = [10.0, 0.0]
    gt[45] = [50.0, 30.0]                  # inter-ocular distance 50
    pred = gt + np.array([0.0, 5.0])
    assert metrics.nme_interocular(pred, gt) == pytest.approx(5 / 50)
    with pytest.raises(ValueError):
        metrics.nme_interocular(pred[:10], gt[:10])


def test_ced_and_auc():
    errors = np.array([0.0, 0.01, 0.035, 0.07, 0.5, np.nan])
    np.testing.assert_allclose(metrics.ced_curve(errors, [0.0, 0.035, 0.07, 1.0]),
                               [1 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert metrics.auc_at(np.zeros(10)) == 1.0
    assert metrics.auc_at(np.full(10, 0.08)) == 0.0
    assert metrics.auc_at(np.zeros(10), num_steps=100) == pytest.approx(1.0)
    assert metrics.auc_at(np.full(10, 0.08), num_steps=100) == 0.0
    # Exact integral: each image contributes max(0, 1 - e / t).
    expected = np.mean([1.0, 1 - 1 / 7, 0.5, 0.0, 0.0, 0.0])
    assert metrics.auc_at(errors) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    sample = rng.uniform(0, 0.1, 1000)
    assert abs(metrics.auc_at(sample, num_steps=700) - metrics.auc_at(sample)) <= 1 / 700


def test_psnr():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert metrics.psnr(image, image) == float("inf")
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 16                           # MSE = 256 / 16 = 16
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(255) - 10 * np.log10(16))
    floats = np.zeros((2, 2))
    assert metrics.psnr(floats, floats + 0.1) == pytest.approx(20.0)  # max 1, MSE 0.01
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:2])


def test_ssim():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)

    def noisy(amplitude):
        noise = rng.integers(-amplitude, amplitude + 1, image.shape)
        return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)

    mild, strong = metrics.ssim(image, noisy(20)), metrics.ssim(image, noisy(120))
    assert 0.0 < strong < mild < 1.0
    # Colour SSIM is the mean of the per-channel SSIMs (channel_axis=-1).
    other = noisy(60)
    per_channel = [metrics.ssim(image[..., c], other[..., c]) for c in range(3)]
    assert metrics.ssim(image, other) == pytest.approx(np.mean(per_channel))
    small = rng.random((5, 5))
    assert metrics.ssim(small, small) == pytest.approx(1.0)


def test_segmentation_scores_hand_made_mask():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 3],
                     [2, 2, 0, 2]])
    scores = metrics.segmentation_scores(pred, gt, n_classes=5)
    # n_ii: class0 3 of 4, class1 3 of 4, class2 3 of 4; 9 of 12 pixels right.
    assert scores["pixel_accuracy"] == pytest.approx(9 / 12)
    # Mean accuracy over classes present in the ground truth (0, 1, 2).
    assert scores["mean_accuracy"] == pytest.approx(0.75)
    # IU: class0 3/(4+4-3)=3/5, class1 3/(4+4-3)=3/5, class2 3/(4+3-3)=3/4, class3 0/1 (predicted
    # only), class4 absent from both -> ignored.
    assert scores["mean_iu"] == pytest.approx((0.6 + 0.6 + 0.75 + 0.0) / 4)
    assert np.isnan(scores["iu"][4]) and np.isnan(scores["accuracy"][3])
    assert scores["confusion"].sum() == 12
    # Batched input accumulates counts over all images.
    batched = metrics.segmentation_scores(np.stack([pred, gt]), np.stack([gt, gt]), n_classes=5)
    assert batched["pixel_accuracy"] == pytest.approx(21 / 24)
    with pytest.raises(ValueError):
        metrics.segmentation_scores(pred, gt, n_classes=3)


def test_wang_ssim_matches_the_gaussian_window_formula():
    rng = np.random.default_rng(0)
    x = rng.random((32, 32))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)

    def blur(a):
        return gaussian_filter(a, 1.5, truncate=3.5)

    c1, c2 = (0.01) ** 2, (0.03) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    expected = smap[5:-5, 5:-5].mean()
    assert metrics.ssim(x, y, 1.0, convention="wang") == pytest.approx(expected, rel=1e-6)
    assert metrics.ssim(x, y, 1.0) != pytest.approx(expected, rel=1e-3)  # skimage's default differs
    assert metrics.ssim(x, x, 1.0, convention="wang") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="convention"):
        metrics.ssim(x, y, convention="matlab")


def test_y_channel_psnr_with_border_crop():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    ya, yb = metrics.rgb_to_y(a), metrics.rgb_to_y(b)
    assert ya.min() >= 16 and ya.max() <= 235
    assert metrics.rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    expected = 20 * np.log10(255) - 10 * np.log10(np.mean((ya[4:-4, 4:-4] - yb[4:-4, 4:-4]) ** 2))
    assert metrics.psnr(a, b, channel="y", crop_border=4) == pytest.approx(expected)
    assert metrics.psnr(a, b) != pytest.approx(expected)
    with pytest.raises(ValueError, match="crop_border"):
        metrics.psnr(a, b, crop_border=10)
    with pytest.raises(ValueError, match="channel"):
        metrics.psnr(a, b, channel="lab")
