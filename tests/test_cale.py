"""CALE (thesis chapter 3): the networks, their torchvision-compatible weights, the targets and losses,
the occluder-aware visibility of the AFLW-PIFA stand-in, and the chapter's context at the smoke scale."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fa_lib.data.augment import thesis_augmentation
from fa_lib.data.pipeline import CaleInputs
from fa_lib.data.render import RenderConfig, draw_occluders, points_under, render_random_sample
from fa_lib.data.synthetic import pifa_standin
from fa_lib.heatmaps import blur_heatmaps, decode_heatmaps_subpixel, disc_heatmaps
from fa_lib.models.cale import (Cale, CaleDetector, CaleRegressor, cale, cale_stage_loss, detector_loss,
                                regressor_loss, vgg16_features)

#: torchvision's ``vgg16().features`` state_dict layout: index -> (out, in) of each 3x3 convolution
TORCHVISION_VGG16 = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
                     14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512),
                     26: (512, 512), 28: (512, 512)}
#: ``vgg16_bn().features``: conv, BN, ReLU per layer
TORCHVISION_VGG16_BN = {0: 64, 3: 64, 7: 128, 10: 128, 14: 256, 17: 256, 20: 256, 24: 512, 27: 512, 30: 512,
                        34: 512, 37: 512, 40: 512}


def _torchvision_vgg16_state(prefix: str = "features.") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, (out, inp) in TORCHVISION_VGG16.items():
        state[f"{prefix}{index}.weight"] = torch.randn(out, inp, 3, 3, generator=g)
        state[f"{prefix}{index}.bias"] = torch.randn(out, generator=g)
    return state


@pytest.mark.parametrize("n_points", [21, 22, 34, 68])
def test_cale_outputs_one_map_per_point_at_the_input_resolution(n_points):
    model = cale(n_points, width_divisor=16, fc_channels=16, fc6_kernel=1, regressor_kernels=(3, 3, 3, 3),
                 batch_norm=True).eval()
    x = torch.rand(2, 1, 64, 64)
    logits, maps = model(x)
    assert logits.shape == maps.shape == (2, n_points, 64, 64)
    model.detector.fusion = "32s"
    assert model.detector(x).shape == (2, n_points, 64, 64)
    colour = cale(n_points, image_channels=3, width_divisor=16, fc_channels=16, fc6_kernel=1,
                  regressor_kernels=(3, 3, 3, 3))
    assert colour(torch.rand(1, 3, 32, 32))[1].shape == (1, n_points, 32, 32)


def test_bad_inputs_raise_clear_errors():
    model = cale(34, width_divisor=16, fc_channels=16, fc6_kernel=1, regressor_kernels=(3, 3, 3, 3))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 1, 48, 48))
    with pytest.raises(ValueError, match="fusion"):
        model.detector.fusion = "16s"
    with pytest.raises(ValueError, match="disagree"):
        Cale(CaleDetector(34, widths=(4, 4, 4, 4, 4), fc_channels=4, fc6_kernel=1), CaleRegressor(21))
    with pytest.raises(ValueError, match="six widths"):
        CaleRegressor(34, widths=(8, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        CaleDetector(34, fc6_kernel=2)


def test_thesis_scale_layer_shapes_follow_tables_3_1_and_3_2():
    model = cale(34)
    convs = [m for m in model.detector.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)  # A5 read as VGG-16's 3x3, not the table's 1x1
    fc6, fc7 = model.detector.fc[0], model.detector.fc[3]
    assert fc6.kernel_size == (7, 7) and fc6.out_channels == 4096 and fc7.out_channels == 4096
    reg = [m for m in model.regressor.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in reg] == [9, 13, 13, 15, 1, 1]
    assert [c.out_channels for c in reg] == [64, 64, 128, 256, 512, 512]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.regressor.body) == 2
    assert model.regressor.c8.stride == (4, 4) and model.regressor.c8.kernel_size == (8, 8)
    assert model.regressor.body[0].in_channels == 1 + 34  # the grey image stacked with the 34 maps


def test_imagenet_vgg16_weights_load_strictly_into_the_detector():
    detector = CaleDetector(34)
    state = _torchvision_vgg16_state()
    state["classifier.0.weight"] = torch.zeros(4096, 25088)  # a whole vgg16().state_dict() works too
    detector.load_vgg16_features(state)
    assert torch.equal(detector.features[28].weight, state["features.28.weight"])
    detector.load_vgg16_features({k[len("features."):]: v for k, v in _torchvision_vgg16_state().items()})
    bad = _torchvision_vgg16_state()
    bad["features.28.weight"] = torch.zeros(512, 512, 1, 1)  # the table's 1x1 would not load
    with pytest.raises(RuntimeError, match="size mismatch"):
        detector.load_vgg16_features(bad)
    missing = _torchvision_vgg16_state()
    del missing["features.0.bias"]
    with pytest.raises(RuntimeError, match="Missing"):
        detector.load_vgg16_features(missing)


def test_batch_norm_detector_has_the_vgg16_bn_layout():
    features, pools = vgg16_features(batch_norm=True)
    convs = {i: m.out_channels for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)}
    assert convs == TORCHVISION_VGG16_BN
    assert pools == (23, 33, 43)
    assert vgg16_features()[1] == (16, 23, 30)


def test_fcn_upsamplers_start_bilinear_and_score_layers_at_zero():
    detector = CaleDetector(3, widths=(4, 4, 4, 4, 4), fc_channels=4, fc6_kernel=1)
    assert not detector.score_fr.weight.any() and not detector.score_pool3.weight.any()
    up = detector.upscore2(torch.ones(1, 3, 4, 4))
    assert torch.allclose(up[..., 1:-1, 1:-1], torch.ones_like(up[..., 1:-1, 1:-1]))


def test_losses_and_stages():
    logits = torch.zeros(2, 3, 8, 8)
    discs = torch.zeros(2, 3, 8, 8)
    assert float(detector_loss(logits, discs)) == pytest.approx(float(np.log(2)))
    assert float(regressor_loss(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4))) == 0
    batch = {"discs": discs, "heatmaps": torch.zeros(2, 3, 8, 8)}
    joint = cale_stage_loss("joint", detector_weight=2.0)((logits, torch.ones(2, 3, 8, 8)), batch)
    assert float(joint) == pytest.approx(2 * np.log(2) + 1.0)
    assert float(cale_stage_loss("detector")(logits, batch)) == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="does not match"):
        detector_loss(logits, torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="unknown CALE stage"):
        cale_stage_loss("pose")


def _sample(visible_mask: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(60, 140, 34), rng.uniform(60, 140, 34)], 1).astype(np.float32)
    return {"image": np.full((200, 200), 128, np.uint8), "landmarks_2d": points, "visibility": visible_mask,
            "box": np.array([50, 50, 150, 150], np.float32)}


def test_cale_inputs_discs_for_visible_points_gaussians_for_all():
    visible = np.ones(34, bool)
    visible[[3, 10, 30]] = False
    item = CaleInputs(64, disc_radius=0.05, sigma=0.025)(_sample(visible), 0)
    assert item["image"].shape == (1, 64, 64)
    assert item["discs"].shape == item["heatmaps"].shape == (34, 64, 64)
    assert not item["discs"][[3, 10, 30]].any()           # nothing to detect on a hidden point
    assert (item["discs"][visible].flatten(1).sum(1) > 0).all()
    assert (item["heatmaps"].flatten(1).amax(1) > 0.5).all()  # every point regressed, hidden or not
    # the disc's radius is 0.05 of the face size (sqrt of the box area, in crop px)
    face = float(item["face_size"])
    area = float(item["discs"][0].sum())
    assert area == pytest.approx(np.pi * (0.05 * face) ** 2, rel=0.35)


def test_flipped_items_permute_visibility_with_the_points():
    visible = np.ones(34, bool)
    visible[0] = False  # point 0 (left brow end) mirrors to point 5
    flip_only = replace(thesis_augmentation("cale"), scale=(1.0, 1.0))
    inputs = CaleInputs(64, augment=flip_only)
    flipped = next(inputs(_sample(visible), seed) for seed in range(50)
                   if inputs(_sample(visible), seed)["flipped"])
    assert not flipped["visibility"][5] and flipped["visibility"][0]
    assert not flipped["discs"][5].any() and flipped["discs"][0].any()


def test_cale_augmentation_is_the_thesis_flip_and_scale_only():
    a = thesis_augmentation("cale")
    assert a.flip and a.rotation == 0 and a.scale == (0.8, 1.2) and a.colour == 0 and a.occlusion == 0


# ------------------------------------------------------------------------------------------------
# visibility that counts occluders (AFLW-PIFA labels a point under an object invisible)


def test_points_under_reads_the_coverage_mask():
    coverage = np.zeros((10, 10), np.float32)
    coverage[2:5, 2:5] = 1.0
    pts = np.array([[3.5, 3.5], [7.5, 7.5], [-1.0, 3.0], [3.0, 20.0]])
    assert points_under(coverage, pts).tolist() == [True, False, False, False]


def test_draw_occluders_returns_the_painted_mask():
    rng = np.random.default_rng(3)
    image = np.zeros((64, 64, 3), np.float32)
    painted, mask = draw_occluders(image, rng, np.array([10, 10, 50, 50], np.float32), return_mask=True)
    assert mask.shape == (64, 64) and mask.max() > 0.5
    changed = np.abs(painted - image).max(-1) > 0
    assert changed[mask > 0.99].all() and not changed[mask == 0].any()


CLEAN = dict(blur_probability=0.0, noise_probability=0.0, colour_jitter=0.0, size=128)


def test_rendered_points_under_drawn_occluders_are_invisible():
    """The same faces rendered with and without occluders: a point hidden only by an object is
    labelled invisible, and the object was painted there; everything else is unchanged."""
    newly_hidden = 0
    for seed in range(12):
        clean = render_random_sample(seed, RenderConfig(occluder_probability=0.0, **CLEAN))
        blind = render_random_sample(seed, RenderConfig(occluder_probability=1.0, **CLEAN))
        aware = render_random_sample(seed, RenderConfig(occluder_probability=1.0, occluders_hide_points=True,
                                                        **CLEAN))
        assert np.array_equal(blind["image"], aware["image"])
        assert np.array_equal(clean["visibility"], blind["visibility"])  # the z-buffer's visibility only
        assert not (aware["visibility"] & ~blind["visibility"]).any()
        hidden = blind["visibility"] & ~aware["visibility"]
        newly_hidden += int(hidden.sum())
        for x, y in aware["landmarks_3d"][hidden, :2]:
            r, c = int(np.floor(y)), int(np.floor(x))
            assert np.abs(aware["image"][r, c].astype(int) - clean["image"][r, c].astype(int)).max() > 0
    assert newly_hidden > 0


def test_old_render_configs_keep_their_keys():
    assert "occluders_hide_points" not in RenderConfig().to_dict()
    assert RenderConfig(occluders_hide_points=True).to_dict()["occluders_hide_points"] is True


def test_pifa_train_and_test_are_different_people_with_occluder_visibility(tmp_path):
    test = pifa_standin("smoke", split="test", count=6, root=tmp_path)
    train = pifa_standin("smoke", split="train", count=6, root=tmp_path)
    assert test.name == "synthetic-pifa-test" and train.name == "synthetic-pifa-train"
    assert test.manifest["spec"]["namespace"] != train.manifest["spec"]["namespace"]
    assert test.manifest["spec"]["config"]["occluders_hide_points"] is True
    assert test[0]["landmarks_2d"].shape == (34, 2) and test[0]["visibility"].shape == (34,)
    with pytest.raises(ValueError, match="split"):
        pifa_standin("smoke", split="val", root=tmp_path)


def test_blurred_disc_maps_decode_to_the_disc_centre():
    centre = torch.tensor([[[20.3, 17.8]]])
    disc = disc_heatmaps(centre, 40, radius=4.0)
    raw, _ = decode_heatmaps_subpixel(disc)
    blurred, _ = decode_heatmaps_subpixel(blur_heatmaps(disc, 2.0))
    assert float((blurred - centre).norm()) < 0.3
    assert float((raw - centre).norm()) > float((blurred - centre).norm())
    assert torch.equal(blur_heatmaps(disc, 0.0), disc)
