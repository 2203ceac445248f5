"""Sentences written from the numbers of a run (the notebook never hard-codes a result).

They describe what was measured, beside the thesis's numbers; whether a finding of the thesis holds
is said only by the verdicts (:mod:`fa_lib.experiments.ch4.findings`), never here.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fa_lib.experiments.common import YAW_BIN_LABELS, cell, paper_mean_over_bins, paper_value



def training(mean_nme: Mapping[str, float]) -> str:
    """``mean_nme``: fractions for 3D-FAN, its mean shape and (when the test set has 2D annotations)
    2D-FAN and its mean shape."""
    n3, b3 = 100 * mean_nme["3D-FAN"], 100 * mean_nme["mean shape (3D)"]
    if "2D-FAN" not in mean_nme:
        return (f"On the test set, 3D-FAN's mean NME is {n3:.2f}%, against {b3:.2f}% for the mean shape placed in "
                f"the same noisy box (a model that ignores the image); the test set has no 2D annotations, so "
                f"2D-FAN is scored on Table 4.1's sets.")
    n2, b2 = 100 * mean_nme["2D-FAN"], 100 * mean_nme["mean shape (2D)"]
    return (f"On the test set, 2D-FAN's mean NME is {n2:.2f}% and 3D-FAN's {n3:.2f}%, against {b2:.2f}% and "
            f"{b3:.2f}% for the mean shape placed in the same noisy box (a model that ignores the image).")


def table_4_1_real(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Table 4.1 on real 2D test sets (``rows``: set -> {"2D-FAN", "mean shape (baseline)"} AUC@7%, %)."""
    parts = [f"{name} {cells['2D-FAN']:.1f}% (mean shape {cells['mean shape (baseline)']:.1f}%)"
             for name, cells in rows.items()]
    return "2D-FAN's AUC@7% on the real 2D test sets: " + "; ".join(parts) + "."


def table_4_1(df: pd.DataFrame) -> str:
    all_row = "synthetic test, 2D labels, all"
    best = {c: cell(df, all_row, c) for c in ("2D-FAN", "mean shape (baseline)")}
    bins = [cell(df, f"synthetic test, 2D labels, |yaw| {b.strip('[]')}", "2D-FAN") for b in YAW_BIN_LABELS]
    thesis = [paper_value("4.1", r, "2D-FAN") for r in ("300-VW-A", "300-VW-B", "300-VW-C", "Menpo", "300-W")]
    return (f"2D-FAN reaches an AUC@7% of {best['2D-FAN']:.1f}% on the 2D landmarks of the synthetic test set "
            f"(mean shape: {best['mean shape (baseline)']:.1f}%), {bins[0]:.1f} / {bins[1]:.1f} / {bins[2]:.1f}% "
            f"from frontal to profile faces. The thesis reports {min(thesis):.1f}-{max(thesis):.1f}% on real 2D "
            f"datasets with a 24M-parameter network trained for 40 epochs; only the spread across poses "
            f"({max(bins) - min(bins):.1f} points here) has a counterpart on our data.")


def fig_4_6_real(summary: pd.DataFrame, profile_column: str, curves: Mapping[str, str]) -> str:
    """Fig. 4.6 on AFLW2000-3D (``curves``: role ``pipeline`` / ``alone`` / ``none`` -> curve name)."""
    rows = summary.set_index("curve")
    allp, prof = rows["mean NME (%)"], rows[profile_column]
    images = int(summary["images"].iloc[0])
    pipe, alone, none = (curves.get(k) for k in ("pipeline", "alone", "none"))
    text = (f"`fa-lib convert-ls3dw`, guided by 2D-FAN (the thesis's pipeline), converted {images} AFLW2000-3D faces "
            f"to 3D landmarks {allp[pipe]:.2f}% (mean NME, all poses) from the dataset's 3D annotations "
            f"({int(rows.loc[pipe, 'failures (NME > 7%)'])} of {images} above 7%; the thesis set aside 19 failures, "
            f"0.9% of AFLW2000-3D)")
    if alone in rows.index:
        text += f"; 3D-FAN without guide {allp[alone]:.2f}%"
    text += f"; 2D-FAN's points taken as 3D {allp[none]:.2f}%."
    if np.isfinite(prof[none]):
        text += (f" On profile faces (|yaw| 60-90): the pipeline {prof[pipe]:.2f}%, 2D-FAN's points {prof[none]:.2f}%. "
                 "AFLW2000-3D's annotations are model fits, not exact: part of every error is theirs.")
    return text


def table_4_2(df: pd.DataFrame) -> str:
    ours = [cell(df, "3D-FAN", b) for b in YAW_BIN_LABELS]
    paper = [paper_value("4.2", "3D-FAN", b) for b in YAW_BIN_LABELS]
    drop_ours = (max(ours[:2]) - ours[2]) / max(max(ours[:2]), 1e-9)
    drop_paper = (max(paper[:2]) - paper[2]) / max(paper[:2])
    return (f"3D-FAN: {ours[0]:.1f} / {ours[1]:.1f} / {ours[2]:.1f}% AUC@7% for |yaw| 0-30 / 30-60 / 60-90 "
            f"(thesis {paper[0]} / {paper[1]} / {paper[2]}%). From the better of the first two bins to the "
            f"profile bin we lose {100 * drop_ours:.0f}% of the AUC, the thesis {100 * drop_paper:.0f}%.")


