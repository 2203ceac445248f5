"""Synthetic face rendering and its 2D / 3D annotations (fa_lib.data.render; thesis Fig. 1.4)."""
import numpy as np
import pytest

from fa_lib.data import render as R


def _model_or_skip(config):
    try:
        return R.face_model_for(config)
    except FileNotFoundError as err:
        pytest.skip(str(err))


SIZE = 160
CONFIG = R.RenderConfig(size=SIZE, occluder_probability=0.0, blur_probability=0.0,
                        noise_probability=0.0, colour_jitter=0.0)


def _scene(model, yaw, pitch=0.0, roll=0.0, expression=None):
    return R.Scene(expression=model.expression_mean if expression is None else expression,
                   yaw=yaw, pitch=pitch, roll=roll, face_height_px=0.5 * SIZE,
                   centre=(SIZE / 2, SIZE / 2), ambient=np.full(3, 0.5, np.float32),
                   diffuse=np.full(3, 0.5, np.float32),
                   light_direction=np.array([0, 0, 1], np.float32), specular=0.0, seed=1)


def _render(model, yaw, **kw):
    person = R.sample_identity(model, 7, CONFIG)
    return R.render_sample(model, person, _scene(model, yaw, **kw), CONFIG, return_mask=True)


def test_rasterize_hand_computed():
    # a right triangle over a 4x4 image: pixel centres (j + .5, i + .5) with x + y <= 4 are inside
    pts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    tri, bary, zbuf = R.rasterize(pts, np.array([1.0, 1.0, 1.0]), np.array([[0, 1, 2]]), 4, 4)
    jj, ii = np.meshgrid(np.arange(4) + 0.5, np.arange(4) + 0.5)
    np.testing.assert_array_equal(tri >= 0, jj + ii <= 4)
    covered = tri >= 0
    np.testing.assert_allclose(bary[covered].sum(axis=1), 1.0, atol=1e-5)
    # barycentric weight of vertex 1 is x / 4 at the pixel centre
    np.testing.assert_allclose(bary[covered][:, 1], jj[covered] / 4, atol=1e-5)
    # z-buffer: of two overlapping triangles the nearer (larger depth) wins, wherever it is
    pts2 = np.concatenate([pts, pts])
    depth = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    tri2, _, zbuf2 = R.rasterize(pts2, depth, np.array([[0, 1, 2], [3, 4, 5]]), 4, 4)
    assert (tri2[covered] == 1).all() and np.allclose(zbuf2[covered], 2.0)
    assert np.isneginf(zbuf2[~covered]).all()


def test_rotation_convention():
    rot = R.rotation_matrix(30, 10, -20)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    nose = np.array([0.0, 0.0, 1.0])
    assert (R.rotation_matrix(30, 0, 0) @ nose)[0] > 0      # yaw > 0: nose to the image right
    assert (R.rotation_matrix(0, 20, 0) @ nose)[1] < 0      # pitch > 0: face tilts down


def test_3d_landmarks_keep_correspondence_across_yaw_2d_do_not():
    model = _model_or_skip(CONFIG)
    ref = _render(model, 0.0)
    for yaw in (-70.0, -35.0, 35.0, 70.0):
        s = _render(model, yaw)
        # camera-frame points of the 68 landmarks (x right, y up, z to camera), centred
        def frame(points):
            p = np.c_[points[:, 0], -points[:, 1], points[:, 2]] if points.shape[1] == 3 else None
            return p - p.mean(axis=0)
        a, b = frame(ref["landmarks_3d"]), frame(s["landmarks_3d"])
        rot = R.rotation_matrix(yaw, 0, 0)
        # 3D: the same vertices, rotated rigidly (up to the depth reference and centring)
        np.testing.assert_allclose(b[:, :2], (a @ rot.T)[:, :2] - (a @ rot.T)[:, :2].mean(0)
                                   + b[:, :2].mean(0), atol=0.05)
        # 2D: the turning-away jaw points slid off their vertices (loss of correspondence)
        away = np.arange(9, 17) if yaw > 0 else np.arange(0, 8)
        slide = np.linalg.norm(s["landmarks_2d"][away] - s["landmarks_3d"][away, :2], axis=1)
        assert slide.max() > 0.05 * SIZE * 0.5
        # the other points are the 3D points
        np.testing.assert_array_equal(s["landmarks_2d"][17:], s["landmarks_3d"][17:, :2])


def test_2d_jaw_equals_3d_near_frontal():
    model = _model_or_skip(CONFIG)
    s = _render(model, 0.0)
    np.testing.assert_array_equal(s["landmarks_2d"], s["landmarks_3d"][:, :2])
    for yaw in (-5.0, 5.0):
        s = _render(model, yaw)
        box = s["box"]
        size = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        err = np.linalg.norm(s["landmarks_2d"][:17] - s["landmarks_3d"][:17, :2], axis=1)
        assert err.max() < 0.03 * size


@pytest.mark.parametrize("yaw", [-60.0, 45.0, 75.0])
def test_2d_jaw_points_lie_on_the_silhouette(yaw):
    model = _model_or_skip(CONFIG)
    s = _render(model, yaw)
    mask = s["face_mask"] > 0.5
    away = np.arange(10, 15) if yaw > 0 else np.arange(2, 7)   # jaw below the nose: cheek outline
    for x, y in s["landmarks_2d"][away]:
        j, i = int(x), int(y)
        window = mask[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
        assert window.any() and not window.all(), (x, y)      # face and background meet here


def test_visibility_on_a_profile():
    model = _model_or_skip(CONFIG)
    frontal = _render(model, 0.0)
    assert frontal["visibility"][[36, 39, 42, 45, 30, 48, 54]].all()
    for yaw, far, near in ((90.0, [42, 43, 44, 45, 46, 47], 36), (-90.0, [36, 37, 38, 39, 40, 41], 45)):
        s = _render(model, yaw)
        assert not s["visibility"][far].any()                # the far eye is hidden by the head
        assert s["visibility"][near]                          # the near eye's outer corner is seen


def test_sample_dict_and_determinism():
    model = _model_or_skip(CONFIG)
    a = R.render_random_sample((3, 1), R.RenderConfig(size=96), model=model)
    b = R.render_random_sample((3, 1), R.RenderConfig(size=96), model=model)
    c = R.render_random_sample((3, 2), R.RenderConfig(size=96), model=model)
    assert a["image"].shape == (96, 96, 3) and a["image"].dtype == np.uint8
    assert a["landmarks_2d"].dtype == np.float32 and a["landmarks_3d"].shape == (68, 3)
    assert a["visibility"].dtype == bool and a["box"].shape == (4,) and a["pose"].shape == (3,)
    # z is centred on the 68 landmarks; the box is the 2D landmarks' box
    assert abs(float(a["landmarks_3d"][:, 2].mean())) < 1e-3
    np.testing.assert_allclose(a["box"], [*a["landmarks_2d"].min(0), *a["landmarks_2d"].max(0)])
    for key in ("image", "landmarks_2d", "landmarks_3d", "visibility", "box", "pose"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    grey = R.render_random_sample((3, 1), R.RenderConfig(size=96, grey=True), model=model)
    assert grey["image"].shape == (96, 96)


def test_config_validation():
    with pytest.raises(ValueError, match="yaw_range"):
        R.RenderConfig(yaw_range=(-120, 0))
    with pytest.raises(ValueError, match="size"):
        R.RenderConfig(size=4)
    with pytest.raises(ValueError, match="n must be"):
        R.benchmark_render(n=0)
