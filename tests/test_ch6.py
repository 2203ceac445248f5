"""Chapter 6 at the smoke scale: every network trained through the run cache in waves, every builder of
the chapter, the paired verdict rule, the data items, the stand-in feature networks, and Super-FAN for
tiny faces in the aligner and the command line."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fa_lib import metrics
from fa_lib.api import FaceAligner, TinyFaces, add_landmarks_parser
from fa_lib.data.formats import read_wider_face_boxes
from fa_lib.data.lowres import HEATMAP_SIZE, SuperResolutionInputs, lowres_pairs
from fa_lib.data.pipeline import TransformedDataset
from fa_lib.experiments.ch6 import Chapter6
from fa_lib.experiments.ch6.figures import (at_size, real_tiny_faces, resolution_frames, resolution_sweep,
                                           widerface_sizes)
from fa_lib.experiments.ch6.tables import TABLE_6_2_ROWS
from fa_lib.experiments.registry import builders
from fa_lib.experiments.verdict import PAIRED_RULE, judge_gap, judge_paired
from fa_lib.models import FAN
from fa_lib.models.checkpoints import load_model, save_model
from fa_lib.models.superfan import (Critic, FeaturePretraining, ResNet50Features, SuperFan, VGG19Features,
                                    calibrate_feature_scale, dcgan_critic_loss, dcgan_generator_loss, feature_loss,
                                    pixel_loss, super_fan_generator)
from fa_lib.profiles import Ch6Scale, get_profile


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ch6_runs")


@pytest.fixture(scope="module")
def ch6(runs_root, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("FA_LIB_RESULTS", str(tmp_path_factory.mktemp("ch6_results")))
    threads = torch.get_num_threads()
    ctx = Chapter6("smoke", runs_root=runs_root, log=None, device="cpu")
    ctx.train_all()
    torch.set_num_threads(threads)
    return ctx


def tiny_super_fan() -> SuperFan:
    torch.manual_seed(0)
    return SuperFan(super_fan_generator(8, blocks=(1, 1, 1), output="bilinear-residual"),
                    FAN(1, 16, hg_depth=1, stem_channels=(8, 16))).eval()


# -- the chapter -----------------------------------------------------------------------------------


def test_every_chapter_6_builder_is_registered():
    ids = {(b.kind, b.thesis_id) for b in builders(6)}
    assert {("table", "6.1"), ("table", "6.2"), ("table", "6.3"), ("table", "6.4"), ("table", "6.5"),
            ("table", "6.cost"), ("figure", "6.4"), ("figure", "6.6"), ("figure", "6.9"),
            ("figure", "6.learning_curves"),
            ("figure", "6.real")} <= ids


def test_every_network_is_trained_once_and_then_read_from_the_run_cache(ch6, runs_root):
    runs = ch6.trained_runs()
    assert {"fan-hr", "fan-bilinear", "features-resnet50", "features-vgg19", "super-fan", "sr-gan",
            "super-fan-degraded"} <= set(runs)
    assert all(r.budget["steps"] > 0 for r in runs.values())
    again = Chapter6("smoke", runs_root=runs_root, log=None, device="cpu")
    again.train_all()
    assert all(r.cached for r in again.trained_runs().values())
    for part in ("generator", "critic", "fan"):
        a, b = ch6.method("super-fan").modules[part], again.method("super-fan").modules[part]
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_children_start_from_their_parents_and_the_teacher_stays_frozen(ch6):
    record = ch6.method_record("super-fan")
    assert record["parent"] and record["teacher"] and record["features"]
    assert ch6.method_record("sr-gan")["method"]["features"] == "vgg19"
    assert ch6.method_record("pixel")["method"]["features"] is None
    # the heatmap-loss runs never change the teacher: its cached weights are what chapter 6 evaluates with
    teacher = ch6.fan("hr")
    assert not any(p.requires_grad for p in ch6.features("resnet50").parameters())
    assert teacher.training is False
    # the end-to-end stage trained Super-FAN's own FAN away from the teacher's weights
    own = ch6.method("super-fan").modules["fan"]
    assert any(not torch.equal(a, b) for a, b in zip(own.state_dict().values(), teacher.state_dict().values()))


def test_feature_stand_ins_are_named_as_stand_ins(ch6):
    sources = ch6.provenance_extra()["feature_networks"]
    assert set(sources) == {"features-resnet50", "features-vgg19"}
    assert all("stand-in" in s and "no ImageNet weights" in s for s in sources.values())


def test_tables_have_every_row_and_judged_findings(ch6):
    t61 = ch6.build("table 6.1")
    rows = set(t61.table["row"])
    assert {"bilinear upsample (baseline)", "SR-ResNet", "SR-GAN", "Ours-pixel", "Ours-Super-FAN"} <= rows
    reproduced = t61.table.dropna(subset=["reproduced"])
    assert {"PSNR 30", "SSIM 90", "PSNR-Y (crop 4) all"} <= set(reproduced["column"])
    t62 = ch6.build("table 6.2")
    assert set(TABLE_6_2_ROWS) <= set(t62.table["row"])
    assert len(t62.verdicts) == 9
    assert all(v.outcome in ("holds", "reversed", "within noise") for v in t62.verdicts)
    assert all(v.rule for v in t62.verdicts)
    for table_id in ("table 6.3", "table 6.4", "table 6.5", "table 6.cost"):
        result = ch6.build(table_id)
        assert result.path is not None and result.path.is_file()
    assert "Titan X" in " ".join(ch6.build("table 6.cost").notes)


def test_auc_scores_average_to_the_auc(ch6):
    errors = ch6.errors("FAN-HR images")
    assert math.isclose(float(ch6.auc_scores("FAN-HR images").mean()),
                        100 * metrics.auc_at(errors, ch6.setup.auc_threshold), rel_tol=1e-9, abs_tol=1e-9)


def test_quality_of_the_hr_faces_is_perfect_and_bilinear_is_not(ch6):
    hr = ch6.quality("hr")
    assert np.all(np.isinf(hr["psnr"])) and np.allclose(hr["ssim"], 1.0)
    bilinear = ch6.quality("bilinear")
    assert np.all(np.isfinite(bilinear["psnr"])) and np.all(bilinear["ssim"] < 1.0)


def test_figures_and_the_resolution_explorer(ch6):
    for fig_id in ("figure 6.4", "figure 6.6", "figure 6.9", "figure 6.learning_curves"):
        result = ch6.build(fig_id)
        assert result.figure is not None and result.path.is_file()
    assert ch6.build("figure 6.9").data["real"] is False
    frames, faces, sizes = resolution_frames(ch6, faces=2)
    assert len(frames) == 2 and len(frames[0]) == len(ch6.setup.explorer_sizes) == len(sizes)
    sweep = resolution_sweep(ch6)
    assert set(sweep["face size (px)"]) == set(ch6.setup.explorer_sizes) and len(set(sweep["method"])) == 3


def test_at_size_keeps_a_64_px_face_and_feeds_the_generator_16_px():
    images = torch.rand(2, 3, 64, 64)
    small, sixteen = at_size(images, 64)
    assert small.shape == (2, 3, 64, 64) and sixteen.shape == (2, 3, 16, 16)
    assert torch.allclose(small, (images * 255 + 0.5).floor() / 255, atol=1 / 255)
    small, sixteen = at_size(images, 8)
    assert small.shape == (2, 3, 8, 8) and sixteen.shape == (2, 3, 16, 16)


def test_real_tiny_faces_come_from_scikit_image():
    faces, source = real_tiny_faces(4)
    if faces is None:
        pytest.skip(source)
    assert faces.shape == (4, 16, 16, 3) and faces.dtype == np.uint8 and "lfw" in source.lower()


def test_export_super_fan_for_the_aligner(ch6, tmp_path):
    path = ch6.export_super_fan(tmp_path / "sf.pt")
    model, extra = load_model(path)
    assert isinstance(model, SuperFan) and extra["method"] == "super-fan-degraded"
    assert 0.3 < extra["face_fraction"] < 1.0 and len(extra["box_center_offset"]) == 2
    aligner = FaceAligner("3D", detector=None, super_resolution=path, device="cpu")
    image = (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)
    faces = aligner.get_landmarks_from_image(image, boxes=[[30, 30, 46, 46]], return_details=True)
    assert faces.super_resolved == [True] and faces.landmarks[0].shape == (68, 2)


# -- the verdict rule for one network per method -----------------------------------------------------


def test_judge_paired_uses_the_per_face_differences():
    rng = np.random.default_rng(0)
    base = rng.normal(50, 20, 400)
    better = base + 1.0 + rng.normal(0, 0.5, 400)  # the face-to-face spread is large, the paired one small
    v = judge_paired("A beats B", "A", better, "B", base, paper_gap=2.0)
    assert v.outcome == "holds" and v.rule == PAIRED_RULE and v.better_values == (pytest.approx(better.mean()),)
    assert v.standard_error == pytest.approx(np.std(better - base, ddof=1) / 20)
    assert judge_paired("B beats A", "B", base, "A", better, paper_gap=2.0).outcome == "reversed"
    same = judge_paired("x", "A", base + rng.normal(0, 1, 400) * 0.01, "B", base)
    assert same.outcome == "within noise"
    with pytest.raises(ValueError, match="same faces"):
        judge_paired("x", "A", base[:3], "B", base)


def test_judge_gap_follows_the_thesis_sign():
    assert judge_gap("c", "a", "b", 1.0, 0.1, paper_gap=-1.0).outcome == "reversed"
    assert judge_gap("c", "a", "b", -1.0, 0.1, paper_gap=-1.0).outcome == "holds"
    assert judge_gap("c", "a", "b", 0.1, 0.1).outcome == "within noise"
    assert judge_gap("c", "a", "b", 1.0, float("nan")).outcome == "single seed"


# -- data ------------------------------------------------------------------------------------------------


def test_super_resolution_items_flip_images_and_points_together():
    pairs = lowres_pairs("smoke", "train")
    plain = TransformedDataset(pairs, SuperResolutionInputs(), seed=0)
    flipped = TransformedDataset(pairs, SuperResolutionInputs(flip=True), seed=0)
    found = False
    for i in range(len(pairs)):
        a, b = plain[i], flipped[i]
        assert a["heatmaps"].shape == (68, HEATMAP_SIZE, HEATMAP_SIZE) and a["image_lr"].shape == (3, 16, 16)
        if not torch.equal(a["image_hr"], b["image_hr"]):
            found = True
            assert torch.equal(b["image_hr"], a["image_hr"].flip(-1)) and torch.equal(b["image_lr"], a["image_lr"].flip(-1))
            # the nose tip (point 30) is its own mirror: x -> 64 - x
            assert torch.allclose(b["landmarks_image"][30, 0], 64 - a["landmarks_image"][30, 0])
            assert torch.allclose(b["box"][[0, 2]], 64 - a["box"][[2, 0]])
    assert found, "no item was flipped"
    item = TransformedDataset(pairs, SuperResolutionInputs(fan_input="bilinear"), seed=0)[0]
    up = torch.nn.functional.interpolate(item["image_lr"][None], size=64, mode="bilinear", align_corners=False)
    assert torch.allclose(item["image"], up[0].clamp(0, 1))
    assert torch.allclose(item["landmarks_norm"].view(68, 2), item["landmarks_image"] / 32 - 1)
    with pytest.raises(ValueError, match="fan_input"):
        SuperResolutionInputs(fan_input="nearest")


# -- networks ----------------------------------------------------------------------------------------


def test_bilinear_residual_generator_starts_at_bilinear_upsampling():
    g = super_fan_generator(8, blocks=(1, 1, 1), output="bilinear-residual").eval()
    low = torch.rand(2, 3, 16, 16)
    up = torch.nn.functional.interpolate(low, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.equal(g(low), up)
    with pytest.raises(ValueError, match="output"):
        super_fan_generator(8, output="nearest")


def test_vgg19_features_have_torchvision_keys_and_stop_at_conv5_4():
    net = VGG19Features()
    keys = set(net.state_dict())
    assert "features.0.weight" in keys and "features.34.weight" in keys and "features.36.weight" not in keys
    fake = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
    fake["classifier.0.weight"] = torch.zeros(2, 2)  # a whole vgg19 state_dict: the classifier is ignored
    net.load_torchvision(fake, source="ImageNet (test)")
    assert net.source == "ImageNet (test)" and not any(p.requires_grad for p in net.parameters())
    out = net(torch.rand(1, 3, 64, 64))
    assert out[0].shape == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="width_divisor"):
        VGG19Features(4).load_torchvision(fake)
    with pytest.raises(RuntimeError):
        VGG19Features().load_torchvision({k: v for k, v in fake.items() if k != "features.0.bias"})


def test_feature_pretraining_trains_then_freezes():
    net = ResNet50Features()
    wrapper = FeaturePretraining(net)
    wrapper.train()
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert wrapper(torch.rand(2, 3, 64, 64)).shape == (2, 136)
    net.freeze()
    wrapper.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_dcgan_losses_train_only_what_they_should():
    critic, g = Critic(width=8), super_fan_generator(8, blocks=(1, 1, 1))
    low, real = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 64, 64)
    fake = g(low)
    loss, terms = dcgan_critic_loss(critic, real, fake)
    loss.backward()
    assert all(p.grad is None for p in g.parameters()) and {"d_real", "d_fake"} == set(terms)
    critic.zero_grad()
    dcgan_generator_loss(critic, g(low)).backward()
    assert any(p.grad is not None for p in g.parameters())


def test_super_fan_saves_and_loads_with_its_config(tmp_path):
    sf = tiny_super_fan()
    save_model(sf, tmp_path / "sf.pt", extra={"face_fraction": 0.7})
    model, extra = load_model(tmp_path / "sf.pt")
    low = torch.rand(1, 3, 16, 16)
    assert torch.equal(sf(low)[0], model.eval()(low)[0]) and extra["face_fraction"] == 0.7


def test_ch6_scale_refuses_bad_values():
    with pytest.raises(ValueError, match="generator_output"):
        Ch6Scale(generator_output="nearest")
    with pytest.raises(ValueError, match="explorer_sizes"):
        Ch6Scale(explorer_sizes=(2, 16))
    with pytest.raises(ValueError, match="sr_iterations"):
        Ch6Scale(sr_iterations=0)
    assert get_profile("quick").ch6.generator_output == "bilinear-residual"
    assert get_profile("full").ch6.generator_output == "direct" and get_profile("full").ch6.optimizer == "rmsprop"


# -- tiny faces for users ------------------------------------------------------------------------------------


def test_aligner_sends_only_small_faces_through_super_fan(tmp_path):
    path = save_model(tiny_super_fan(), tmp_path / "sf.pt", extra={"face_fraction": 0.75,
                                                                    "box_center_offset": [0.0, 0.0]})
    big_net = FAN(1, 16, hg_depth=1, stem_channels=(8, 16))
    aligner = FaceAligner.from_network(big_net, input_size=64, landmarks="3D", device="cpu",
                                       super_resolution=path, super_resolution_below=30)
    image = (np.random.default_rng(1).random((200, 200, 3)) * 255).astype(np.uint8)
    boxes = [[100, 100, 180, 180], [10, 10, 30, 26], [40, 150, 60, 170]]
    faces = aligner.get_landmarks_from_image(image, boxes=boxes, return_details=True)
    assert faces.super_resolved == [False, True, True]
    assert all(p.shape == (68, 2) for p in faces.landmarks)
    # a tiny face's points land around its box (the crop is framed on it), not around the big face
    for k in (1, 2):
        centre = faces.landmarks[k].mean(0)
        box = np.asarray(boxes[k], float)
        assert np.all(np.abs(centre - (box[:2] + box[2:]) / 2) < 2 * (box[2] - box[0]))
    record = faces.to_json()
    assert [f["super_resolved"] for f in record["faces"]] == [False, True, True]


def test_tiny_faces_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="chapter 6"):
        FaceAligner("3D", detector=None, super_resolution=tmp_path / "missing.pt", device="cpu")
    save_model(FAN(1, 16, hg_depth=1, stem_channels=(8, 16)), tmp_path / "fan.pt")
    with pytest.raises(ValueError, match="not a Super-FAN"):
        TinyFaces(tmp_path / "fan.pt", torch.device("cpu"))
    with pytest.raises(ValueError, match="3D-full"):
        FaceAligner("3D-full", detector=None, super_resolution=tiny_super_fan(), allow_random_weights=True,
                    device="cpu")
    with pytest.raises(ValueError, match="super_resolution_below"):
        FaceAligner("3D", detector=None, super_resolution=tiny_super_fan(), super_resolution_below=0, device="cpu")


def test_landmarks_command_takes_a_super_fan(tmp_path, capsys):
    path = save_model(tiny_super_fan(), tmp_path / "sf.pt")
    image = tmp_path / "tiny.png"
    cv2.imwrite(str(image), (np.random.default_rng(2).random((40, 40, 3)) * 255).astype(np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[10, 10, 28, 28]]))
    parser = argparse.ArgumentParser()
    add_landmarks_parser(parser.add_subparsers())
    args = parser.parse_args(["landmarks", str(image), "--detector", "none", "--boxes", str(boxes), "--landmarks",
                              "3D", "--super-resolution", str(path), "--quiet", "--device", "cpu"])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert line["faces"][0]["super_resolved"] is True and len(line["faces"][0]["landmarks"]) == 68


def test_fig_6_9_reads_widerface_face_sizes_from_a_data_root():
    root = Path(__file__).resolve().parent / "fixtures"
    sizes, source = widerface_sizes(root)
    boxes = [b for image in read_wider_face_boxes(root / "widerface" / "wider_face_split" / "wider_face_val_bbx_gt.txt")
             for b, bad in zip(image.boxes, image.attributes["invalid"]) if not bad]
    expected = sorted(s for s in (max(b[2] - b[0], b[3] - b[1]) for b in boxes) if 0 < s <= 64)
    assert sorted(sizes.tolist()) == pytest.approx(expected) and "WiderFace" in source
    none, why = widerface_sizes(root / "aflw_pifa")
    assert none is None and "wider_face_val_bbx_gt.txt" in why


def test_calibration_gives_the_feature_loss_the_pixel_loss_scale():
    torch.manual_seed(0)
    net = VGG19Features(8)
    hr = torch.rand(4, 3, 64, 64)
    sr = (hr + 0.1 * torch.randn_like(hr)).clamp(0, 1)
    scale = calibrate_feature_scale(net, sr, hr)
    assert float(net.scale) == pytest.approx(scale)
    assert float(feature_loss(net, sr, hr)) == pytest.approx(float(pixel_loss(sr, hr)), rel=1e-3)
    assert "scale" not in net.state_dict()  # ImageNet files still load strictly
    with pytest.raises(ValueError, match="identical"):
        calibrate_feature_scale(net, hr, hr)


def test_stand_ins_are_calibrated_and_the_calibration_is_in_the_run_key(ch6):
    assert float(ch6.features("resnet50").scale) != 1.0
    assert "feature_calibration" in ch6.method_record("pixel-feature")
    assert "feature_calibration" not in ch6.method_record("pixel")


def test_real_pairs_frame_real_faces_as_the_synthetic_ones(tmp_path):
    """Chapter 6 on a data root: each real face cropped to 64 px with its landmarks' box filling
    FACE_FRACTION of the side, centred; its 16 px input reproducible from (seed, index); LS3D-W's missing
    pose fitted to the landmarks; the pairs' identity (run-cache key) names the real set."""
    import shutil
    from pathlib import Path

    from fa_lib.data.real import RealFaceDataset
    from fa_lib.experiments.ch6.data import FACE_FRACTION, RealLowResPairs, real_pairs
    from fa_lib.experiments.runs import dataset_identity

    fixtures = Path(__file__).resolve().parent / "fixtures"
    shutil.copytree(fixtures / "300W_LP", tmp_path / "300W_LP")
    shutil.copytree(fixtures / "LS3D-W" / "Menpo-3D", tmp_path / "LS3D-W" / "balanced" / "Menpo-3D")
    train, test, degraded = real_pairs(tmp_path, seed=3)
    sample = train[0]
    assert sample["image"].shape == (64, 64, 3) and sample["image_lr"].shape == (16, 16, 3)
    box = sample["box"]
    assert max(box[2] - box[0], box[3] - box[1]) == pytest.approx(FACE_FRACTION * 64, abs=0.01)
    assert (box[:2] + box[2:]) / 2 == pytest.approx([32, 32], abs=0.01)
    assert np.array_equal(train[0]["image_lr"], sample["image_lr"])
    face = RealFaceDataset("ls3dw", tmp_path, "balanced")[0]
    assert not np.isfinite(face["pose"]).any() and np.isfinite(test[0]["pose"]).all()
    assert [s["kind"] for s in dataset_identity(degraded)["real_pairs"]] == ["300w_lp"]  # LS3D-W's face: testing
    assert dataset_identity(degraded)["degradation"] and test.name.startswith("real ls3dw balanced")
    assert dataset_identity(train) != dataset_identity(degraded) and test.array("pose").shape == (1, 3)
    with pytest.raises(IndexError):
        train.face(len(train))
    with pytest.raises(ValueError, match="face_fraction"):
        RealLowResPairs(RealFaceDataset("ls3dw", tmp_path, "balanced"), face_fraction=0.0)


