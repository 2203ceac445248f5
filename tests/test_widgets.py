"""fa_lib.widgets: kernel-free explorers (structure, front-end links, frame encoding, bad input)."""
import io

import ipywidgets as widgets
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image as PILImage

from fa_lib.widgets import (CAPTION_CLASS, EXPLORER_CLASS, FRAMES_CLASS, SLIDER_CLASS, frame_explorer,
                            frame_to_png, grid_explorer)


def _frames(n, size=8):
    """n distinct uint8 frames (each a different grey level), so their PNGs differ."""
    return [np.full((size, size), 10 * i, dtype=np.uint8) for i in range(n)]


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)))


def _links(widget):
    return [(type(link).__name__, link.source, link.target) for link in widget.links]


def test_frame_explorer_structure_and_links():
    frames = _frames(4)
    ex = frame_explorer(frames, [f"f{i}" for i in range(4)], "sigma")
    assert EXPLORER_CLASS in ex._dom_classes
    assert isinstance(ex.slider, widgets.IntSlider) and SLIDER_CLASS in ex.slider._dom_classes
    assert (ex.slider.min, ex.slider.max, ex.slider.value) == (0, 3, 0)
    assert ex.slider.description == "sigma"
    assert isinstance(ex.frames, widgets.Stack) and FRAMES_CLASS in ex.frames._dom_classes
    assert len(ex.frames.children) == 4 and all(isinstance(c, widgets.Image) for c in ex.frames.children)
    assert ex.frames.selected_index == 0
    # frames keep their order and pixels
    for image, frame in zip(ex.frames.children, frames):
        assert image.format == "png" and np.array_equal(_decode(image.value), frame)
    assert [c.value for c in ex.caption.children] == ["f0", "f1", "f2", "f3"]
    assert CAPTION_CLASS in ex.caption._dom_classes
    # the slider drives the frames and the caption in the front end (no Python callback)
    links = _links(ex)
    assert ("DirectionalLink", (ex.slider, "value"), (ex.frames, "selected_index")) in links
    assert ("DirectionalLink", (ex.slider, "value"), (ex.caption, "selected_index")) in links
    assert ex.play is None
    assert not ex.slider._trait_notifiers.get("value", {}).get("change"), "a kernel callback was attached"
    # the explorer shows its parts
    controls, stack = ex.children
    assert ex.slider in controls.children and ex.caption in controls.children and stack is ex.frames


def test_frame_explorer_play_and_title():
    ex = frame_explorer(_frames(3), ["a", "b", "c"], "yaw", play=True, interval_ms=200, title="<b>Pose</b>")
    assert isinstance(ex.play, widgets.Play)
    assert (ex.play.min, ex.play.max, ex.play.interval) == (0, 2, 200)
    assert ("Link", (ex.play, "value"), (ex.slider, "value")) in _links(ex)
    assert isinstance(ex.children[0], widgets.HTML) and ex.children[0].value == "<b>Pose</b>"
    assert ex.play in ex.children[1].children


def test_frame_explorer_state_is_serialisable():
    """What nbclient saves into the notebook (and the page embeds) must include the links."""
    ex = frame_explorer(_frames(2), ["a", "b"])
    state = widgets.Widget.get_manager_state(drop_defaults=True)["state"]
    link_ids = {link.model_id for link in ex.links}
    assert link_ids <= set(state)
    for model_id in (ex.slider.model_id, ex.frames.model_id, ex.caption.model_id):
        assert model_id in state


def test_accepted_frame_types_give_the_same_pixels():
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 200
    expected = _decode(frame_to_png(rgb))
    assert expected.shape == (6, 5, 3)
    assert np.array_equal(_decode(frame_to_png(PILImage.fromarray(rgb))), expected)
    assert np.array_equal(_decode(frame_to_png(frame_to_png(rgb))), expected)  # PNG bytes pass through
    assert _decode(frame_to_png(rgb[..., :1])).shape == (6, 5)                 # (H, W, 1) -> grey
    assert _decode(frame_to_png(np.zeros((4, 4, 4), np.uint8))).shape == (4, 4, 4)


