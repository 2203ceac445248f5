"""Tests of fa_lib.landmarks: 68-point markup, flips and the AFLW-PIFA subsets."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fa_lib import landmarks as lm

finite = st.floats(-500, 500, allow_nan=False, width=32)


def test_parts_cover_the_68_points_once():
    indices = np.concatenate(list(lm.PARTS_68.values()))
    assert sorted(indices.tolist()) == list(range(68))
    assert set(lm.PARTS_68) == {"jaw", "right_brow", "left_brow", "nose_bridge", "nose_lower",
                                "right_eye", "left_eye", "outer_lip", "inner_lip"}


@pytest.mark.parametrize("perm, n", [(lm.FLIP_PERMUTATION_68, 68), (lm.FLIP_PERMUTATION_21, 21),
                                     (lm.FLIP_PERMUTATION_34, 34)])
def test_flip_permutations_are_involutions(perm, n):
    assert perm.shape == (n,)
    assert sorted(perm.tolist()) == list(range(n))
    np.testing.assert_array_equal(perm[perm], np.arange(n))


def test_flip_permutation_68_hand_values():
    perm = lm.FLIP_PERMUTATION_68
    assert perm[0] == 16 and perm[8] == 8          # jaw ends swap, chin stays
    assert perm[17] == 26 and perm[21] == 22        # brow outer/inner corners
    assert perm[36] == 45 and perm[39] == 42        # eye corners
    assert perm[48] == 54 and perm[51] == 51 and perm[57] == 57 and perm[60] == 64


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (2, 68, 3), elements=finite), st.floats(1, 1000, width=32))
def test_flip_twice_is_identity(points, width):
    twice = lm.flip_landmarks(lm.flip_landmarks(points, width), width)
    np.testing.assert_allclose(twice, points, atol=1e-3)


def test_flip_mirrors_continuous_coordinates():
    points = np.zeros((68, 2), np.float32)
    points[:, 0] = np.arange(68)
    flipped = lm.flip_landmarks(points, 100.0)
    # Point 0 of the flip is the mirror of old point 16 (x = 16): 100 - 16.
    assert flipped[0, 0] == pytest.approx(84.0)
    # A point at the centre of pixel column 0 (x = 0.5) maps to the centre of the last column.
    single = np.full((68, 2), 0.5, np.float32)
    assert lm.flip_landmarks(single, 10)[5, 0] == pytest.approx(9.5)


def test_flip_symmetric_face_is_unchanged():
    # Build a left/right symmetric 68-point shape: x mirrored about 50 through the permutation.
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (68, 2))
    perm = lm.FLIP_PERMUTATION_68
    symmetric = (points + np.c_[100 - points[perm, 0], points[perm, 1]]) / 2
    np.testing.assert_allclose(lm.flip_landmarks(symmetric, 100), symmetric, atol=1e-9)


@pytest.mark.parametrize("convert, flip_small, k", [
    (lm.landmarks_68_to_21, lm.FLIP_PERMUTATION_21, 21),
    (lm.landmarks_68_to_pifa34, lm.FLIP_PERMUTATION_34, 34)])
def test_subset_flip_commutes_with_68_flip(convert, flip_small, k):
    points = np.random.default_rng(1).uniform(0, 200, (3, 68, 2)).astype(np.float32)
    left = convert(lm.flip_landmarks(points, 200))
    right = lm.flip_landmarks(convert(points), 200, permutation=flip_small)
    assert left.shape == (3, k, 2)
    np.testing.assert_allclose(left, right, atol=1e-4)


def test_subset_hand_values_and_visibility():
    points = np.zeros((68, 2), np.float32)
    points[:, 0] = np.arange(68)
    points21 = lm.landmarks_68_to_21(points)
    assert points21[0, 0] == 17 and points21[14, 0] == 30 and points21[20, 0] == 8
    assert points21[12, 0] == 2 and points21[16, 0] == 14                  # ear stand-ins
    assert points21[7, 0] == pytest.approx(np.mean(np.arange(36, 42)))  # eye centre
    assert points21[18, 0] == pytest.approx(64.0)                           # mean of 62 and 66
    visible = np.ones(68, bool)
    visible[40] = False
    vis34 = lm.visibility_68_to_pifa34(visible)
    assert vis34.shape == (34,) and vis34.dtype == bool
    assert not vis34[7] and not vis34[22] and vis34[21] and vis34[6]
    assert lm.PIFA_34_FROM_68[:21] == lm.PIFA_21_FROM_68


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        lm.landmarks_68_to_21(np.zeros((21, 2)))
    with pytest.raises(ValueError):
        lm.flip_landmarks(np.zeros((5, 2)), 10)
    with pytest.raises(ValueError):
        lm.flip_landmarks(np.zeros((68,)), 10)


def test_face_part_polygons():
    loops = lm.face_part_polygons()
    assert set(loops) == {"skin", "upper_lip", "lower_lip", "inner_mouth", "right_eye",
                          "left_eye", "nose"}
    assert len(loops["skin"]) == 27 and set(loops["skin"]) == set(range(27))
    assert set(loops["upper_lip"]) | set(loops["lower_lip"]) == set(range(48, 68))
    assert set(loops["upper_lip"]) & set(loops["lower_lip"]) == {48, 54, 60, 64}  # shared corners
    closed = lm.face_part_polygons(repeat_first=True)
    for name, loop in closed.items():
        assert loop[0] == loop[-1] and len(loop) == len(loops[name]) + 1


def test_flip_accepts_torch():
    import torch
    points = torch.rand(2, 68, 2) * 50
    flipped = lm.flip_landmarks(points, 50.0)
    assert isinstance(flipped, torch.Tensor)
    np.testing.assert_allclose(flipped.numpy(), lm.flip_landmarks(points.numpy(), 50.0), atol=1e-5)