def test_ls3dw_is_split_as_chapter_6_of_the_thesis(tmp_path):
    """LS3D-W balanced for chapter 6: per |yaw| bin (fitted to the landmarks) ``per_bin`` test faces, the
    rest for training; with 300-W-LP the training pairs come from both sources, in order."""
    import shutil
    from pathlib import Path

    from fa_lib.data.real import RealFaceDataset
    from fa_lib.experiments.ch6.data import RealLowResPairs, ls3dw_test_split

    fixtures = Path(__file__).resolve().parent / "fixtures"
    folder = tmp_path / "LS3D-W" / "balanced" / "Menpo-3D"
    folder.mkdir(parents=True)
    for k in range(4):  # four copies of the fixture face: all in one |yaw| bin
        for ext in (".t7", ".jpg"):
            shutil.copy(fixtures / "LS3D-W" / "Menpo-3D" / f"face_1{ext}", folder / f"face_{k}{ext}")
    ls3dw = RealFaceDataset("ls3dw", tmp_path, "balanced")
    test, train = ls3dw_test_split(ls3dw, per_bin=1, seed=0)
    assert len(test) == 1 and len(train) == 3 and set(test) | set(train) == set(range(4))
    assert np.array_equal(ls3dw_test_split(ls3dw, per_bin=1, seed=0)[0], test)  # reproducible
    shutil.copytree(fixtures / "300W_LP", tmp_path / "300W_LP")
    pairs = RealLowResPairs([(RealFaceDataset("300w_lp", tmp_path, "train"), None), (ls3dw, train)])
    assert len(pairs) == 4 and pairs.face(0)["source"].startswith("300w_lp")
    assert pairs.face(1)["source"].startswith("ls3dw") and "ls3dw balanced (3 of 4)" in pairs.name


