"""Kernel-free explorers for the book: sliders that flip through precomputed image frames.

A static HTML page has no Python kernel, so ``interact`` or ``observe`` callbacks never run there. What
does run is the widget front end: models restored from the notebook's saved widget state and the links
between them (``jslink``/``jsdlink``, ``Play``, a ``Stack``'s ``selected_index``). The explorers below
therefore render every frame up front (PNG bytes in ``ipywidgets.Image`` widgets), put the frames in a
``Stack`` that shows one child at a time, and link a slider to the stack's ``selected_index`` in the
front end. The same widget works in a live notebook, in the built book and in the headless-browser test
(tests/browser/book.test.mjs), which finds explorers by the CSS classes set here.

Frames may be PIL images, uint8 numpy arrays (H, W), (H, W, 1|3|4), matplotlib ``Figure`` objects (build
them with ``matplotlib.figure.Figure``; this module never touches pyplot or the backend) or PNG bytes.
Every frame's PNG ends up base64-encoded in the notebook and in the page, hence ``max_total_bytes``.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np
import ipywidgets as widgets

#: CSS classes on the outer box and its parts; the browser test selects explorers with these.
EXPLORER_CLASS = "fa-explorer"
SLIDER_CLASS = "fa-explorer-slider"
FRAMES_CLASS = "fa-explorer-frames"
CAPTION_CLASS = "fa-explorer-caption"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_TOTAL_BYTES = 30_000_000


def frame_to_png(frame: Any, *, dpi: int = 100, name: str = "frame") -> bytes:
    """Encode one frame as PNG bytes.

    Accepts a PIL image, a uint8 array of shape (H, W) or (H, W, C) with C in {1, 3, 4}, a matplotlib
    ``Figure`` (rendered at ``dpi``) or bytes that already are a PNG. ``name`` labels error messages.
    Raises ``TypeError`` for any other type and ``ValueError`` for an array of the wrong dtype or shape.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        if not data.startswith(_PNG_SIGNATURE):
            raise ValueError(f"{name}: bytes given but they are not a PNG file (no PNG signature)")
        return data
    if isinstance(frame, np.ndarray):
        return _array_to_png(frame, name)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        PILImage = None
    if PILImage is not None and isinstance(frame, PILImage.Image):
        buf = io.BytesIO()
        try:
            frame.save(buf, format="PNG")
        except OSError as exc:  # e.g. mode "F" (float) images have no PNG encoding
            raise ValueError(f"{name}: PIL image of mode {frame.mode!r} cannot be saved as PNG; "
                             "convert it first (e.g. image.convert('RGB'))") from exc
        return buf.getvalue()
    figure_type = _matplotlib_figure_type()
    if figure_type is not None and isinstance(frame, figure_type):
        buf = io.BytesIO()
        # no date in the metadata: the same figure gives the same bytes (stable notebook diffs)
        frame.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        return buf.getvalue()
    raise TypeError(f"{name}: expected a PIL image, a uint8 numpy array, a matplotlib Figure or PNG bytes, "
                    f"got {type(frame).__name__}")


def _matplotlib_figure_type():
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover
        return None
    return Figure


def _array_to_png(array: np.ndarray, name: str) -> bytes:
    from PIL import Image as PILImage

    if array.dtype != np.uint8:
        raise ValueError(f"{name}: array dtype is {array.dtype}, expected uint8 "
                         "(for floats in [0, 1] pass (np.clip(a, 0, 1) * 255).round().astype(np.uint8))")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"{name}: array shape {array.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: array shape {array.shape} has no pixels")
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _check_labels(labels: Sequence[Any], count: int, what: str) -> list[str]:
    if isinstance(labels, str):
        raise TypeError(f"{what} must be a sequence of strings, not a single string")
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(f"{what}: {len(labels)} labels for {count} frames; give one label per frame")
    return labels


def _encode_all(frames: Sequence[Any], dpi: int, max_total_bytes: int | None, names: Sequence[str]) -> list[bytes]:
    pngs = [frame_to_png(frame, dpi=dpi, name=name) for frame, name in zip(frames, names)]
    total = sum(len(p) for p in pngs)
    if max_total_bytes is not None and total > max_total_bytes:
        raise ValueError(f"the {len(pngs)} frames take {total / 1e6:.1f} MB as PNG, over max_total_bytes="
                         f"{max_total_bytes / 1e6:.1f} MB; every frame is stored in the notebook and the "
                         "page, so use fewer or smaller frames (or raise the limit knowingly)")
    return pngs


