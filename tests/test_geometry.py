"""Tests of fa_lib.geometry: official FAN centre/scale, exact crop affine, crop/uncrop, box noise."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fa_lib import geometry as geo
from fa_lib.landmarks import FLIP_PERMUTATION_68


def test_box_to_center_scale_hand_values():
    center, scale = geo.box_to_center_scale(np.array([10.0, 20.0, 110.0, 140.0]))
    # w = 100, h = 120: centre (110 - 50, 140 - 60 - 0.12 * 120), scale (100 + 120) / 195.
    np.testing.assert_allclose(center, [60.0, 65.6])
    assert scale == pytest.approx(220 / 195)
    batch_c, batch_s = geo.box_to_center_scale(torch.tensor([[10.0, 20.0, 110.0, 140.0]] * 3))
    assert isinstance(batch_c, torch.Tensor) and batch_c.shape == (3, 2) and batch_s.shape == (3,)
    np.testing.assert_allclose(batch_c.numpy()[2], [60.0, 65.6])
    with pytest.raises(ValueError):
        geo.box_to_center_scale(np.array([10.0, 20.0, 5.0, 140.0]))


def test_crop_matrix_hand_values():
    # scale 1 -> 200 image px become 256 crop px; the centre goes to (128, 128).
    matrix = geo.crop_matrix(np.array([100.0, 50.0]), 1.0, 256)
    np.testing.assert_allclose(matrix, [[1.28, 0, 0], [0, 1.28, 64], [0, 0, 1]])
    corner = geo.transform_points(np.array([[0.0, -50.0]]), matrix)  # top-left of the crop square
    np.testing.assert_allclose(corner, [[0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(geo.crop_box(np.array([100.0, 50.0]), 1.0), [0, -50, 200, 150])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (3, 68, 2), elements=st.floats(-200, 1200, width=32)),
       arrays(np.float64, (3, 2), elements=st.floats(0, 1000)),
       arrays(np.float64, (3,), elements=st.floats(0.05, 10)),
       st.sampled_from([64, 256]))
def test_crop_uncrop_round_trip(points, center, scale, resolution):
    cropped = geo.crop_points(points, center, scale, resolution)
    assert cropped.shape == points.shape and cropped.dtype == np.float32
    back = geo.uncrop_points(cropped, center, scale, resolution)
    assert np.abs(back - points).max() < 1e-3
    matrix = geo.crop_matrix(center, scale, resolution) @ geo.uncrop_matrix(center, scale, resolution)
    np.testing.assert_allclose(matrix, np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-9)


def test_torch_batched_uncrop_matches_numpy_and_scales_depth():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 64, (4, 68, 3)).astype(np.float32)
    center = rng.uniform(100, 200, (4, 2))
    scale = rng.uniform(0.5, 2.0, (4,))
    expected = geo.uncrop_points(points, center, scale, 64)
    got = geo.uncrop_points(torch.from_numpy(points), torch.from_numpy(center),
                            torch.from_numpy(scale), 64)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-3)
    # z is scaled by the same factor as x and y (heatmap px -> image px), without translation.
    np.testing.assert_allclose(expected[..., 2], points[..., 2] * (200 * scale / 64)[:, None],
                               rtol=1e-5)


def test_crop_image_puts_a_bright_pixel_where_crop_matrix_says():
    image = np.zeros((100, 120), np.uint8)
    image[25, 30] = 255                      # its centre is at (x, y) = (30.5, 25.5)
    center, scale = np.array([50.125, 40.125]), 64 / 200  # 4x magnification into 256 px
    crop = geo.crop_image(image, center, scale, 256)
    assert crop.shape == (256, 256) and crop.dtype == np.uint8
    x, y = geo.transform_points(np.array([[30.5, 25.5]]), geo.crop_matrix(center, scale, 256))[0]
    np.testing.assert_allclose([x, y], [49.5, 69.5])   # 4 * (p - c) + 128: an exact crop-pixel centre
    assert crop[69, 49] == 255
    assert np.unravel_index(np.argmax(crop), crop.shape) == (69, 49)
    assert crop[69, 48] < 255 and crop[68, 49] < 255


def test_crop_image_colour_and_rotation_follow_the_matrix():
    image = np.zeros((80, 90, 3), np.uint8)
    image[20, 60, 1] = 200                   # green dot, centre (60.5, 20.5)
    center, scale = np.array([45.0, 40.0]), 0.3
    matrix = geo.rotation_scale_matrix(center, scale, 64, angle_deg=30.0, scale_factor=1.1)
    warped = geo.warp_image(image, matrix, 64)
    assert warped.shape == (64, 64, 3)
    assert warped[..., 0].max() == 0 and warped[..., 2].max() == 0
    x, y = geo.transform_points(np.array([[60.5, 20.5]]), matrix)[0]
    row, col = np.unravel_index(np.argmax(warped[..., 1]), (64, 64))
    assert abs(col + 0.5 - x) <= 1.0 and abs(row + 0.5 - y) <= 1.0
    # Outside the image the crop is black; inside a constant image it stays constant.
    flat = geo.crop_image(np.full((50, 50), 7, np.uint8), np.array([25.0, 25.0]), 0.1, 32)
    assert (flat == 7).all()
    outside = geo.crop_image(np.full((50, 50), 7, np.uint8), np.array([500.0, 500.0]), 0.1, 32)
    assert (outside == 0).all()


def test_rotation_scale_matrix_conventions():
    center, scale, res = np.array([100.0, 80.0]), 1.0, 256
    np.testing.assert_allclose(geo.rotation_scale_matrix(center, scale, res),
                               geo.crop_matrix(center, scale, res))
    right_of_centre = np.array([[150.0, 80.0]])
    plain = geo.transform_points(right_of_centre, geo.crop_matrix(center, scale, res))[0]
    rotated = geo.transform_points(right_of_centre,
                                   geo.rotation_scale_matrix(center, scale, res, 90.0))[0]
    # Counter-clockwise on screen (y down): a point right of the centre moves straight up.
    np.testing.assert_allclose(rotated, [128.0, 128.0 - (plain[0] - 128.0)], atol=1e-9)
    flipped = geo.transform_points(right_of_centre,
                                   geo.rotation_scale_matrix(center, scale, res, flip=True))[0]
    np.testing.assert_allclose(flipped, [res - plain[0], plain[1]], atol=1e-9)
    zoomed = geo.transform_points(right_of_centre,
                                  geo.rotation_scale_matrix(center, scale, res, scale_factor=2.0))[0]
    np.testing.assert_allclose(zoomed, [128.0 + (plain[0] - 128.0) / 2, 128.0], atol=1e-9)


def test_flip_augmentation_matches_flip_landmarks():
    from fa_lib.landmarks import flip_landmarks
    rng = np.random.default_rng(3)
    points = rng.uniform(20, 180, (68, 2))
    center, scale, res = np.array([100.0, 100.0]), 1.0, 256
    via_matrix = geo.transform_points(points, geo.rotation_scale_matrix(center, scale, res, flip=True))
    via_matrix = via_matrix[FLIP_PERMUTATION_68]
    via_points = geo.crop_points(flip_landmarks(points, 200.0), center, scale, res)
    np.testing.assert_allclose(via_matrix, via_points, atol=1e-9)


def test_box_from_landmarks_and_nan():
    points = np.array([[1.0, 5.0, 0.0], [3.0, 2.0, 9.0], [np.nan, np.nan, 0.0], [-1.0, 4.0, 1.0]])
    np.testing.assert_allclose(geo.box_from_landmarks(points), [-1.0, 2.0, 3.0, 5.0])
    batch = geo.box_from_landmarks(torch.tensor(np.stack([points[:2], points[[1, 3]]])))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 4)
    with pytest.raises(ValueError):
        geo.box_from_landmarks(np.full((3, 2), np.nan))


def test_perturb_box():
    box = np.array([[0.0, 0.0, 100.0, 50.0]] * 500)
    np.testing.assert_allclose(geo.perturb_box(box, 0.0, 0), box)
    noisy = geo.perturb_box(box, 0.2, np.random.default_rng(1))
    assert noisy.shape == box.shape and noisy.dtype == np.float32
    moved = noisy - box
    assert np.abs(moved[:, [0, 2]]).max() <= 20.0 + 1e-4 and np.abs(moved[:, [1, 3]]).max() <= 10.0 + 1e-4
    assert np.abs(moved[:, 0]).max() > 15.0          # the noise really spans the range
    assert not np.allclose(moved[:, 0], moved[:, 2])  # sides move independently
    np.testing.assert_array_equal(geo.perturb_box(box, 0.2, 7), geo.perturb_box(box, 0.2, 7))
    with pytest.raises(ValueError):
        geo.perturb_box(box, 0.6, 0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        geo.crop_matrix(np.zeros(3), 1.0, 256)
    with pytest.raises(ValueError):
        geo.crop_matrix(np.zeros(2), -1.0, 256)
    with pytest.raises(ValueError):
        geo.crop_image(np.zeros((4,)), np.zeros(2), 1.0, 8)
    with pytest.raises(ValueError):
        geo.transform_points(np.zeros((5, 4)), np.eye(3))