def test_sparse_markups_imply_the_68_point_box():
    """CelebA's 5 points and AFLW's 21 (some missing) of a face that IS the face model's mean shape seen
    through a camera give back all 68 projected landmarks and the pose; too few points or a markup of
    unknown size is refused."""
    from fa_lib.convert_ls3dw import mean_landmarks_3d
    from fa_lib.geometry import project_orthographic
    from fa_lib.data.render import rotation_matrix
    from fa_lib.experiments.ch6.data import implied_68_points
    from fa_lib.landmarks import CELEBA_5_FROM_68, PIFA_21_FROM_68

    mean = mean_landmarks_3d()
    truth = project_orthographic(mean, 0.4, rotation_matrix(-50.0, 5.0, -12.0), np.array([80.0, 60.0]))
    for groups in (CELEBA_5_FROM_68, PIFA_21_FROM_68):
        points = np.stack([truth[list(g)].mean(0) for g in groups])
        if len(groups) == 21:
            points[[0, 6, 7, 12, 17]] = np.nan  # AFLW marks visible points only
        implied, pose = implied_68_points(points)
        np.testing.assert_allclose(implied, truth, atol=1e-6)
        assert pose == pytest.approx([-50.0, 5.0, -12.0], abs=1e-4)
    with pytest.raises(ValueError, match="no sparse markup with 7 points"):
        implied_68_points(truth[:7])
    with pytest.raises(ValueError, match="at least 4 finite"):
        implied_68_points(np.vstack([truth[[36, 45, 30]], [[np.nan, np.nan]] * 2]))