def _image(png: bytes, width: int | None) -> widgets.Image:
    kwargs = {"value": png, "format": "png"}
    if width is not None:
        kwargs["width"] = int(width)
    return widgets.Image(**kwargs)


def _caption_stack(texts: Sequence[str]) -> widgets.Stack:
    """A Stack of Labels: shows the text of the selected frame with no kernel."""
    stack = widgets.Stack([widgets.Label(value=t) for t in texts], selected_index=0)
    stack.add_class(CAPTION_CLASS)
    return stack


def _slider(count: int, description: str) -> widgets.IntSlider:
    slider = widgets.IntSlider(value=0, min=0, max=count - 1, step=1, description=description,
                               continuous_update=True, readout=True,
                               style={"description_width": "initial"},
                               layout=widgets.Layout(width="320px"))
    slider.add_class(SLIDER_CLASS)
    return slider


class FrameExplorer(widgets.VBox):
    """What :func:`frame_explorer` returns: a VBox whose parts stay reachable for tests and notebooks.

    ``slider`` drives ``frames`` (the Stack of Images) and ``caption`` (a Stack of Labels) through
    front-end links (``links``); ``play`` is an optional ``Play`` control linked to the slider.
    """

    def __init__(self, *, slider, frames, caption, play, links, labels, title):
        controls = [w for w in (play, slider, caption) if w is not None]
        children = ([title] if title is not None else []) + [widgets.HBox(controls), frames]
        super().__init__(children)
        self.add_class(EXPLORER_CLASS)
        self.slider = slider
        self.frames = frames
        self.caption = caption
        self.play = play
        self.links = tuple(links)
        self.labels = tuple(labels)


