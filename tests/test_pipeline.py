"""Tests of fa_lib.data.pipeline and fa_lib.data.augment: sample dict -> network inputs/targets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from fa_lib import geometry
from fa_lib.data.augment import (Augmentation, AugmentParams, flip_permutation, jitter_colour,
                                 occlude, sample_params, thesis_augmentation)
from fa_lib.data.pipeline import FanInputs, TransformedDataset
from fa_lib.heatmaps import decode_heatmaps
from fa_lib.landmarks import FLIP_PERMUTATION_68
from fa_lib.train import heatmap_points_to_image

NO_PHOTOMETRIC = dict(colour=0.0, occlusion=0.0)


def face_sample(seed: int = 0, size: int = 96, grey: bool = False, dots: dict | None = None) -> dict:
    """A random face-like sample: 68 points on an ellipse-ish layout inside the image."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    radius = size * rng.uniform(0.15, 0.25)
    centre = size / 2 + rng.uniform(-5, 5, size=2)
    points = np.stack([centre[0] + radius * np.cos(angles) * rng.uniform(0.5, 1.0, 68),
                       centre[1] + radius * np.sin(angles) * rng.uniform(0.5, 1.0, 68)], 1)
    z = rng.normal(0, 5, size=68)
    shape = (size, size) if grey else (size, size, 3)
    image = rng.integers(0, 60, size=shape, dtype=np.uint8)
    if dots:  # paint discs of radius 3 with the given colours at the given landmarks
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        image[:] = 0
        for index, colour in dots.items():
            mask = (xx - points[index, 0]) ** 2 + (yy - points[index, 1]) ** 2 <= 9
            image[mask] = colour
    points = points.astype(np.float32)
    return {
        "image": image,
        "landmarks_2d": points,
        "landmarks_3d": np.concatenate([points + rng.normal(0, 1, size=points.shape), z[:, None]],
                                       1).astype(np.float32),
        "visibility": rng.random(68) < 0.8,
        "box": geometry.box_from_landmarks(points),
        "pose": np.array([0, 0, 0], np.float32),
        "identity": seed,
        "source": "test",
    }


def test_shapes_dtypes_and_no_augmentation_geometry():
    sample = face_sample(1)
    item = FanInputs("2d", input_size=64, heatmap_size=16, sigma=1.0)(sample)
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["heatmaps"].shape == (68, 16, 16)
    assert item["landmarks"].shape == (68, 2) and item["visibility"].dtype == torch.bool
    assert item["flipped"] is False
    # without augmentation the heatmap points are exactly the official crop of the GT box
    center, scale = geometry.box_to_center_scale(sample["box"])
    expected = geometry.crop_points(sample["landmarks_2d"], center, scale, 16)
    np.testing.assert_allclose(item["landmarks"].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(item["landmarks_image"].numpy(), sample["landmarks_2d"])
    assert torch.equal(item["visibility"], torch.from_numpy(sample["visibility"]))
    # the image is RGB/255 of the crop, with no mean subtraction
    crop = geometry.crop_image(sample["image"], center, scale, 64)
    np.testing.assert_allclose(item["image"].numpy(), crop.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_heatmap_targets_decode_to_the_landmarks():
    item = FanInputs("2d", input_size=64, heatmap_size=32, sigma=1.0)(face_sample(2))
    points, _ = decode_heatmaps(item["heatmaps"][None])
    # argmax + quarter-pixel refinement lands within half a pixel of the exact target
    assert np.abs(points[0].numpy() - item["landmarks"].numpy()).max() <= 0.5 + 1e-6


def test_flip_moves_pixels_and_labels_consistently():
    # red disc at landmark 36 (right eye outer corner), green at 45, blue at 30 (nose tip)
    dots = {36: (255, 0, 0), 45: (0, 255, 0), 30: (0, 0, 255)}
    sample = face_sample(3, size=128, dots=dots)
    aug = Augmentation(rotation=30.0, scale=(0.9, 1.1), **NO_PHOTOMETRIC)
    transform = FanInputs("2d", input_size=128, heatmap_size=32, augment=aug)
    seen_flip = {True: False, False: False}
    for seed in range(12):
        item = transform(sample, np.random.default_rng(seed))
        seen_flip[item["flipped"]] = True
        perm = FLIP_PERMUTATION_68 if item["flipped"] else np.arange(68)
        for original, colour in dots.items():
            label = int(np.nonzero(perm == original)[0][0])  # item label showing original point
            x, y = item["landmarks"][label].numpy() * 128 / 32
            pixel = item["image"][:, int(y), int(x)].numpy()
            assert np.argmax(pixel) == int(np.argmax(colour)) and pixel.max() > 0.5, (seed, original)
    assert all(seen_flip.values())


def test_heatmap_points_map_back_to_the_image_through_any_augmentation():
    sample = face_sample(4)
    transform = FanInputs("2d", input_size=64, heatmap_size=16, augment=thesis_augmentation("2d_to_3d"))
    items = [transform(sample, np.random.default_rng(s)) for s in range(8)]
    batch = default_collate(items)
    assert batch["flipped"].any() and not batch["flipped"].all()
    back = heatmap_points_to_image(batch["landmarks"], batch, 16)
    np.testing.assert_allclose(back, np.broadcast_to(sample["landmarks_2d"], back.shape), atol=1e-3)


def test_augmentation_is_deterministic_per_seed_epoch_index():
    samples = [face_sample(i) for i in range(3)]
    transform = FanInputs("2d", input_size=32, heatmap_size=8, augment=thesis_augmentation("fan"))
    a, b = TransformedDataset(samples, transform, seed=5), TransformedDataset(samples, transform, seed=5)
    for i in range(3):
        x, y = a[i], b[i]
        assert x["index"] == i
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["heatmaps"], y["heatmaps"])
    before = a[1]["image"].clone()
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], before)
    a.set_epoch(0)
    assert torch.equal(a[1]["image"], before)
    assert not torch.equal(TransformedDataset(samples, transform, seed=6)[1]["image"], before)
    with pytest.raises(IndexError):
        a[3]


