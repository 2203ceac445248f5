"""The figures of chapter 3: Fig. 3.4 (CED of the detector vs CALE), Fig. 3.5 (fits on occluded and
profile faces, visible and invisible points in two colours, with CALE's predicted visibility), the
learning curves of the scale section, and the evidence explorer's frames (the detector's disc maps
beside the regressor's Gaussian maps, point by point)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fa_lib.experiments.ch3.context import CaleRun, Chapter3
from fa_lib.experiments.ch3.tables import EVERY_SEED
from fa_lib.experiments.plotting import ced_axes
from fa_lib.experiments.registry import ThesisResult, thesis_figure
from fa_lib.experiments.verdict import not_measurable

#: Fig. 3.4's error axis ends here (NME as a fraction)
CED_LIMIT = 0.10
VISIBLE_COLOUR, INVISIBLE_COLOUR = "#1f77b4", "#ffbf00"   # the thesis's blue and yellow
#: CALE calls a point visible when its detector's sigmoid maximum reaches this
VISIBILITY_THRESHOLD = 0.5


def _write(ctx: Chapter3, fig: Figure, fig_id: str, caption: str, runs: Sequence[CaleRun], **extra: Any):
    described = ctx.data.describe()
    return ctx.write_figure(fig, fig_id, dataset=f"{described['train']} -> {described['test']}", caption=caption,
                            budget={f"stage {k}": ctx.setup.stage_config(k).to_dict() for k in range(4)},
                            extra={"networks": [r.summary() for r in runs], **extra})


@thesis_figure("3.4", trains=(EVERY_SEED,))
def fig_3_4(ctx: Chapter3) -> ThesisResult:
    """Fig. 3.4: cumulative error distribution of the detector alone and of CALE.

    On the 34 AFLW-PIFA points, visible only and all (the notebook's seed)."""
    run = ctx.runs_all()[0]
    fig = Figure(figsize=(10, 4))
    for k, (visible, title) in enumerate(((True, "visible points"), (False, "all points (occluded included)"))):
        curves = {"CNN detector": ctx.errors(run, "detector", 34, visible), "CALE": ctx.errors(run, "cale", 34, visible)}
        ced_axes(fig.add_subplot(1, 2, k + 1), curves, threshold=CED_LIMIT, title=f"34 points, {title}")
    fig.tight_layout()
    path = _write(ctx, fig, "3_4", "Cumulative error distribution, detector vs CALE (thesis Fig. 3.4), "
                  "AUC up to 10% NME", [run])
    return ThesisResult("3.4", "figure", figure=fig, path=path, runs={"CALE": [run]})


def example_faces(ctx: Chapter3, count: int) -> list[int]:
    """Test faces for the figures: the most occluded ones (fewest visible points; self-occlusion of
    profile faces and drawn occluders both count)."""
    _, vis, _ = ctx.ground_truth()
    order = np.argsort(vis.sum(1), kind="stable")
    return [int(i) for i in order[:count]]


def _panel(ax, image: np.ndarray, points: np.ndarray, visible: np.ndarray, predicted_visible: np.ndarray | None,
           title: str) -> None:
    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    for mask, colour in ((visible, VISIBLE_COLOUR), (~visible, INVISIBLE_COLOUR)):
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=9, c=colour, edgecolors="k", linewidths=0.3)
    if predicted_visible is not None:
        wrong = predicted_visible != visible
        if wrong.any():  # where CALE's visibility call disagrees with the label
            ax.scatter(points[wrong, 0], points[wrong, 1], s=40, facecolors="none", edgecolors="red", linewidths=0.8)
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)


def crop_points(ctx: Chapter3, points: np.ndarray, index: int) -> np.ndarray:
    """Image px -> the test crop's px (the crops the networks saw)."""
    m = ctx.test_tensors()["matrix"][index].numpy()
    return points @ m[:2, :2].T + m[:2, 2]


