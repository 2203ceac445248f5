"""Tests of fa_lib.heatmaps: Gaussian/disc targets, argmax + quarter-pixel decoding, and the decoder
to image pixels."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fa_lib import geometry
from fa_lib.heatmaps import (decode_heatmaps, disc_heatmaps, gaussian_heatmaps, heatmap_coords_to_image,
                             heatmaps_to_image_points)


def test_gaussian_hand_values():
    # Point exactly at the centre of pixel (row 2, col 3).
    maps = gaussian_heatmaps(np.array([[3.5, 2.5]]), (5, 6), sigma=1.0)
    assert maps.shape == (1, 5, 6) and maps.dtype == torch.float32
    assert maps[0, 2, 3] == pytest.approx(1.0)
    assert maps[0, 2, 4] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert maps[0, 3, 4] == pytest.approx(np.exp(-1.0), rel=1e-6)
    assert maps[0, 0, 0] == pytest.approx(np.exp(-(9 + 4) / 2), rel=1e-5)


def test_gaussian_batched_shapes_and_missing_points():
    points = torch.rand(4, 3, 68, 2) * 64
    points[0, 0, 5] = float("nan")
    maps = gaussian_heatmaps(points, 64, sigma=1.5)
    assert maps.shape == (4, 3, 68, 64, 64)
    assert maps[0, 0, 5].abs().sum() == 0
    assert torch.isfinite(maps).all()
    # 3D points: z is ignored.
    points3 = torch.cat([points[1], torch.randn(3, 68, 1)], -1)
    torch.testing.assert_close(gaussian_heatmaps(points3, 64, 1.5), maps[1])


def test_disc_hand_values():
    maps = disc_heatmaps(np.array([[2.5, 2.5]]), 5, radius=1.0)
    expected = np.zeros((5, 5), np.float32)
    expected[2, 1:4] = 1
    expected[1:4, 2] = 1
    np.testing.assert_array_equal(maps[0].numpy(), expected)
    assert disc_heatmaps(np.array([[2.5, 2.5]]), 5, radius=1.5)[0].sum() == 9  # sqrt(2) <= 1.5
    assert disc_heatmaps(np.array([[np.nan, 1.0]]), 5, radius=2)[0].sum() == 0


def test_decode_hand_values():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 4, 3] = 1.0
    maps[0, 0, 4, 4] = 0.5           # larger right neighbour -> x + 0.25
    maps[0, 0, 3, 3] = 0.2           # larger upper neighbour -> y - 0.25
    maps[0, 1, 0, 5] = 2.0           # border row: no refinement
    maps[0, 1, 1, 5] = 1.0
    maps[0, 2, 5, 5] = 1.0           # isolated peak: ties, no refinement
    points, scores = decode_heatmaps(maps)
    assert points.shape == (1, 3, 2) and points.dtype == torch.float32
    np.testing.assert_allclose(points[0].numpy(), [[3.75, 4.25], [5.5, 0.5], [5.5, 5.5]])
    np.testing.assert_allclose(scores[0].numpy(), [1.0, 2.0, 1.0])


def test_decode_accepts_numpy_and_leading_dims():
    maps = np.random.default_rng(0).random((2, 3, 5, 16, 16)).astype(np.float32)
    points, scores = decode_heatmaps(maps)
    assert points.shape == (2, 3, 5, 2) and scores.shape == (2, 3, 5)
    flat = decode_heatmaps(maps.reshape(6, 5, 16, 16))[0]
    torch.testing.assert_close(points.reshape(6, 5, 2), flat)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1.01, 62.99), st.floats(1.01, 62.99)), min_size=1, max_size=8),
       st.floats(0.8, 3.0))
def test_decode_of_encode_within_a_quarter_pixel(points, sigma):
    """Points off the border pixels are recovered within 0.25 px (pixel centre +- 0.25)."""
    truth = torch.tensor(points, dtype=torch.float32)[None]
    decoded, scores = decode_heatmaps(gaussian_heatmaps(truth, 64, sigma))
    assert (decoded - truth).abs().max() <= 0.25 + 1e-4
    # The peak pixel centre is at most (0.5, 0.5) from the point.
    assert (scores >= np.exp(-0.5 / (2 * sigma**2)) - 1e-5).all()


def test_bad_inputs():
    with pytest.raises(ValueError):
        gaussian_heatmaps(np.zeros((3,)), 64, 1.0)
    with pytest.raises(ValueError):
        gaussian_heatmaps(np.zeros((3, 2)), 64, 0.0)
    with pytest.raises(ValueError):
        decode_heatmaps(np.zeros((4, 4)))


def _crops(n=4, size=32, seed=0):
    """Random heatmaps and the image -> heatmap affines of augmented crops (rotation, zoom, flip)."""
    rng = np.random.default_rng(seed)
    heatmaps = torch.from_numpy(rng.random((n, 68, size, size), dtype=np.float32))
    centers, scales = rng.uniform(50, 200, (n, 2)), rng.uniform(0.3, 2.0, n)
    matrices = np.stack([geometry.rotation_scale_matrix(c, s, size, angle_deg=a, scale_factor=f, flip=bool(i % 2))
                         for i, (c, s, a, f) in enumerate(zip(centers, scales, rng.uniform(-30, 30, n),
                                                               rng.uniform(0.8, 1.2, n)))])
    return heatmaps, matrices, centers, scales


def test_heatmaps_to_image_points_is_decode_then_inverse_affine():
    heatmaps, matrices, centers, scales = _crops()
    points, scores = heatmaps_to_image_points(heatmaps, matrices)
    assert points.dtype == np.float32 and points.shape == (4, 68, 2)
    assert scores.dtype == np.float32 and scores.shape == (4, 68)
    hm_points, hm_scores = decode_heatmaps(heatmaps)
    # the same float64 computation, written out: bit-identical
    expected = geometry.transform_points(hm_points.numpy().astype(np.float64), np.linalg.inv(matrices))
    np.testing.assert_array_equal(points, expected.astype(np.float32))
    np.testing.assert_array_equal(scores, hm_scores.numpy())
    # mapped back through the crop's matrix, the points are the decoded heatmap points
    np.testing.assert_allclose(geometry.transform_points(points.astype(np.float64), matrices), hm_points,
                               atol=1e-3)
    # torch matrices, numpy heatmaps: the same
    again, _ = heatmaps_to_image_points(heatmaps.numpy(), torch.from_numpy(matrices))
    np.testing.assert_array_equal(again, points)


def test_heatmaps_to_image_points_with_the_uncrop_of_center_and_scale():
    heatmaps, _, centers, scales = _crops()
    uncrop = geometry.uncrop_matrix(centers, scales, 32)
    points, _ = heatmaps_to_image_points(heatmaps, inverse=uncrop)
    hm_points, _ = decode_heatmaps(heatmaps)
    np.testing.assert_array_equal(points, geometry.uncrop_points(hm_points.numpy(), centers, scales, 32))
    # the matrix form inverts crop_matrix numerically: the same points to float rounding
    by_matrix, _ = heatmaps_to_image_points(heatmaps, geometry.crop_matrix(centers, scales, 32))
    np.testing.assert_allclose(by_matrix, points, rtol=0, atol=1e-3)
    # one (3, 3) matrix serves a whole batch
    single, _ = heatmaps_to_image_points(heatmaps, inverse=uncrop[0])
    np.testing.assert_array_equal(single[0], points[0])


def test_heatmap_coords_to_image_scales_depth_and_checks_its_arguments():
    uncrop = geometry.uncrop_matrix(np.array([100.0, 80.0]), 1.5, 64)
    xyz = heatmap_coords_to_image(np.array([[[32.0, 32.0, 2.0]]]), inverse=uncrop)
    np.testing.assert_allclose(xyz[0, 0], [100.0, 80.0, 2.0 * 200 * 1.5 / 64], rtol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        heatmap_coords_to_image(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="exactly one"):
        heatmap_coords_to_image(np.zeros((1, 2)), np.eye(3), inverse=np.eye(3))


def test_train_decoder_is_the_heatmaps_decoder():
    """fa_lib.train maps prepared batches through the same function (matrix, or center/scale)."""
    from fa_lib.train import heatmap_points_to_image

    heatmaps, matrices, centers, scales = _crops()
    hm_points, _ = decode_heatmaps(heatmaps)
    np.testing.assert_array_equal(heatmap_points_to_image(hm_points, {"matrix": torch.from_numpy(matrices)}, 32),
                                  heatmaps_to_image_points(heatmaps, matrices)[0])
    by_center = heatmap_points_to_image(hm_points, {"center": torch.from_numpy(centers),
                                                    "scale": torch.from_numpy(scales)}, 32)
    np.testing.assert_array_equal(by_center, heatmaps_to_image_points(
        heatmaps, inverse=geometry.uncrop_matrix(centers, scales, 32))[0])


# -- the distribution-aware sub-pixel decoder -----------------------------------------------------------

def test_subpixel_decoder_recovers_gaussian_centres_well_under_a_tenth_of_a_pixel():
    from fa_lib.heatmaps import decode_heatmaps_subpixel

    rng = np.random.default_rng(0)
    for size, sigma in [(16, 1.5), (32, 1.0), (32, 2.0), (64, 1.0)]:
        points = rng.uniform(3, size - 3, size=(40, 2, 2)).astype(np.float32)
        decoded, scores = decode_heatmaps_subpixel(gaussian_heatmaps(points, size, sigma))
        assert decoded.shape == (40, 2, 2) and scores.shape == (40, 2)
        assert np.abs(decoded.numpy() - points).max() < 0.02
        # the quarter-pixel rule cannot do better than its quantisation
        quarter, _ = decode_heatmaps(gaussian_heatmaps(points, size, sigma))
        assert np.abs(quarter.numpy() - points).max() > 0.1


def test_subpixel_decoder_is_robust_to_noise_and_degenerate_maps():
    from fa_lib.heatmaps import decode_heatmaps_subpixel

    rng = np.random.default_rng(1)
    points = rng.uniform(4, 28, size=(64, 1, 2)).astype(np.float32)
    maps = gaussian_heatmaps(points, 32, 1.0)
    noisy = maps + 0.02 * torch.from_numpy(rng.standard_normal(maps.shape).astype(np.float32))
    sub, _ = decode_heatmaps_subpixel(noisy)
    quarter, _ = decode_heatmaps(noisy)
    sub_err = np.linalg.norm(sub.numpy() - points, axis=-1).mean()
    quarter_err = np.linalg.norm(quarter.numpy() - points, axis=-1).mean()
    assert sub_err < 0.1 and sub_err < quarter_err / 2
    # flat, zero and border maps: no step, the argmax pixel's centre, finite
    flat = torch.zeros(1, 3, 8, 8)
    flat[0, 2, 0, 0] = 1.0  # a peak on the border
    out, _ = decode_heatmaps_subpixel(flat)
    assert torch.isfinite(out).all()
    assert out[0, 2].tolist() == [0.5, 0.5]


def test_heatmaps_to_image_points_takes_the_decoder_by_name():
    from fa_lib.heatmaps import heatmaps_to_image_points

    points = np.array([[[10.3, 12.7]]], np.float32)
    maps = gaussian_heatmaps(points, 32, 1.0)
    scale = np.diag([4.0, 4.0, 1.0])  # image px -> heatmap px is a quarter
    image, _ = heatmaps_to_image_points(maps, np.linalg.inv(scale), decoder="subpixel")
    assert np.abs(image - points * 4).max() < 0.05
    with pytest.raises(ValueError, match="decoder must be one of"):
        heatmaps_to_image_points(maps, np.eye(3), decoder="dark")