def test_grey_images_are_broadcast_to_three_channels():
    item = FanInputs("2d", input_size=32, heatmap_size=8)(face_sample(5, grey=True))
    image = item["image"]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_3d_landmarks_and_depth_scale_with_the_crop():
    sample = face_sample(6)
    item = FanInputs("3d", input_size=64, heatmap_size=16)(sample)
    center, scale = geometry.box_to_center_scale(sample["box"])
    ratio = 16 / (200 * float(scale))  # image px -> heatmap px
    np.testing.assert_allclose(item["depth"].numpy(), sample["landmarks_3d"][:, 2] * ratio, rtol=1e-5)
    np.testing.assert_allclose(item["landmarks_image"].numpy(), sample["landmarks_3d"][:, :2])
    # a flip permutes the depth with the labels and keeps its sign
    flipped = FanInputs("3d", input_size=64, heatmap_size=16,
                        augment=Augmentation(rotation=0.0, scale=(1.0, 1.0), **NO_PHOTOMETRIC))
    for seed in range(6):
        out = flipped(sample, np.random.default_rng(seed))
        if out["flipped"]:
            np.testing.assert_allclose(out["depth"].numpy(), item["depth"].numpy()[FLIP_PERMUTATION_68],
                                       rtol=1e-5)
            break
    else:
        pytest.fail("no flip in 6 draws")


def test_guide_channels_are_unit_std_gaussians_at_the_2d_landmarks():
    sample = face_sample(7)
    item = FanInputs("3d", input_size=64, heatmap_size=16, guide=True)(sample)
    assert item["image"].shape == (3 + 68, 64, 64)
    guide = item["image"][3:]
    center, scale = geometry.box_to_center_scale(sample["box"])
    expected = geometry.crop_points(sample["landmarks_2d"], center, scale, 64)
    points, _ = decode_heatmaps(guide[None])
    assert np.abs(points[0].numpy() - expected).max() <= 0.5 + 1e-6
    # std 1 px: one pixel away from the (sub-pixel) centre the value is exp(-d^2/2)
    k = 10
    cx, cy = expected[k]
    j, i = int(cx), int(cy)
    d2 = (j + 1.5 - cx) ** 2 + (i + 0.5 - cy) ** 2
    assert float(guide[k, i, j + 1]) == pytest.approx(np.exp(-d2 / 2), rel=1e-4)
    # test-time guidance: 2D-FAN's predictions replace the ground-truth 2D points
    shifted = dict(sample, guide_landmarks=sample["landmarks_2d"] + 4.0)
    moved = FanInputs("3d", input_size=64, heatmap_size=16, guide=True)(shifted)
    points_moved, _ = decode_heatmaps(moved["image"][3:][None])
    assert np.abs(points_moved[0].numpy() - expected).mean() > 0.5