@thesis_figure("3.5", trains=(EVERY_SEED,))
def fig_3_5(ctx: Chapter3) -> ThesisResult:
    """Fig. 3.5: CALE's fits on the most occluded test faces.

    Points labelled visible in blue, invisible in yellow; a red ring where CALE's visibility call (its
    detector's confidence) disagrees with the label."""
    run = ctx.runs_all()[0]
    faces = example_faces(ctx, ctx.setup.fig_faces)
    images = ctx.test_tensors()["image"]
    gt, vis, _ = ctx.ground_truth()
    columns = min(4, len(faces))
    rows = (len(faces) + columns - 1) // columns
    fig = Figure(figsize=(2.3 * columns, 2.5 * rows))
    agreement = []
    for k, i in enumerate(faces):
        predicted_visible = run.cale.confidence[i] >= VISIBILITY_THRESHOLD
        agreement.append(float(np.mean(predicted_visible == vis[i])))
        nme = 100 * float(ctx.errors(run, "cale", 34, False)[i])
        _panel(fig.add_subplot(rows, columns, k + 1), images[i].numpy(), crop_points(ctx, run.cale.points[i], i),
               vis[i], predicted_visible, f"{int(vis[i].sum())}/34 visible, NME {nme:.1f}%")
    fig.suptitle("CALE on occluded faces: blue = labelled visible, yellow = labelled invisible, "
                 "red ring = visibility call wrong", fontsize=8)
    fig.tight_layout()
    all_agree = float(np.mean((run.cale.confidence >= VISIBILITY_THRESHOLD) == vis))
    path = _write(ctx, fig, "3_5", "CALE's fits on occluded and profile faces (thesis Fig. 3.5)", [run],
                  visibility_agreement=all_agree)
    return ThesisResult("3.5", "figure", figure=fig, path=path, runs={"CALE": [run]},
                        data={"faces": faces, "visibility_agreement": all_agree,
                              "shown_agreement": float(np.mean(agreement))},
                        notes=[f"CALE's visibility call (detector confidence >= {VISIBILITY_THRESHOLD}) agrees with the "
                               f"label on {100 * all_agree:.1f}% of the test points."])


def _not_reproduced(thesis_id: str, reason: str) -> ThesisResult:
    return ThesisResult(thesis_id, "figure", verdicts=[not_measurable(
        "CALE fits cats and dogs with the same accuracy", f"not reproduced: {reason}", metric="NME (%)")])


PETS_TRAINS = ("CALE on the 22-point pet faces, when the annotations are under data_root",)


@thesis_figure("3.6", trains=PETS_TRAINS)
def fig_3_6(ctx: Chapter3) -> ThesisResult:
    """Fig. 3.6: cumulative error distribution of CALE on cat and dog faces (22 points).

    Only with the user's 22-point pet annotations under ``data_root`` (:mod:`fa_lib.data.pets`)."""
    pets, reason = ctx.pets()
    if pets is None:
        return _not_reproduced("3.6", reason)
    errors = pets["errors"][0]
    fig = Figure(figsize=(5, 4))
    ced_axes(fig.add_subplot(1, 1, 1), {"Cats": errors["Cats"], "Dogs": errors["Dogs"]}, threshold=CED_LIMIT,
             title="CALE on 22 points of pet faces")
    fig.tight_layout()
    path = _write(ctx, fig, "3_6", "Cumulative error distribution on cats and dogs (thesis Fig. 3.6)",
                  pets["runs"][:1])
    return ThesisResult("3.6", "figure", figure=fig, path=path, runs={"CALE": pets["runs"][:1]})


@thesis_figure("3.7", trains=PETS_TRAINS)
def fig_3_7(ctx: Chapter3) -> ThesisResult:
    """Fig. 3.7: CALE's fits on cat and dog faces (22 points), with the user's annotations only."""
    pets, reason = ctx.pets()
    if pets is None:
        return _not_reproduced("3.7", reason)
    pet_ctx, run = pets["context"], pets["runs"][0]
    count = min(ctx.setup.fig_faces, len(pet_ctx.data.test))
    images = pet_ctx.test_tensors()["image"]
    columns = min(4, count)
    rows = (count + columns - 1) // columns
    fig = Figure(figsize=(2.3 * columns, 2.5 * rows))
    species = list(pet_ctx.data.test.species)
    for i in range(count):
        points = crop_points(pet_ctx, run.cale.points[i], i)
        _panel(fig.add_subplot(rows, columns, i + 1), images[i].numpy(), points, np.ones(len(points), bool), None,
               f"{species[i]}, NME {100 * float(pet_ctx.errors(run, 'cale', 22, False)[i]):.1f}%")
    fig.tight_layout()
    path = _write(ctx, fig, "3_7", "CALE's fits on cat and dog faces (thesis Fig. 3.7)", [run])
    return ThesisResult("3.7", "figure", figure=fig, path=path, runs={"CALE": [run]})


STAGE_TITLES = {"detector-32s": "detector, stride 32", "detector-8s": "detector, stride 8 (FCN-8s)",
                "regressor": "regressor (detector frozen)", "joint": "joint (end to end)"}