def test_matplotlib_figure_frames():
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = frame_to_png(fig, dpi=50)
    assert _decode(png).shape[:2] == (50, 50)
    assert frame_to_png(fig, dpi=50) == png  # no timestamp in the PNG: stable notebooks
    ex = frame_explorer([fig, fig], ["a", "b"], dpi=40)
    assert _decode(ex.frames.children[0].value).shape[:2] == (40, 40)


@pytest.mark.parametrize("frame, error, match", [
    (np.zeros((4, 4), np.float32), ValueError, "dtype is float32"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, r"shape \(4, 4, 2\)"),
    (np.zeros((0, 4), np.uint8), ValueError, "no pixels"),
    (np.zeros(4, np.uint8), ValueError, "shape"),
    (b"GIF89a...", ValueError, "not a PNG"),
    ("image.png", TypeError, "got str"),
    (PILImage.new("F", (3, 3)), ValueError, "mode 'F'"),
])
def test_bad_frames_are_rejected_with_the_frame_named(frame, error, match):
    with pytest.raises(error, match=match):
        frame_to_png(frame)
    with pytest.raises(error, match="frame 1"):
        frame_explorer([np.zeros((2, 2), np.uint8), frame], ["ok", "bad"])


def test_bad_explorer_arguments():
    with pytest.raises(ValueError, match="at least one frame"):
        frame_explorer([], [])
    with pytest.raises(ValueError, match="2 labels for 3 frames"):
        frame_explorer(_frames(3), ["a", "b"])
    with pytest.raises(TypeError, match="single string"):
        frame_explorer(_frames(3), "abc")
    with pytest.raises(ValueError, match="interval_ms"):
        frame_explorer(_frames(2), ["a", "b"], play=True, interval_ms=0)
    big = [np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8) for _ in range(3)]
    with pytest.raises(ValueError, match="max_total_bytes"):
        frame_explorer(big, ["a", "b", "c"], max_total_bytes=1000)
    assert frame_explorer(big, ["a", "b", "c"], max_total_bytes=None).frames.children


def test_single_frame_is_allowed():
    ex = frame_explorer(_frames(1), ["only"])
    assert (ex.slider.min, ex.slider.max) == (0, 0) and len(ex.frames.children) == 1


def test_grid_explorer_structure_and_links():
    rows, cols = 3, 4
    grid = [[np.full((4, 4), 10 * (i * cols + j), np.uint8) for j in range(cols)] for i in range(rows)]
    ex = grid_explorer(grid, ["s1", "s2", "s3"], ["o0", "o1", "o2", "o3"], "sigma", "offset", width=128)
    assert EXPLORER_CLASS in ex._dom_classes
    assert (ex.row_slider.max, ex.col_slider.max) == (rows - 1, cols - 1)
    assert (ex.row_slider.description, ex.col_slider.description) == ("sigma", "offset")
    assert len(ex.frames.children) == rows
    for i, inner in enumerate(ex.frames.children):
        assert isinstance(inner, widgets.Stack) and len(inner.children) == cols
        for j, image in enumerate(inner.children):
            assert image.width == "128"
            assert _decode(image.value)[0, 0] == 10 * (i * cols + j)  # frames[i][j] at row i, column j
    links = _links(ex)
    assert ("DirectionalLink", (ex.row_slider, "value"), (ex.frames, "selected_index")) in links
    for inner in ex.frames.children:  # one link per row: the column slider moves every inner stack
        assert ("DirectionalLink", (ex.col_slider, "value"), (inner, "selected_index")) in links
    assert ("DirectionalLink", (ex.row_slider, "value"), (ex.row_caption, "selected_index")) in links
    assert ("DirectionalLink", (ex.col_slider, "value"), (ex.col_caption, "selected_index")) in links
    assert len(links) == 3 + rows
    assert [c.value for c in ex.col_caption.children] == ["o0", "o1", "o2", "o3"]


def test_grid_explorer_bad_input():
    cell = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="non-empty grid"):
        grid_explorer([], [], [])
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        grid_explorer([[cell, cell], [cell]], ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="row_labels: 1 labels for 2 frames"):
        grid_explorer([[cell], [cell]], ["a"], ["x"])
    with pytest.raises(ValueError, match="col_labels"):
        grid_explorer([[cell, cell]], ["a"], ["x"])
    with pytest.raises(ValueError, match=r"frame \[0\]\[1\]"):
        grid_explorer([[cell, np.zeros((2, 2), np.int64)]], ["a"], ["x", "y"])
