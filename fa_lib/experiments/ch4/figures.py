"""The figures of chapter 4, one registered builder each (``ctx.build("figure 4.8")``).

Every builder takes only the chapter's context, writes ``results/figures/fig_<id>.png`` and returns
a :class:`~fa_lib.experiments.registry.ThesisResult` (``figure``; ``data`` holds the numbers drawn;
``verdicts`` where the figure checks a finding). Landmarks are drawn with the book's one convention
(:mod:`fa_lib.experiments.plotting`): ground truth green, prediction red.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fa_lib import metrics
from fa_lib.experiments.ch4 import findings, narrative
from fa_lib.experiments.ch4.conversion import CONVERSION_NOT_RUN
from fa_lib.experiments.ch4.data import TEST_2D_LABELS, at_resolution, example_indices, ground_truth
from fa_lib.experiments.ch4.evaluation import depth_errors, error_summary, evaluate_fan
from fa_lib.experiments.ch4.training import (DEPTH_NAME as DEPTH_NETWORK, TRAINS_2D, TRAINS_2D_TO_3D, TRAINS_3D,
                                             TRAINS_DEPTH, TRAINS_SIZES)
from fa_lib.experiments.common import auc_by_bin, curve_summary, learning_curves
from fa_lib.experiments.plotting import (GROUND_TRUTH, PREDICTION, ced_axes, ced_by_yaw, draw_landmarks,
                                         landmark_grid, learning_curves_figure)
from fa_lib.experiments.registry import ThesisResult, thesis_figure


def _figure_result(ctx, fig_id: str, fig: Figure, *, caption: str, names=(), budget=None, verdicts=(), notes=(),
                   data: dict | None = None, dataset: str | None = None) -> ThesisResult:
    budget = ctx.budgets(*names) if budget is None and names else budget
    path = ctx.write_test_figure(fig, fig_id.replace(".", "_"), caption=caption, budget=budget, dataset=dataset)
    return ThesisResult(fig_id, "figure", figure=fig, verdicts=list(verdicts), path=path, runs=ctx.runs_of(*names),
                        notes=list(notes), data=data or {})


def _single_axes(title: str, curves) -> Figure:
    fig = Figure(figsize=(6.2, 4))
    ced_axes(fig.add_subplot(1, 1, 1), curves, title=title)
    fig.tight_layout()
    return fig


@thesis_figure("4.6", trains=(TRAINS_2D_TO_3D, TRAINS_2D, TRAINS_3D))
def fig_4_6(ctx) -> ThesisResult:
    """Fig. 4.6: CED of the LS3D-W construction tool's converted landmarks (``fa-lib
    convert-ls3dw``, with the 2D annotations and guided by 2D-FAN) against the renderer's true 3D
    landmarks (the thesis compares with AFLW2000-3D's fitted annotations; ours are exact by
    construction), with 3D-FAN alone and "no conversion" for reference. Its numbers and verdicts
    are table "4.fig6"."""
    if ctx.data.real and ctx.data.aflw2000 is None:
        return ctx.not_run("4.6", "figure", CONVERSION_NOT_RUN)
    tool = ctx.conversion
    truth = "AFLW2000-3D's 3D annotations" if ctx.data.real else "the true 3D landmarks"
    fig = _single_axes(f"fa-lib convert-ls3dw vs {truth}, {len(tool.indices)} faces (cf. Fig. 4.6)",
                       ctx.conversion_curves)
    return _figure_result(ctx, "4.6", fig, names=("2D-FAN", "2D-to-3D-FAN", "3D-FAN"), data={"tool": tool},
                          caption="CED of fa-lib convert-ls3dw's converted landmarks against the true 3D landmarks")


@thesis_figure("4.8", trains=(TRAINS_2D,))
def fig_4_8(ctx) -> ThesisResult:
    """Fig. 4.8: CED of 2D-FAN on 2D landmarks, one panel per yaw bin and one for all images, with
    the mean shape as the floor."""
    why = ctx.unavailable(TEST_2D_LABELS)
    if why:
        return ctx.not_run("4.8", "figure", why)
    p = ctx.predictions
    fig = ced_by_yaw(p.bins, {"2D-FAN": p.fan2d.nme, "mean shape": p.baseline2d},
                     f"2D-FAN on the 2D landmarks of {ctx.test_set_words} (cf. thesis Fig. 4.8)")
    return _figure_result(ctx, "4.8", fig, names=("2D-FAN",),
                          caption=f"CED curves of 2D-FAN by yaw ({ctx.test_set_words}, 10% box noise)")


@thesis_figure("4.9", trains=(TRAINS_3D, TRAINS_2D_TO_3D))
def fig_4_9(ctx) -> ThesisResult:
    """Fig. 4.9: CED of 3D-FAN (and 2D-to-3D-FAN guided by 2D-FAN, the mean shape) on the 3D
    landmarks, one panel per yaw bin and one for all images."""
    p = ctx.predictions
    fig = ced_by_yaw(p.bins, {"3D-FAN": p.fan3d.nme, "2D-to-3D-FAN (2D-FAN guide)": p.converted_pred.nme,
                              "mean shape": p.baseline3d},
                     f"3D-FAN on the 3D landmarks of {ctx.test_set_words} (cf. thesis Fig. 4.9)")
    return _figure_result(ctx, "4.9", fig, names=("3D-FAN", "2D-to-3D-FAN"),
                          caption=f"CED curves of 3D-FAN by yaw ({ctx.test_set_words}, 10% box noise)")


@thesis_figure("4.10", trains=(TRAINS_3D,))
def fig_4_10(ctx) -> ThesisResult:
    """Fig. 4.10: AUC@7% of 3D-FAN by face resolution (face size sqrt(w*h) in px; image
    down-scaled then up-scaled, the network not retrained), per yaw bin. ``data["auc"]``: one row
    per (face size, bin); the rightmost size is the native images'."""
    setup, data = ctx.setup, ctx.data
    started = time.perf_counter()
    model, bins = ctx.network("3D-FAN").model, data.test_bins
    native = float(np.median(metrics.face_size(np.asarray(data.test.array("box")))))
    records = []
    for px in [*sorted(setup.resolutions), None]:
        samples = data.test if px is None else at_resolution(data.test, px)
        ev = evaluate_fan(model, samples, setup, landmarks="3d", seed=ctx.seed, device=ctx.device)
        for key, auc in auc_by_bin(ev.nme, bins).items():
            records.append({"face size (px)": native if px is None else float(px), "native": px is None,
                            "bin": key, "AUC@7% (%)": auc})
    df = pd.DataFrame(records)
    fig = Figure(figsize=(6.2, 4))
    ax = fig.add_subplot(1, 1, 1)
    for key, group in df.groupby("bin", sort=False):
        ax.plot(group["face size (px)"], group["AUC@7% (%)"], "o-", label=f"|yaw| {key}" if key != "all" else "all",
                lw=2.2 if key == "all" else 1.2)
    ax.axvline(setup.input_size / 2, color="grey", ls=":", lw=1)
    ax.text(setup.input_size / 2, 2, " face size in the\n network's crop", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("face size sqrt(w*h) (px); rightmost point: native images")
    ax.set_ylabel("AUC@7% (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("3D-FAN across face resolution, not retrained (cf. Fig. 4.10)", fontsize=9)
    fig.tight_layout()
    overall = df[df["bin"] == "all"]
    auc_all = dict(zip(overall[~overall["native"]]["face size (px)"], overall[~overall["native"]]["AUC@7% (%)"]))
    native_auc = float(overall[overall["native"]]["AUC@7% (%)"].iloc[0])
    return _figure_result(ctx, "4.10", fig, names=("3D-FAN",), data={"auc": df},
                          verdicts=findings.fig_4_10_verdicts(auc_all, native_auc),
                          notes=[narrative.fig_4_10(auc_all, native_auc, setup.input_size)],
                          caption=f"AUC@7% of 3D-FAN against face resolution "
                                  f"(wall {time.perf_counter() - started:.0f} s)")


@thesis_figure("4.12", trains=(TRAINS_3D, TRAINS_DEPTH))
def fig_4_12(ctx) -> ThesisResult:
    """Fig. 4.12: depth error of 3D-FAN-full (NME of z, of (x, y) and of (x, y, z), and of a flat
    face z = 0) as CED curves. ``data["summary"]``: mean NME and AUC@7% of each."""
    why = ctx.unavailable(DEPTH_NETWORK)
    if why:
        return ctx.not_run("4.12", "figure", why)
    evaluation = ctx.depth_evaluation
    curves = depth_errors(evaluation)
    fig = _single_axes("3D-FAN-full: depth and full 3D error (cf. Fig. 4.12)", curves)
    summary = error_summary(curves, "error of")
    mean_nme = dict(zip(summary["error of"], summary["mean NME (%)"]))
    return _figure_result(ctx, "4.12", fig, names=("3D-FAN", "3D-FAN-full depth"), data={"summary": summary},
                          verdicts=findings.fig_4_12_verdicts(mean_nme), notes=[narrative.fig_4_12(mean_nme)],
                          caption="NME of the depth (z), of (x, y) and of (x, y, z) predicted by 3D-FAN-full",
                          dataset=ctx.depth_dataset)


def _yaw(ctx, index: int) -> float:
    return abs(float(ctx.data.test.array("pose")[index][0]))


def _fittings(ctx, fig_id: str, network: str, ev, per_bin: int) -> ThesisResult:
    idx = example_indices(ctx.predictions.bins, per_bin)
    fig = landmark_grid([ctx.data.test[i]["image"] for i in idx], [ev.predictions[i] for i in idx],
                        [ev.ground_truth[i] for i in idx],
                        [f"|yaw| {_yaw(ctx, i):.0f}, NME {100 * ev.nme[i]:.1f}%" for i in idx], columns=per_bin,
                        size=2.1, suptitle=f"{network} fittings (red) and ground truth (green) (cf. Fig. {fig_id})")
    return _figure_result(ctx, fig_id, fig, names=(network,), data={"indices": idx},
                          caption=f"{network} fitting examples on {ctx.test_set_words}")


@thesis_figure("4.13", trains=(TRAINS_2D,))
def fig_4_13(ctx, per_bin: int = 3) -> ThesisResult:
    """Fig. 4.13: 2D-FAN fittings on test faces of every yaw bin (``per_bin`` each)."""
    why = ctx.unavailable(TEST_2D_LABELS)
    if why:
        return ctx.not_run("4.13", "figure", why)
    return _fittings(ctx, "4.13", "2D-FAN", ctx.predictions.fan2d, per_bin)


@thesis_figure("4.14", trains=(TRAINS_3D,))
def fig_4_14(ctx, per_bin: int = 3) -> ThesisResult:
    """Fig. 4.14: 3D-FAN fittings on test faces of every yaw bin (``per_bin`` each)."""
    return _fittings(ctx, "4.14", "3D-FAN", ctx.predictions.fan3d, per_bin)


@thesis_figure("4.15", trains=(TRAINS_3D, TRAINS_DEPTH))
def fig_4_15(ctx, per_bin: int = 3) -> ThesisResult:
    """Fig. 4.15: full 3D fittings of 3D-FAN-full, one face per yaw bin: (x, y) on the image and a
    side view of (z, y) against the true 3D landmarks."""
    why = ctx.unavailable(DEPTH_NETWORK)
    if why:
        return ctx.not_run("4.15", "figure", why)
    p = ctx.depth_evaluation
    idx = example_indices(p.bins, per_bin)
    gt3, _ = ground_truth(p.samples, "3d")
    poses = np.asarray(p.samples.array("pose"))
    show = idx[::max(1, per_bin)][:3] if per_bin > 1 else idx[:3]
    fig = Figure(figsize=(7.5, 2.6 * len(show)))
    for r, i in enumerate(show):
        pred3 = np.concatenate([p.fan3d.predictions[i], p.depth_z[i][:, None]], axis=1)
        draw_landmarks(fig.add_subplot(len(show), 2, 2 * r + 1), p.samples[i]["image"], pred3,
                       title=f"3D-FAN-full (x, y), |yaw| {abs(float(poses[i][0])):.0f}")
        ax = fig.add_subplot(len(show), 2, 2 * r + 2)
        ax.plot(gt3[i][:, 2], gt3[i][:, 1], ".", color=GROUND_TRUTH, ms=3, label="true (z, y)")
        ax.plot(pred3[:, 2], pred3[:, 1], ".", color=PREDICTION, ms=3, label="3D-FAN-full (z, y)")
        ax.invert_yaxis()
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("z (px, larger = nearer)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.suptitle("Full 3D fittings: image plane and side view (cf. Fig. 4.15)", fontsize=9)
    fig.tight_layout()
    return _figure_result(ctx, "4.15", fig, names=("3D-FAN", "3D-FAN-full depth"), data={"indices": show},
                          caption="3D-FAN-full fittings: (x, y) on the image and the side view (z, y)",
                          dataset=ctx.depth_dataset)


@thesis_figure("4.learning_curves", trains=(TRAINS_2D, TRAINS_3D, TRAINS_2D_TO_3D, TRAINS_SIZES))
def fig_learning_curves(ctx, sizes: bool = True) -> ThesisResult:
    """Fig. "4.learning_curves" (the scale section's evidence, not a thesis figure): each FAN's
    validation NME (the held-out 10% of the training set, 10% box noise, the chapter's decoder)
    after every epoch, against optimiser steps and against training wall time; ``sizes`` adds
    Table 4.4's networks.
    ``data["summary"]``: where each curve flattened (:func:`fa_lib.experiments.common.curve_summary`)."""
    runs = {name: ctx.network(name) for name in ("2D-FAN", "3D-FAN", "2D-to-3D-FAN")}
    if sizes:
        runs.update({f"Table 4.4 {label}": run for label, run in ctx.size_variants().items()
                     if all(run is not seen for seen in runs.values())})
    curves = learning_curves({name: run.history for name, run in runs.items()})
    summary = curve_summary(curves)
    fig = learning_curves_figure(curves, title=f"Validation NME while training ({ctx.setup.name} profile)")
    return _figure_result(ctx, "4.learning_curves", fig, names=("2D-FAN", "3D-FAN", "2D-to-3D-FAN"),
                          data={"curves": curves, "summary": summary},
                          caption="validation NME of each FAN against optimiser steps and training wall time")