def frame_explorer(frames: Sequence[Any], labels: Sequence[Any], description: str = "", *,
                   play: bool = False, interval_ms: int = 500, width: int | None = None,
                   title: str | None = None, dpi: int = 100,
                   max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES) -> FrameExplorer:
    """A slider that flips through precomputed frames, interactive without a kernel.

    The book's explorers (pose, resolution, binarization, Gaussian targets) are all this one
    widget: ``frames[i]`` is shown when the slider is at ``i`` and ``labels[i]`` is written beside
    the slider.

    :param frames: PIL images, uint8 arrays, matplotlib Figures or PNG bytes (see :func:`frame_to_png`).
    :param labels: one text per frame (e.g. ``"yaw = 45°"``).
    :param description: short name shown left of the slider (e.g. ``"yaw"``).
    :param play: add a ``Play`` button that steps through the frames every ``interval_ms``.
    :param width: display width of the images in CSS pixels (default: the frames' own size).
    :param title: optional text (HTML) shown above the controls.
    :param dpi: resolution for matplotlib Figures.
    :param max_total_bytes: refuse frames whose PNGs exceed this in total (None: no limit).
    :raises ValueError: no frames, label count differs, bad arrays, or too many bytes.
    :raises TypeError: a frame of an unsupported type, or ``labels`` given as one string.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("frame_explorer needs at least one frame")
    labels = _check_labels(labels, len(frames), "labels")
    if int(interval_ms) <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    pngs = _encode_all(frames, dpi, max_total_bytes, [f"frame {i} ({labels[i]!r})" for i in range(len(frames))])

    slider = _slider(len(pngs), description)
    stack = widgets.Stack([_image(png, width) for png in pngs], selected_index=0)
    stack.add_class(FRAMES_CLASS)
    caption = _caption_stack(labels)
    # one-way links: the slider is the only control; the stacks only display its value
    links = [widgets.jsdlink((slider, "value"), (stack, "selected_index")),
             widgets.jsdlink((slider, "value"), (caption, "selected_index"))]
    play_widget = None
    if play:
        play_widget = widgets.Play(value=0, min=0, max=len(pngs) - 1, step=1, interval=int(interval_ms),
                                   description=f"play {description}".strip())
        # two-way: the button moves the slider, and dragging the slider moves the button's position
        links.append(widgets.jslink((play_widget, "value"), (slider, "value")))
    title_widget = widgets.HTML(value=title) if title else None
    return FrameExplorer(slider=slider, frames=stack, caption=caption, play=play_widget, links=links,
                         labels=labels, title=title_widget)


class GridExplorer(widgets.VBox):
    """What :func:`grid_explorer` returns. ``frames`` is the outer Stack (one child per row value), each
    child an inner Stack of Images (one per column value); ``row_slider`` selects the outer child,
    ``col_slider`` the child of every inner stack."""

    def __init__(self, *, row_slider, col_slider, frames, row_caption, col_caption, links, title):
        rows = [widgets.HBox([row_slider, row_caption]), widgets.HBox([col_slider, col_caption])]
        children = ([title] if title is not None else []) + rows + [frames]
        super().__init__(children)
        self.add_class(EXPLORER_CLASS)
        self.row_slider = row_slider
        self.col_slider = col_slider
        self.frames = frames
        self.row_caption = row_caption
        self.col_caption = col_caption
        self.links = tuple(links)


def grid_explorer(frames: Sequence[Sequence[Any]], row_labels: Sequence[Any], col_labels: Sequence[Any],
                  row_description: str = "", col_description: str = "", *, width: int | None = None,
                  title: str | None = None, dpi: int = 100,
                  max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES) -> GridExplorer:
    """Two sliders over a grid of precomputed frames (e.g. Gaussian sigma x sub-pixel offset).

    ``frames[i][j]`` is shown for ``row_labels[i]`` and ``col_labels[j]``. Kernel-free: a ``Stack`` of
    ``Stack``s of Images; the row slider is linked to the outer stack's ``selected_index`` and the column
    slider to the ``selected_index`` of every inner stack (one front-end link per row), so both sliders
    act in a static page. Each slider has a caption (Stack of Labels) showing its current label.

    :raises ValueError: an empty grid, ragged rows, label counts that do not match, bad frames.
    :raises TypeError: unsupported frame types, or labels given as one string.
    """
    grid = [list(row) for row in frames]
    if not grid or not grid[0]:
        raise ValueError("grid_explorer needs a non-empty grid: frames[row][column]")
    n_cols = len(grid[0])
    ragged = [i for i, row in enumerate(grid) if len(row) != n_cols]
    if ragged:
        raise ValueError(f"grid_explorer: rows {ragged} do not have {n_cols} frames like row 0")
    row_labels = _check_labels(row_labels, len(grid), "row_labels")
    col_labels = _check_labels(col_labels, n_cols, "col_labels")
    names = [f"frame [{i}][{j}]" for i in range(len(grid)) for j in range(n_cols)]
    pngs = _encode_all([f for row in grid for f in row], dpi, max_total_bytes, names)

    row_slider = _slider(len(grid), row_description)
    col_slider = _slider(n_cols, col_description)
    inner = [widgets.Stack([_image(pngs[i * n_cols + j], width) for j in range(n_cols)], selected_index=0)
             for i in range(len(grid))]
    outer = widgets.Stack(inner, selected_index=0)
    outer.add_class(FRAMES_CLASS)
    row_caption = _caption_stack(row_labels)
    col_caption = _caption_stack(col_labels)
    links = [widgets.jsdlink((row_slider, "value"), (outer, "selected_index")),
             widgets.jsdlink((row_slider, "value"), (row_caption, "selected_index")),
             widgets.jsdlink((col_slider, "value"), (col_caption, "selected_index"))]
    links += [widgets.jsdlink((col_slider, "value"), (stack, "selected_index")) for stack in inner]
    title_widget = widgets.HTML(value=title) if title else None
    return GridExplorer(row_slider=row_slider, col_slider=col_slider, frames=outer, row_caption=row_caption,
                        col_caption=col_caption, links=links, title=title_widget)


__all__ = ["frame_explorer", "grid_explorer", "frame_to_png", "FrameExplorer", "GridExplorer",
           "EXPLORER_CLASS", "SLIDER_CLASS", "FRAMES_CLASS", "CAPTION_CLASS"]
