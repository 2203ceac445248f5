"""One plotting vocabulary for every chapter: the CED axis and the landmark drawer.

Colour convention, everywhere in the book: **ground truth green** (``GROUND_TRUTH``), **prediction
red** (``PREDICTION``); other methods or baselines take the seaborn palette. Figures are built with
the object API (``matplotlib.figure.Figure``), never pyplot, so the library does not change the
notebook's backend.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fa_lib import metrics
from fa_lib.experiments.common import AUC_THRESHOLD, YAW_BIN_LABELS

GROUND_TRUTH = "lime"
PREDICTION = "red"
MARKER_SIZE = 2.5


def ced_axes(ax, curves: Mapping[str, np.ndarray], threshold: float = AUC_THRESHOLD, title: str = "",
             legend: bool = True) -> None:
    """Cumulative error distribution of each set of per-image errors (NME as a fraction; plotted in
    %), with its AUC@``threshold`` in the legend (thesis Figs. 4.8, 4.9, 5.5)."""
    import seaborn as sns

    grid = np.linspace(0.0, threshold, 141)
    frames = []
    for label, err in curves.items():
        auc = 100 * metrics.auc_at(err, threshold)
        frames.append(pd.DataFrame({"NME (%)": 100 * grid, "images (%)": 100 * metrics.ced_curve(err, grid),
                                    "curve": f"{label} (AUC {auc:.1f})"}))
    sns.lineplot(data=pd.concat(frames), x="NME (%)", y="images (%)", hue="curve", ax=ax, linewidth=1.6)
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right", title=None)
    elif ax.get_legend() is not None:
        ax.get_legend().remove()
    if title:
        ax.set_title(title, fontsize=9)


def ced_by_yaw(bins: np.ndarray, curves: Mapping[str, np.ndarray], suptitle: str,
               threshold: float = AUC_THRESHOLD) -> Figure:
    """CED panels for each |yaw| bin and for all images (the panels of thesis Figs. 4.8/4.9), in a
    2 x 2 grid so that each stays legible at the width of a book page."""
    fig = Figure(figsize=(8.4, 6.6))
    panels = [(b, f"|yaw| {YAW_BIN_LABELS[b]}") for b in range(3)] + [(None, "all")]
    for i, (b, title) in enumerate(panels):
        sel = np.ones_like(bins, bool) if b is None else bins == b
        ax = fig.add_subplot(2, 2, i + 1)
        if not sel.any():  # a small real test set may have no face in a bin
            ax.text(0.5, 0.5, "no test face in this bin", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            continue
        ced_axes(ax, {k: np.asarray(v)[sel] for k, v in curves.items()}, threshold=threshold, title=title)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def draw_landmarks(ax, image: np.ndarray, prediction: np.ndarray | None = None,
                   ground_truth: np.ndarray | None = None, title: str = "", zoom: bool = True,
                   marker_size: float = MARKER_SIZE) -> None:
    """An image with its landmarks: ground truth green, prediction red (image pixels, (N, 2+)).
    ``zoom`` crops the view to the landmarks with a margin of a quarter of their extent."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 1 if img.max() <= 1.0 else 255)
        if img.max() > 1.0:
            img = img.astype(np.uint8)
    ax.imshow(img, extent=(0, img.shape[1], img.shape[0], 0))
    points = []
    if ground_truth is not None:
        gt = np.asarray(ground_truth)
        ax.plot(gt[:, 0], gt[:, 1], ".", color=GROUND_TRUTH, ms=marker_size)
        points.append(gt[:, :2])
    if prediction is not None:
        pr = np.asarray(prediction)
        ax.plot(pr[:, 0], pr[:, 1], ".", color=PREDICTION, ms=marker_size)
        points.append(pr[:, :2])
    if zoom and points:
        pts = np.concatenate(points)
        pad = 0.25 * float((pts.max(0) - pts.min(0)).max())
        lo, hi = pts.min(0) - pad, pts.max(0) + pad
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(hi[1], lo[1])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=7)


def landmark_grid(images: Sequence[np.ndarray], predictions: Sequence[np.ndarray | None],
                  ground_truths: Sequence[np.ndarray | None] | None = None, titles: Sequence[str] | None = None,
                  columns: int | None = None, size: float = 1.8, suptitle: str = "") -> Figure:
    """A grid of :func:`draw_landmarks` panels."""
    n = len(images)
    columns = columns or n
    rows = (n + columns - 1) // columns
    fig = Figure(figsize=(size * columns, size * rows + (0.4 if suptitle else 0)))
    for i in range(n):
        draw_landmarks(fig.add_subplot(rows, columns, i + 1), images[i], predictions[i],
                       None if ground_truths is None else ground_truths[i],
                       title="" if titles is None else titles[i])
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def learning_curves_figure(curves: pd.DataFrame, ylabel: str = "validation NME (%)", title: str = "") -> Figure:
    """Two panels of the same curves (:func:`fa_lib.experiments.common.learning_curves`): the
    validation metric against optimiser steps and against cumulative training seconds."""
    fig = Figure(figsize=(10, 3.8))
    axes = [fig.add_subplot(1, 2, k) for k in (1, 2)]
    for name, part in curves.groupby("network", sort=False):
        part = part.sort_values("step")
        for ax, x in zip(axes, ("step", "train_s")):
            ax.plot(part[x], part["value"], marker="o", markersize=3, label=name)
    for ax, xlabel in zip(axes, ("optimiser steps", "training wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    if len(curves):
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