def test_aflw_and_celeba_join_the_training_pairs_framed_by_their_points(tmp_path):
    """Thesis 6.1's training mixture on a data root: 300-W-LP, AFLW (every face) and CelebA's training
    split join the training pairs; their faces, framed by the 68-point box their points imply (or by the
    dataset's box when too few points are marked), carry no landmarks, and only the 68-landmark faces
    make the annotated pairs the FANs train on."""
    import shutil
    from pathlib import Path

    from fa_lib.data.lowres import SuperResolutionInputs
    from fa_lib.experiments.ch6.data import FACE_FRACTION, real_pairs
    from fa_lib.experiments.runs import dataset_identity

    fixtures = Path(__file__).resolve().parent / "fixtures"
    for name in ("300W_LP", "aflw", "CelebA"):
        shutil.copytree(fixtures / name, tmp_path / name)
    shutil.copytree(fixtures / "LS3D-W" / "Menpo-3D", tmp_path / "LS3D-W" / "balanced" / "Menpo-3D")
    train, test, degraded = real_pairs(tmp_path, seed=1)
    assert [s["kind"] for s in dataset_identity(train)["real_pairs"]] == ["300w_lp", "aflw", "celeba"]
    assert len(train) == 1 + 3 + 2 and "aflw all + celeba train" in train.name
    assert [s["kind"] for s in dataset_identity(degraded)["real_pairs"]] == ["300w_lp", "aflw", "celeba"]
    sources = [train[i]["source"] for i in range(len(train))]
    assert sources[1:4] == ["aflw:39341", "aflw:39342", "aflw:39343"] and sources[4].startswith("celeba:")
    for i in range(len(train)):
        sample = train[i]
        box = sample["box"]
        assert max(box[2] - box[0], box[3] - box[1]) == pytest.approx(FACE_FRACTION * 64, abs=0.01)
        assert sample["annotated"] == (i == 0)
        assert np.isfinite(sample["landmarks_3d"][:, :2]).all() == (i == 0)
        assert sample["image_lr"].shape == (16, 16, 3)
    # face 39343 has 3 points: framed by its FaceRect (10 x 12 px), so the box's height fills the frame
    box = train[3]["box"]
    assert box[3] - box[1] > box[2] - box[0]
    # faces 39341 and 39342 are the same face, one shifted and with five points unmarked: the same framing
    assert np.allclose(train[1]["box"], train[2]["box"], atol=1.0)
    assert np.isfinite(train[4]["pose"]).all()  # CelebA has no pose: fitted to its 5 points
    annotated = train.annotated()
    assert len(annotated) == 1 and annotated.face(0)["source"].startswith("300w_lp")
    assert annotated.annotated() is annotated
    tensors = SuperResolutionInputs(1.0)(train[4], np.random.default_rng(0))
    assert tensors["image_hr"].shape == (3, 64, 64) and torch.isnan(tensors["landmarks_image"]).all()
    # CelebA's sample size is a knob: none of it
    fewer, _, _ = real_pairs(tmp_path, seed=1, celeba_faces=0)
    assert [s["kind"] for s in dataset_identity(fewer)["real_pairs"]] == ["300w_lp", "aflw"]


