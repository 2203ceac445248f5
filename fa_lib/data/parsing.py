"""Seven-class face-parsing masks made from the 68 landmarks (thesis section 5.8, Fig. 5.10).

The thesis builds its face-parsing set "by joining together the 68 ground truth landmarks ... to
fully enclose each facial component", with seven classes: skin, lower lip, upper lip, inner mouth,
eyes, nose and background. :func:`parsing_mask` does the same for any face whose 68 landmarks are
known (the synthetic faces here; 300-W in the thesis), from the closed index loops of
:func:`fa_lib.landmarks.face_part_polygons`:

- ``skin``: the face outline (jaw 1-17, then the brows back from 27 to 18). It is filled as its
  convex hull: at large yaw the outline through the far brow folds over itself and a plain
  polygon fill would leave holes;
- ``nose`` (27, 32-36), ``eyes`` (37-42 and 43-48), ``upper_lip`` (outer 49-55, inner 65-61),
  ``lower_lip`` (outer 55-60, 49, inner 61, 68-65) and ``inner_mouth`` (61-68), painted in that
  order over the skin, so the inner mouth wins over the lips' shared border;
- everything else is ``background`` (hair, forehead above the brows, neck, scene), as in the thesis.

Self-occlusion: our faces also carry the visibility of every landmark (a turned face hides one eye).
A part other than the skin is painted only when at least ``min_visible`` of its landmarks are
visible, so a hidden eye does not show through the nose. (The thesis's 300-W faces have no such
flags; all their parts are drawn.)

Coordinates follow the project convention: the centre of pixel (row i, col j) is (j + 0.5, i + 0.5),
and a pixel belongs to a part exactly when its centre is inside the part's polygon (tested with
``matplotlib.path.Path``; ``cv2.fillPoly`` would also take the pixels its boundary lines touch, which
biases small parts by half a pixel towards the bottom right at the 16-64 px of the network outputs).

:class:`ParsingInputs` turns a face sample into a training item for the face-parsing network:
the crop of :class:`fa_lib.data.pipeline.FanInputs` (same augmentation) and the label map
(``"mask"``, int64 (H, H)) at the network's output resolution, drawn from the transformed landmarks.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np
import torch

from fa_lib.data.pipeline import FanInputs
from fa_lib.geometry import box_from_landmarks
from fa_lib.landmarks import face_part_polygons

#: Class index -> name (index 0 is the background).
PARSING_CLASSES: tuple[str, ...] = ("background", "skin", "lower_lip", "upper_lip", "inner_mouth",
                                    "eyes", "nose")
N_PARSING_CLASSES = len(PARSING_CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(PARSING_CLASSES)}

#: RGB colours of the classes for figures (Fig. 5.10 style: one colour per class).
PARSING_COLOURS = np.array([
    [0, 0, 0],          # background
    [230, 180, 140],    # skin
    [200, 40, 60],      # lower lip
    [240, 110, 130],    # upper lip
    [90, 20, 40],       # inner mouth
    [60, 140, 230],     # eyes
    [120, 200, 90],     # nose
], dtype=np.uint8)

#: Painting order over the skin: (class, landmark loops of face_part_polygons).
_PAINT_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nose", ("nose",)),
    ("eyes", ("right_eye", "left_eye")),
    ("upper_lip", ("upper_lip",)),
    ("lower_lip", ("lower_lip",)),
    ("inner_mouth", ("inner_mouth",)),
)


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"mask size must be positive, got {size!r}")
    return h, w


def _fill(mask: np.ndarray, polygon: np.ndarray, value: int) -> None:
    """Set ``mask`` to ``value`` at every pixel whose centre (j + 0.5, i + 0.5) is inside ``polygon``."""
    from matplotlib.path import Path

    h, w = mask.shape
    x0 = max(int(np.floor(polygon[:, 0].min() - 0.5)), 0)
    x1 = min(int(np.ceil(polygon[:, 0].max() + 0.5)), w)
    y0 = max(int(np.floor(polygon[:, 1].min() - 0.5)), 0)
    y1 = min(int(np.ceil(polygon[:, 1].max() + 0.5)), h)
    if x1 <= x0 or y1 <= y0:
        return
    jj, ii = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    inside = Path(polygon).contains_points(np.c_[jj.ravel(), ii.ravel()]).reshape(jj.shape)
    mask[y0:y1, x0:x1][inside] = value


def parsing_mask(points, size, visibility=None, min_visible: float = 0.5) -> np.ndarray:
    """The 7-class label map (uint8, values index :data:`PARSING_CLASSES`) of one face.

    :param points: (68, 2) landmarks in the mask's pixel coordinates (68, 3 also accepted: z ignored).
        Use the "2D" landmarks (jaw on the visible silhouette) so the skin follows the face outline.
    :param size: mask side (int) or (height, width).
    :param visibility: optional (68,) bool: a part other than skin is drawn only when at least
        ``min_visible`` of its points are visible.
    :raises ValueError: points not (68, 2|3) or not finite, bad size or visibility shape.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != 68 or pts.shape[1] not in (2, 3):
        raise ValueError(f"parsing_mask needs (68, 2) landmarks, got shape {pts.shape}")
    pts = pts[:, :2]
    if not np.isfinite(pts).all():
        raise ValueError("parsing_mask: landmarks contain NaN or inf")
    h, w = _size_hw(size)
    vis = None
    if visibility is not None:
        vis = np.asarray(visibility, dtype=bool)
        if vis.shape != (68,):
            raise ValueError(f"visibility must be (68,), got {vis.shape}")
    loops = face_part_polygons()
    mask = np.zeros((h, w), np.uint8)
    outline = pts[loops["skin"]].astype(np.float32)
    _fill(mask, cv2.convexHull(outline)[:, 0, :].astype(np.float64), CLASS_INDEX["skin"])
    for cls, parts in _PAINT_ORDER:
        for part in parts:
            idx = loops[part]
            if vis is not None and vis[idx].mean() < min_visible:
                continue
            _fill(mask, pts[idx], CLASS_INDEX[cls])
    return mask


