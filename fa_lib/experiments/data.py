"""Figures about the embedded synthetic benchmark (rendered 3D faces, the stand-in for the thesis's datasets).

- :func:`figure_2d_vs_3d`: the thesis's Fig. 1.4 on synthetic faces: the same face across yaw with
  its "2D" markup (jaw on the visible outline) and its "3D" markup (projected fixed vertices).
- :func:`figure_identity_montage`: a grid of rendered people, poses and scenes.
- :func:`pose_explorer_frames`: frames of one face turning from -90 to 90 degrees of yaw, for the
  book's yaw slider (``fa_lib.widgets.frame_explorer``).

Figures are built with ``matplotlib.figure.Figure`` (no global backend).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from matplotlib.figure import Figure

from fa_lib.data.render import (RenderConfig, face_model_for, render_random_sample,
                                render_sample, sample_identity, sample_scene)

COLOUR_2D = "#ff3b30"   # the 2D (visible-outline) markup
COLOUR_3D = "#34c759"   # the 3D (projected-vertex) markup
_CLEAN = dict(occluder_probability=0.0, blur_probability=0.0, noise_probability=0.0)


def _pose_series(yaws, size: int, identity: int, seed: int, pitch: float, roll: float,
                 clean: bool = True) -> list[dict]:
    """One person with one expression and lighting, turned through ``yaws`` (degrees)."""
    config = RenderConfig(size=size, **(_CLEAN if clean else {}))
    model = face_model_for(config)
    person = sample_identity(model, identity, config, namespace=9)
    base = sample_scene(model, np.random.default_rng([seed, 0xF1]), config, yaw=0.0)
    base = replace(base, pitch=float(pitch), roll=float(roll), centre=(size / 2, size / 2),
                   face_height_px=0.5 * size)
    return [render_sample(model, person, replace(base, yaw=float(y)), config, source="figure")
            for y in yaws]


def figure_2d_vs_3d(yaws=(0, 30, 60, 90), size: int = 256, identity: int = 3, seed: int = 0,
                    pitch: float = -5.0, roll: float = 0.0, show_hidden: bool = True) -> Figure:
    """Thesis Fig. 1.4 on synthetic faces: 2D markup (top row) and 3D markup (bottom row).

    The 2D jaw points follow the visible outline and lose correspondence as the face turns; the 3D
    points stay on the same vertices (hidden ones drawn hollow when ``show_hidden``).
    """
    samples = _pose_series(yaws, size, identity, seed, pitch, roll)
    n = len(samples)
    fig = Figure(figsize=(2.6 * n, 5.6), dpi=100)
    axes = fig.subplots(2, n, squeeze=False)
    for col, (yaw, s) in enumerate(zip(yaws, samples)):
        for row, kind in enumerate(("2D", "3D")):
            ax = axes[row, col]
            ax.imshow(s["image"])
            if kind == "2D":
                pts = s["landmarks_2d"]
                ax.scatter(pts[:, 0], pts[:, 1], s=9, c=COLOUR_2D, edgecolors="none")
            else:
                pts = s["landmarks_3d"]
                vis = s["visibility"]
                ax.scatter(pts[vis, 0], pts[vis, 1], s=9, c=COLOUR_3D, edgecolors="none")
                if show_hidden:
                    ax.scatter(pts[~vis, 0], pts[~vis, 1], s=12, facecolors="none",
                               edgecolors=COLOUR_3D, linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"yaw {yaw:g}°", fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{kind} landmarks", fontsize=10)
    fig.suptitle("2D markup (jaw on the visible outline) vs 3D markup (projected fixed vertices; "
                 "hollow = self-occluded)", fontsize=9)
    fig.tight_layout()
    return fig


def figure_identity_montage(rows: int = 3, cols: int = 6, size: int = 160, seed: int = 0,
                            clean: bool = False) -> Figure:
    """A grid of random synthetic faces (people, expressions, poses, lighting, backgrounds,
    occluders and degradations as the training set has them; ``clean`` turns the last two off)."""
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be >= 1, got {rows}, {cols}")
    config = RenderConfig(size=size, **(_CLEAN if clean else {}))
    model = face_model_for(config)
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        s = render_random_sample((seed, k), config, model=model, namespace=8)
        ax.imshow(s["image"], cmap="gray" if s["image"].ndim == 2 else None)
        ax.set_title(f"yaw {s['pose'][0]:.0f}°", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def pose_explorer_frames(yaws=tuple(range(-90, 91, 15)), size: int = 256, identity: int = 3,
                         seed: int = 0, pitch: float = -5.0, roll: float = 0.0,
                         landmarks: str = "both"):
    """[(PIL image, label)] of one face turning through ``yaws``, for a yaw slider.

    ``landmarks``: "2d", "3d", "both" (2D red, 3D green; hidden 3D points hollow) or "none".
    """
    import cv2
    from PIL import Image

    if landmarks not in ("2d", "3d", "both", "none"):
        raise ValueError(f"landmarks must be '2d', '3d', 'both' or 'none', got {landmarks!r}")
    samples = _pose_series(yaws, size, identity, seed, pitch, roll)
    red, green = (255, 59, 48), (52, 199, 89)
    frames = []
    for yaw, s in zip(yaws, samples):
        img = np.ascontiguousarray(s["image"].copy())
        r = max(1, size // 128)
        if landmarks in ("3d", "both"):
            for (x, y, _), v in zip(s["landmarks_3d"], s["visibility"]):
                cv2.circle(img, (int(round(x * 4)), int(round(y * 4))), r * 4, green,
                           -1 if v else 1, cv2.LINE_AA, shift=2)
        if landmarks in ("2d", "both"):
            for x, y in s["landmarks_2d"]:
                cv2.circle(img, (int(round(x * 4)), int(round(y * 4))), r * 4, red, -1,
                           cv2.LINE_AA, shift=2)
        frames.append((Image.fromarray(img), f"yaw = {yaw:g}°"))
    return frames