def test_sample_params_respect_the_thesis_ranges():
    for network, rot, scale in (("fan", 50, (0.8, 1.2)), ("2d_to_3d", 70, (0.7, 1.3)), ("binary", 40, (0.7, 1.3))):
        aug = thesis_augmentation(network)
        assert aug.rotation == rot and aug.scale == scale
        draws = [sample_params(aug, np.random.default_rng(s)) for s in range(200)]
        angles = np.array([d.angle for d in draws])
        factors = np.array([d.scale_factor for d in draws])
        assert np.all(np.abs(angles) <= rot) and np.abs(angles).max() > 0.8 * rot
        assert np.all((factors >= scale[0]) & (factors <= scale[1]))
        assert 0.3 < np.mean([d.flip for d in draws]) < 0.7
    assert thesis_augmentation("fan").box_noise == 0.2
    no_flip = Augmentation(flip=False)
    assert not any(sample_params(no_flip, np.random.default_rng(s)).flip for s in range(20))
    with pytest.raises(ValueError):
        thesis_augmentation("nope")
    with pytest.raises(ValueError):
        Augmentation(scale=(1.2, 0.8))


def test_colour_jitter_and_occlusion():
    image = np.full((10, 20, 3), 0.5, np.float32)
    out = jitter_colour(image, (0.5, 1.0, 3.0))
    np.testing.assert_allclose(out[0, 0], [0.25, 0.5, 1.0])  # clipped at 1
    params = AugmentParams(occluder=(0.5, 0.0, 0.25, 0.5), occluder_noise=False,
                           occluder_colour=(1.0, 0.0, 0.0))
    painted = occlude(image, params, np.random.default_rng(0))
    np.testing.assert_allclose(painted[0:5, 10:15], np.broadcast_to([1.0, 0.0, 0.0], (5, 5, 3)))
    untouched = np.ones((10, 20), bool)
    untouched[0:5, 10:15] = False
    np.testing.assert_allclose(painted[untouched], image[untouched])
    noisy = occlude(image, AugmentParams(occluder=(0.0, 0.0, 1.0, 1.0)), np.random.default_rng(0))
    assert noisy.std() > 0.2


def test_flip_permutation_and_bad_inputs():
    assert np.array_equal(flip_permutation(68)[flip_permutation(68)], np.arange(68))
    with pytest.raises(ValueError):
        flip_permutation(5)
    sample = face_sample(8)
    with pytest.raises(ValueError, match="landmarks_3d"):
        FanInputs("3d")(dict(sample, landmarks_3d=None))
    with pytest.raises(ValueError, match="image"):
        FanInputs("2d", input_size=32, heatmap_size=8)(dict(sample, image=np.zeros((4, 4, 5), np.uint8)))
    with pytest.raises(ValueError):
        FanInputs("depth")
    with pytest.raises(ValueError):
        FanInputs("2d", augment={"rotation": 10})


def test_box_noise_moves_the_crop_but_not_the_ground_truth():
    sample = face_sample(9)
    aug = Augmentation(flip=False, rotation=0.0, scale=(1.0, 1.0), box_noise=0.2, **NO_PHOTOMETRIC)
    item = FanInputs("2d", input_size=32, heatmap_size=8, augment=aug)(sample, np.random.default_rng(0))
    center, _ = geometry.box_to_center_scale(sample["box"])
    assert np.abs(item["center"].numpy() - center).max() > 0.01
    np.testing.assert_allclose(item["box"].numpy(), sample["box"])
    back = heatmap_points_to_image(item["landmarks"][None], default_collate([item]), 8)
    np.testing.assert_allclose(back[0], sample["landmarks_2d"], atol=1e-3)