def colourise(mask) -> np.ndarray:
    """RGB uint8 image (H, W, 3) of a label map, one colour per class (:data:`PARSING_COLOURS`)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a label map is (H, W), got shape {m.shape}")
    if m.size and (m.min() < 0 or m.max() >= N_PARSING_CLASSES):
        raise ValueError(f"labels must be in [0, {N_PARSING_CLASSES - 1}], got {m.min()}..{m.max()}")
    return PARSING_COLOURS[m.astype(np.int64)]


def zoom_box(box, zoom: float) -> np.ndarray:
    """``box`` (4,) scaled about its centre by ``zoom`` (< 1 shrinks it, so the crop taken from it is
    tighter around the face)."""
    if not zoom > 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    b = np.asarray(box, dtype=np.float32)
    c = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], np.float32)
    half = np.array([(b[2] - b[0]) / 2, (b[3] - b[1]) / 2], np.float32) * zoom
    return np.array([c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]], np.float32)


class ParsingInputs:
    """Prepare a face sample for the face-parsing network of section 5.8.

    The crop and its augmentation are those of ``FanInputs("2d", ...)``; the item gets ``"mask"``
    (int64 (H, H), H = ``output_size``, the network's output resolution), the label map drawn from
    the crop's (augmented, flip-permuted) 2D landmarks with their visibility (a set with only the 3D
    landmarks' projections, LS3D-W, gives those). ``zoom`` < 1 crops
    tighter than FAN's convention (crop side 200 * (w + h) / 195 ~ 2x the landmark box), so small
    parts (eyes, lips) cover more output pixels at a low resolution. Items keep ``"image"``,
    ``"landmarks"`` and ``"matrix"`` of FanInputs; the landmark heatmaps are dropped.
    """

    def __init__(self, *, input_size: int = 256, output_size: int = 64, zoom: float = 1.0,
                 augment=None, min_visible: float = 0.5):
        if not zoom > 0:
            raise ValueError(f"zoom must be positive, got {zoom}")
        self.fan = FanInputs("2d", input_size=input_size, heatmap_size=output_size, augment=augment)
        self.output_size, self.zoom, self.min_visible = int(output_size), float(zoom), float(min_visible)

    def __repr__(self) -> str:
        return (f"ParsingInputs(input_size={self.fan.input_size}, output_size={self.output_size}, "
                f"zoom={self.zoom}, augment={self.fan.augment})")

    def __call__(self, sample: Mapping[str, Any], rng=None) -> dict[str, Any]:
        if sample.get("landmarks_2d") is None:
            points_3d = sample.get("landmarks_3d")
            if points_3d is None:
                raise ValueError(f"face parsing needs sample['landmarks_2d'] or ['landmarks_3d'] (source "
                                 f"{sample.get('source', '?')!r})")
            # LS3D-W annotates only the 3D landmarks' projections: the masks are drawn from them
            sample = dict(sample, landmarks_2d=np.asarray(points_3d, np.float32)[:, :2])
        if self.zoom != 1.0:
            sample = dict(sample)
            box = sample.get("box")
            box = box_from_landmarks(np.asarray(sample["landmarks_2d"])) if box is None else box
            sample["box"] = zoom_box(box, self.zoom)
        item = self.fan(sample, rng)
        mask = parsing_mask(item["landmarks"].numpy(), self.output_size, item["visibility"].numpy(),
                            self.min_visible)
        item["mask"] = torch.from_numpy(mask.astype(np.int64))
        del item["heatmaps"]
        return item


__all__ = ["PARSING_CLASSES", "N_PARSING_CLASSES", "CLASS_INDEX", "PARSING_COLOURS", "parsing_mask",
           "colourise", "zoom_box", "ParsingInputs"]