def stage_curves(runs: Sequence[CaleRun]) -> pd.DataFrame:
    """One row per (seed, stage, epoch): the stage's optimiser step and its validation NME (%, all
    points, decoded from the stage's output) and loss on the held-out training faces."""
    rows = []
    for run in runs:
        for h in run.history:
            if h.get("stage") in STAGE_TITLES:
                nme = h.get("val_nme")
                rows.append({"seed": run.seed, "stage": h["stage"], "step": h["step"],
                             "validation NME (%)": None if nme is None else 100 * float(nme),
                             "validation loss": h.get("val_loss")})
    return pd.DataFrame(rows, columns=["seed", "stage", "step", "validation NME (%)", "validation loss"])


@thesis_figure("3.learning_curves", trains=(EVERY_SEED,))
def fig_learning_curves(ctx: Chapter3) -> ThesisResult:
    """Learning curves: the validation error of every stage of section 3.1.4, every seed.

    On the held-out training faces, stage by stage: the NME of the stage's decoded output (the
    detector's disc maps in the first two stages, read by the trainer's decoder without Table 3.3's
    blur; CALE's regressed maps after), or the stage's own loss for runs whose history has no NME:
    where each stage stops improving."""
    runs = ctx.runs_all()
    curves = stage_curves(runs)
    fig = Figure(figsize=(12, 3.2))
    for k, (stage, title) in enumerate(STAGE_TITLES.items()):
        ax = fig.add_subplot(1, 4, k + 1)
        part = curves[curves["stage"] == stage]
        metric = "validation NME (%)" if part["validation NME (%)"].notna().all() else "validation loss"
        for seed, rows in part.groupby("seed"):
            ax.plot(rows["step"], rows[metric], marker=".", label=f"seed {seed}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimiser steps of the stage")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if len(part):
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = _write(ctx, fig, "3_learning_curves", "Validation error of each training stage (scale section)", runs)
    return ThesisResult("3.learning_curves", "figure", figure=fig, path=path, runs={"CALE": runs},
                        data={"curves": curves})


def evidence_frames(ctx: Chapter3, faces: int = 3, points: Sequence[int] | None = None
                    ) -> tuple[list[list[Figure]], list[str], list[str], pd.DataFrame]:
    """The evidence explorer (``fa_lib.widgets.grid_explorer``): for a few occluded test faces
    (rows) and landmarks (columns), the detector's disc map, the regressor's Gaussian map and the
    final point, so the reader sees how the regressor places points the detector cannot see.
    Returns (frames[face][point], face labels, point labels, a table of the shown cases)."""
    run = ctx.runs_all()[0]
    chosen = example_faces(ctx, faces)
    gt, vis, _ = ctx.ground_truth()
    images = ctx.test_tensors()["image"]
    if points is None:
        # the points most often invisible among the chosen faces first, then a few visible ones
        hidden = (~vis[chosen]).sum(0)
        points = [int(p) for p in np.argsort(-hidden, kind="stable")[:6]]
    det_maps, reg_maps = ctx.maps(run, chosen)
    frames, rows = [], []
    for row_index, i in enumerate(chosen):
        row = []
        crop_gt = crop_points(ctx, gt[i], i)
        crop_pred = crop_points(ctx, run.cale.points[i], i)
        for p in points:
            fig = Figure(figsize=(7.2, 2.6))
            image = images[i].numpy()
            image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            for k, (title, overlay) in enumerate((
                    (f"detector: sigmoid map (max {run.cale.confidence[i, p]:.2f})", det_maps[row_index][p]),
                    ("regressor: Gaussian map", reg_maps[row_index][p]),
                    ("final point (red) and label (green)", None))):
                ax = fig.add_subplot(1, 3, k + 1)
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
                if overlay is not None:
                    ax.imshow(overlay, cmap="magma", alpha=0.6, vmin=0, vmax=max(float(overlay.max()), 1e-3))
                else:
                    ax.scatter(*crop_gt[p], s=30, c="lime", edgecolors="k", linewidths=0.4)
                    ax.scatter(*crop_pred[p], s=30, c="red", edgecolors="k", linewidths=0.4)
                ax.set_title(title, fontsize=7)
                ax.set_axis_off()
            state = "visible" if vis[i, p] else "INVISIBLE (occluded)"
            error = float(np.linalg.norm(crop_pred[p] - crop_gt[p]))
            fig.suptitle(f"face {i}, point {p}: {state}; final error {error:.1f} crop px", fontsize=8)
            fig.tight_layout()
            row.append(fig)
            rows.append({"face": i, "point": p, "visible": bool(vis[i, p]),
                         "detector confidence": float(run.cale.confidence[i, p]), "error (crop px)": error})
        frames.append(row)
    face_labels = [f"face {i} ({int(vis[i].sum())}/34 visible)" for i in chosen]
    point_labels = [f"point {p}" for p in points]
    return frames, face_labels, point_labels, pd.DataFrame(rows)