def table_4_3(df: pd.DataFrame) -> str:
    ours = {lvl: cell(df, f"noise {lvl}%", "all") for lvl in (0, 10, 20, 30)}
    paper = {lvl: paper_mean_over_bins("4.3", f"noise {lvl}%") for lvl in (0, 10, 20, 30)}
    return (f"AUC@7% over all poses for 0 / 10 / 20 / 30% box noise: {ours[0]:.1f} / {ours[10]:.1f} / "
            f"{ours[20]:.1f} / {ours[30]:.1f}% (thesis, mean of its bins: {paper[0]:.1f} / {paper[10]:.1f} / "
            f"{paper[20]:.1f} / {paper[30]:.1f}%). Up to the training noise (20%) we lose {ours[0] - ours[20]:.1f} "
            f"points (thesis {paper[0] - paper[20]:.1f}); from 20 to 30% another {ours[20] - ours[30]:.1f} "
            f"(thesis {paper[20] - paper[30]:.1f}).")


def table_4_4(df: pd.DataFrame, labels: Sequence[str], *, width: int, input_size: int, profile: str,
              skipped: Sequence[str]) -> str:
    auc = {lab: cell(df, lab, "all") for lab in labels}
    nme = {lab: cell(df, lab, "mean NME (%)") for lab in labels}
    params = {lab: cell(df, lab, "#params (ours, this scale)") for lab in labels}
    paper = {lab: paper_mean_over_bins("4.4", lab) for lab in labels}
    big, small = labels[0], labels[-1]
    text = (f"At this scale the {len(labels)} networks run have {params[small] / 1e6:.2f}M to "
            f"{params[big] / 1e6:.2f}M parameters (width {width}, the thesis's 256; input {input_size} px). "
            "AUC@7% / mean NME over all poses: "
            + ", ".join(f"{lab} layout {auc[lab]:.1f}% / {nme[lab]:.2f}%" for lab in labels)
            + ". The thesis (AUC, mean of its bins): "
            + ", ".join(f"{lab} {paper[lab]:.1f}%" for lab in labels) + ".")
    if skipped:
        text += f" The {', '.join(skipped)} rows were not run at the {profile} budget (paper values only)."
    return text


def fig_4_6(summary: pd.DataFrame, profile_column: str, curves: Mapping[str, str], *,
            cross_checked: int, max_difference: float) -> str:
    """``curves``: role (``pts``, ``pipeline``, ``alone``, ``none``) -> curve name."""
    rows = summary.set_index("curve")
    allp, prof = rows["mean NME (%)"], rows[profile_column]
    images = int(summary["images"].iloc[0])
    pts, pipe, alone, none = (curves.get(k) for k in ("pts", "pipeline", "alone", "none"))
    text = (f"`fa-lib convert-ls3dw` converted {images} test faces from their 2D annotations to 3D landmarks "
            f"{allp[pts]:.2f}% (mean NME, all poses) from the true ones")
    if pipe in rows.index:
        text += (f"; without annotations, guided by 2D-FAN (the thesis's pipeline), {allp[pipe]:.2f}% "
                 f"({int(rows.loc[pipe, 'failures (NME > 7%)'])} of {images} faces above 7% NME; the thesis set "
                 "aside 19 failures, 0.9% of AFLW2000-3D, without stating its criterion)")
    if alone in rows.index:
        text += f"; 3D-FAN without guide {allp[alone]:.2f}%"
    text += f"; the 2D labels taken as 3D {allp[none]:.2f}%."
    if np.isfinite(prof[none]):
        text += (f" On profile faces (|yaw| 60-90), where the 2D and 3D markups differ most, the 2D labels are "
                 f"{prof[none]:.2f}% off the 3D ones; converting the annotations gives {prof[pts]:.2f}%")
        text += f", the pipeline {prof[pipe]:.2f}%." if pipe in rows.index else "."
    text += (f" On the {cross_checked} faces cross-checked, the tool's files agree with 2D-to-3D-FAN run directly "
             f"on the same crops to {max_difference:.4f} px. Unlike AFLW2000-3D, our 3D ground truth is exact, so "
             "the whole error is the conversion's.")
    return text


def fig_4_10(auc_all: Mapping[float, float], native: float, input_size: int) -> str:
    sizes = sorted(auc_all)
    at30 = auc_all.get(30.0, float("nan"))
    if not math.isnan(at30):
        text = (f"Over all poses, 3D-FAN keeps {at30:.1f}% AUC@7% at 30 px faces and {auc_all[sizes[0]]:.1f}% at "
                f"{sizes[0]:.0f} px, against {native:.1f}% on the native images.")
    else:
        text = (f"Over all poses, 3D-FAN scores {auc_all[sizes[0]]:.1f}% at {sizes[0]:.0f} px against "
                f"{native:.1f}% natively.")
    return text + (f" Note that the network's own input is {input_size} px, in which a face spans about "
                   f"{input_size // 2} px: anything larger is down-sampled anyway.")


