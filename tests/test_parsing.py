"""Face-parsing masks from the 68 landmarks (thesis 5.8, Fig. 5.10): fa_lib.data.parsing."""
import numpy as np
import pytest
import torch

from fa_lib.data.parsing import (CLASS_INDEX, N_PARSING_CLASSES, PARSING_CLASSES, ParsingInputs, colourise,
                                 parsing_mask, zoom_box)
from fa_lib.landmarks import face_part_polygons


def frontal_face(size=64.0):
    """A schematic frontal 68-point face inside a ``size`` px image (parts well separated)."""
    pts = np.zeros((68, 2), np.float32)
    c = size / 2
    r = 0.4 * size
    # jaw: lower half circle from the right ear (x small) to the left ear
    a = np.linspace(np.pi, 0, 17)
    pts[0:17] = np.c_[c - r * np.cos(a), c + r * np.sin(a) * 1.0]
    pts[0:17, 1] = np.where(pts[0:17, 1] < c, c, pts[0:17, 1])
    pts[17:27] = np.c_[np.linspace(c - r, c + r, 10), np.full(10, c - 0.35 * r)]       # brows
    pts[27:31] = np.c_[np.full(4, c), np.linspace(c - 0.25 * r, c + 0.2 * r, 4)]       # nose bridge
    pts[31:36] = np.c_[np.linspace(c - 0.2 * r, c + 0.2 * r, 5), np.full(5, c + 0.3 * r)]

    def ellipse(cx, cy, rx, ry, n, start=np.pi):
        t = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.c_[cx + rx * np.cos(t), cy - ry * np.sin(t)]

    pts[36:42] = ellipse(c - 0.45 * r, c - 0.1 * r, 0.18 * r, 0.08 * r, 6)
    pts[42:48] = ellipse(c + 0.45 * r, c - 0.1 * r, 0.18 * r, 0.08 * r, 6)
    pts[48:60] = ellipse(c, c + 0.6 * r, 0.35 * r, 0.2 * r, 12)                      # outer lip, from 48 (left)
    pts[60:68] = ellipse(c, c + 0.6 * r, 0.2 * r, 0.06 * r, 8)                       # inner lip
    return pts


def test_classes_are_the_thesis_seven():
    assert N_PARSING_CLASSES == 7
    assert set(PARSING_CLASSES) == {"background", "skin", "lower_lip", "upper_lip", "inner_mouth", "eyes", "nose"}
    assert PARSING_CLASSES[0] == "background"


def test_mask_has_every_class_on_a_frontal_face():
    pts = frontal_face(128)
    mask = parsing_mask(pts, 128)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8
    present = set(np.unique(mask))
    assert present == set(range(7)), f"classes present: {sorted(present)}"
    # the corner is background, the centre of each eye polygon is "eyes", the mouth centre is inner mouth
    assert mask[0, 0] == CLASS_INDEX["background"]
    for eye in (slice(36, 42), slice(42, 48)):
        x, y = pts[eye].mean(0)
        assert mask[int(y), int(x)] == CLASS_INDEX["eyes"]
    x, y = pts[60:68].mean(0)
    assert mask[int(y), int(x)] == CLASS_INDEX["inner_mouth"]
    # everything labelled lies inside the face outline's hull (skin is the outermost region)
    ys, xs = np.nonzero(mask)
    outline = pts[face_part_polygons()["skin"]]
    assert xs.min() >= np.floor(outline[:, 0].min()) - 1 and xs.max() <= np.ceil(outline[:, 0].max()) + 1


def test_pixel_centre_convention():
    # an eye drawn as the rectangle x in [10, 14], y in [10, 12] (continuous coordinates) contains
    # the centres of columns 10..13 and rows 10..11 only (centre of pixel (i, j) = (j + .5, i + .5))
    pts = frontal_face(64)
    pts[36:42] = [[10, 10], [12, 10], [14, 10], [14, 12], [12, 12], [10, 12]]
    mask = parsing_mask(pts, 64)
    ys, xs = np.nonzero(mask[:20, :20] == CLASS_INDEX["eyes"])
    assert sorted(set(ys)) == [10, 11] and sorted(set(xs)) == [10, 11, 12, 13]
    assert len(ys) == 8


def test_resolution_scaling():
    pts = frontal_face(64)
    mask = parsing_mask(pts, 64)
    scaled = parsing_mask(pts * 2, 128)
    # the same face drawn at twice the resolution covers about four times the pixels per class
    for cls in ("skin", "nose"):
        a = (mask == CLASS_INDEX[cls]).sum()
        b = (scaled == CLASS_INDEX[cls]).sum()
        assert 3.0 < b / max(a, 1) < 5.5, (cls, a, b)


def test_hidden_parts_are_not_painted():
    pts = frontal_face(128)
    vis = np.ones(68, bool)
    vis[36:42] = False  # one eye hidden
    mask = parsing_mask(pts, 128, vis)
    x, y = pts[36:42].mean(0)
    assert mask[int(y), int(x)] == CLASS_INDEX["skin"]
    x, y = pts[42:48].mean(0)
    assert mask[int(y), int(x)] == CLASS_INDEX["eyes"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="68"):
        parsing_mask(np.zeros((34, 2)), 32)
    with pytest.raises(ValueError, match="NaN"):
        parsing_mask(np.full((68, 2), np.nan), 32)
    with pytest.raises(ValueError, match="visibility"):
        parsing_mask(frontal_face(32), 32, np.ones(5, bool))
    with pytest.raises(ValueError, match="positive"):
        parsing_mask(frontal_face(32), 0)
    with pytest.raises(ValueError):
        colourise(np.full((2, 2), 9))
    with pytest.raises(ValueError, match="zoom"):
        zoom_box([0, 0, 10, 10], 0)


def test_colourise_and_zoom_box():
    rgb = colourise(np.array([[0, 1], [5, 6]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and not (rgb[0, 1] == rgb[1, 0]).all()
    np.testing.assert_allclose(zoom_box([10, 20, 30, 60], 0.5), [15, 30, 25, 50])


def test_parsing_inputs_item_matches_the_network_output():
    pts = frontal_face(128)
    sample = {"image": np.full((128, 128, 3), 120, np.uint8), "landmarks_2d": pts,
              "landmarks_3d": np.c_[pts, np.zeros(68, np.float32)], "visibility": np.ones(68, bool),
              "box": np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32),
              "source": "test"}
    item = ParsingInputs(input_size=64, output_size=16)(sample, 0)
    assert item["image"].shape == (3, 64, 64)
    assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
    assert "heatmaps" not in item
    tight = ParsingInputs(input_size=64, output_size=16, zoom=0.6)(sample, 0)
    # a tighter crop shows the face larger: fewer background pixels
    assert (tight["mask"] == 0).sum() < (item["mask"] == 0).sum()
    with pytest.raises(ValueError, match="landmarks_2d"):
        ParsingInputs(input_size=64, output_size=16)({"image": sample["image"], "landmarks_2d": None}, 0)