def test_the_sparse_framing_check_measures_the_implied_boxes(ch6):
    """The chapter's framing check on the test faces (68 landmarks known): every face framed from both
    markups, the implied boxes close to the true ones; the annotated pairs of synthetic data are all of them."""
    from fa_lib.experiments.ch6 import narrative
    from fa_lib.experiments.ch6.data import sparse_framing_check

    table = sparse_framing_check(ch6.test_pairs)
    assert set(table["markup"]) == {"CelebA 5 points", "AFLW 21 points (visible ones)"}
    assert (table["framed"] == table["faces"]).all() and table["faces"].sum() == 2 * len(ch6.test_pairs)
    assert table["side ratio median"].between(0.85, 1.15).all()
    assert (table["centre offset median (of side)"] < 0.1).all()
    assert "optimistic" in narrative.describe_sparse_framing(ch6, table)
    assert ch6.annotated_pairs is ch6.train_pairs
    with pytest.raises(ValueError, match="no annotated subset"):
        ch6.items(degraded=True, annotated=True)


def test_widerface_tiny_faces_are_framed_as_the_16_px_inputs(tmp_path):
    """Figs. 6.1, 6.5, 6.7 with a data root: WiderFace's valid validation faces of the chosen sizes, as
    16 px colour inputs; none of those sizes, or no WiderFace, says why."""
    from fa_lib.experiments.ch6.figures import widerface_tiny_faces

    fixtures = Path(__file__).resolve().parent / "fixtures"
    faces, source = widerface_tiny_faces(fixtures, 12)
    assert faces.shape == (1, 16, 16, 3) and faces.dtype == np.uint8  # one valid face is 10-30 px
    assert source.startswith("WiderFace validation, 1 of its 1 valid faces of 10-30 px")
    both, _ = widerface_tiny_faces(fixtures, 12, sizes=(2.0, 40.0))
    assert len(both) == 2
    none, why = widerface_tiny_faces(fixtures, 12, sizes=(100.0, 200.0))
    assert none is None and "no WiderFace validation face of 100-200 px" in why
    missing, why = widerface_tiny_faces(tmp_path, 12)
    assert missing is None and why.startswith("no WiderFace validation set")