def fig_4_12(mean_nme: Mapping[str, float]) -> str:
    z, xy, xyz, flat = (mean_nme[k] for k in ("z (depth)", "x, y (3D-FAN)", "x, y, z", "z = 0 baseline"))
    return (f"Mean NME of the depth alone: {z:.2f}% (a flat-face guess z = 0: {flat:.2f}%); of (x, y): {xy:.2f}%; "
            f"of (x, y, z): {xyz:.2f}%.")


def speed(fps: Mapping[str, float], thesis_scale_fps: Mapping[str, float] | None, labels: Sequence[str], *,
          profile: str, threads: int, thesis_fps: Mapping[str, tuple]) -> str:
    (big_lo, big_hi), (small_lo, small_hi) = thesis_fps.values()
    slow, fast = fps[labels[0]], fps[labels[-1]]
    text = (f"On this machine (batch 1, {threads} threads) the {profile}-scale networks run at {slow:.0f} frames/s "
            f"({labels[0]} layout) to {fast:.0f} frames/s ({labels[-1]} layout), a ratio of {fast / slow:.1f}; the "
            f"thesis's Titan X gives {big_lo:g}-{big_hi:g} and {small_lo:g} frames/s, a ratio of about "
            f"{(small_lo + small_hi) / (big_lo + big_hi):.0f}.")
    if thesis_scale_fps:
        text += (f" At the thesis's own scale this machine manages {thesis_scale_fps[labels[0]]:.1f} ({labels[0]}) and "
                 f"{thesis_scale_fps[labels[-1]]:.1f} ({labels[-1]}) frames/s.")
    return text


def real_faces(df: pd.DataFrame, real_training: bool = False) -> str:
    means = df[df["row"] == "mean"].set_index("column")["reproduced"]
    parts = [f"{col.replace('NME % — ', '')}: {val:.1f}%" for col, val in means.items() if not math.isnan(val)]
    if real_training:
        return ("Mean NME on the four real photos — " + "; ".join(parts) + ". Both 2D-FAN (real 300-W-LP) and "
                "dlib's ERT (real 300-W) were trained on real faces. Four photos are an anecdote, not a ranking.")
    return ("Mean NME on the four real photos — " + "; ".join(parts) + ". Our 2D-FAN never saw a real face and "
            "was trained on synthetic faces only; dlib's ERT was trained on real 300-W faces. Four photos are an "
            "anecdote: they show the synthetic-to-real gap, not a ranking.")


def describe_depth_check(check) -> str:
    """Markdown: whether 300-W-LP's landmark depth could be rebuilt from its 3DDFA fits (the depth
    network's targets on real data), with the measurements of :func:`fa_lib.experiments.ch4.data.depth_fit_check`."""
    if "fit_error" not in check:
        return (f"300-W-LP stores only the projections of its 3D landmarks and their depth could not be rebuilt: "
                f"{check.get('why', 'not checked')}; the depth network (section 4.8) and the results that need it do "
                "not run.")
    measured = (f"the landmarks of {check['faces']} 300-W-LP faces rebuilt from {check['source']} miss the stored "
                f"projections by a median {check['fit_error']:.2%} of the face size")
    if "aflw2000_depth_error" in check:
        measured += (f", and on {check['aflw2000_faces']} AFLW2000-3D faces the rebuilt depth misses the stored "
                     f"depth by a median {check['aflw2000_depth_error']:.2%}")
    if check["usable"]:
        return (f"300-W-LP stores only the projections of its 3D landmarks: {measured} (tolerance "
                f"{check['tolerance']:.0%}), so the depth network (section 4.8) trains on the rebuilt depth and is "
                "tested on AFLW2000-3D.")
    return (f"300-W-LP stores only the projections of its 3D landmarks: {measured}, beyond the tolerance of "
            f"{check['tolerance']:.0%}, so the depth network (section 4.8) and the results that need it do not run.")


def data_source(data) -> str:
    """Markdown: which data this run of the chapter used (synthetic stand-ins or the real sets under a
    data root, and what was not found there)."""
    if not data.real:
        return ("Synthetic data: every network trains on the 300-W-LP stand-in and is tested on the yaw-balanced "
                "stand-in (no data root was given).")
    described = data.describe()
    lines = [f"Real data: training on {described['train']}; 3D tests on {described['test']}.",
             "LS3D-W's files carry no head pose: each face's |yaw| bin is that of the pose fitted to its landmarks "
             "(the conversion tool's estimate).", describe_depth_check(data.depth_check or {})]
    if described.get("tests_2d"):
        lines.append("Table 4.1's real 2D test sets: " + "; ".join(f"{k}: {v}" for k, v in described["tests_2d"].items())
                     + ".")
    for name, why in (described.get("missing") or {}).items():
        lines.append(f"Not found: {name} ({why}).")
    return " ".join(lines)

