"""Tests of fa_lib.heatmaps: Gaussian/disc targets and argmax + quarter-pixel decoding."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fa_lib.heatmaps import decode_heatmaps, disc_heatmaps, gaussian_heatmaps


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
