"""The tables of chapter 3 (Tables 3.3-3.6), one registered builder each.

Table 3.3: the detector alone vs CALE on 21 and 34 points, visible and all (eq. 3.3, mean and sample
std over seeds, judged by the one rule of :mod:`fa_lib.experiments.verdict`). Tables 3.4/3.5: CALE
beside the thesis's baselines (paper only) and the baselines this project can run on the same test
faces: the mean shape placed in the face box and the project's bundled 3D-FAN (its 68 points mapped
to the 34). Table 3.6 (cats and dogs): reproduced only with the user's 22-point pet annotations.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from fa_lib import metrics
from fa_lib.api import FaceAligner
from fa_lib.data.pets import PET_POINTS
from fa_lib.experiments.ch3.context import Chapter3, CaleRun
from fa_lib.experiments.common import paper_value
from fa_lib.experiments.registry import ThesisResult, thesis_table
from fa_lib.experiments.verdict import Verdict, judge, mean_std_cells, not_measurable
from fa_lib.landmarks import landmarks_68_to_pifa34
from fa_lib.results import merge_with_paper

EVERY_SEED = "CALE and its detector, every seed of the profile (Chapter3.runs_all)"
COLUMNS = (("21 points (vis.)", 21, True), ("21 points", 21, False), ("34 points (vis.)", 34, True),
           ("34 points", 34, False))
ROWS = (("CNN detector", "detector"), ("CALE", "cale"))


def write_result(ctx: Chapter3, table_id: str, cells: list[dict[str, Any]], runs: Sequence[CaleRun],
                 verdicts: list[Verdict], caption: str, notes: Sequence[str] = (),
                 data: dict[str, Any] | None = None, dataset: str | None = None) -> ThesisResult:
    df = pd.DataFrame(cells, columns=["row", "column", "reproduced"])
    described = ctx.data.describe()
    extra = {"networks": [r.summary() for r in runs], "setup": ctx.setup.to_dict()}
    path = ctx.write_table(table_id, df, dataset=dataset or f"{described['train']} -> {described['test']}",
                           dataset_size=len(ctx.data.train), caption=caption,
                           budget={f"stage {k}": ctx.setup.stage_config(k).to_dict() for k in range(4)},
                           wall_time_s=float(sum(r.train_seconds for r in runs)), extra=extra, verdicts=verdicts)
    return ThesisResult(table_id, "table", table=merge_with_paper(table_id, df), verdicts=list(verdicts),
                        path=path, runs={"CALE": list(runs)}, notes=list(notes), data=data or {})


# --------------------------------------------------------------------------------------------------
# Table 3.3


@thesis_table("3.3", trains=(EVERY_SEED,))
def table_3_3(ctx: Chapter3) -> ThesisResult:
    """Table 3.3: the CNN detector alone vs CALE (NME of eq. 3.3).

    On 21 and 34 points, visible only and all (occluded included), on the AFLW-PIFA test faces."""
    runs = ctx.runs_all()
    cells, values = [], {}
    for row, kind in ROWS:
        for column, points, visible in COLUMNS:
            v = [ctx.nme(r, kind, points, visible) for r in runs]
            values[(kind, column)] = v
            cells += mean_std_cells(row, column, v)
    verdicts = []
    for column, _, _ in COLUMNS:
        # scores: higher is better, so minus the NME
        verdicts.append(judge(f"CALE beats the detector alone ({column})", "CALE",
                              [-v for v in values[("cale", column)]], "CNN detector",
                              [-v for v in values[("detector", column)]], metric="NME (%)",
                              paper_gap=paper_value("3.3", "CNN detector", column) - paper_value("3.3", "CALE", column)))
    gain_all = [d - c for d, c in zip(values[("detector", "34 points")], values[("cale", "34 points")])]
    gain_vis = [d - c for d, c in zip(values[("detector", "34 points (vis.)")], values[("cale", "34 points (vis.)")])]
    verdicts.append(judge("CALE's gain over the detector is larger when the occluded points count (34 points, "
                          "absolute NME)", "gain on all points", gain_all, "gain on visible points", gain_vis,
                          metric="NME gain (%)", paper_gap=(5.96 - 4.97) - (3.63 - 2.96),
                          note="the thesis's own gain is larger in absolute NME (0.99 vs 0.67 points) but not "
                               "in relative terms (16.6% vs 18.5%)"))
    for column in ("34 points", "34 points (vis.)"):
        cells.append(dict(row="CALE gain over the detector", column=column,
                          reproduced=float(np.mean(values[("detector", column)]) - np.mean(values[("cale", column)]))))
    notes = ["The 21-point columns are the first 21 of CALE's 34 points (AFLW's 21 of the PIFA markup), from the "
             "same network: the thesis does not say whether it trained one network per markup.",
             f"Visible points of the test faces: {100 * ctx.ground_truth()[1].mean():.1f}% (self-occlusion and "
             "drawn occluders)."]
    return write_result(ctx, "3.3", cells, runs, verdicts,
                        "NME (%) of the detector alone and of CALE on the AFLW-PIFA stand-in (thesis Table 3.3)",
                        notes, data={"values": values})


# --------------------------------------------------------------------------------------------------
# Tables 3.4 and 3.5: CALE beside earlier methods


def mean_shape_predictions(ctx: Chapter3, points: int = 34) -> np.ndarray:
    """The mean training shape, in box-normalised coordinates, placed in every test face's box (the
    weakest baseline: what "no image evidence" scores)."""
    train = ctx.data.train
    shapes = []
    for i in range(len(train)):
        sample = train[i]
        pts = np.asarray(sample["landmarks_2d"], np.float64)[:points, :2]
        x1, y1, x2, y2 = np.asarray(sample["box"], np.float64)
        shapes.append((pts - [x1, y1]) / [max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)])
    mean = np.mean(shapes, axis=0)
    _, _, box = ctx.ground_truth(points)
    wh = box[:, 2:] - box[:, :2]
    return (box[:, None, :2] + mean[None] * wh[:, None]).astype(np.float32)


def fan3d_predictions(ctx: Chapter3) -> tuple[np.ndarray | None, str]:
    """The project's bundled 3D-FAN (trained on colour synthetic faces) on the grey test faces in
    their ground-truth boxes, its 68 points mapped to the 34 of AFLW-PIFA; (None, why) when it
    cannot run."""
    try:
        aligner = FaceAligner("3D", detector=None, device=str(ctx.device))
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        return None, f"the bundled 3D-FAN is unavailable ({error})"
    _, _, boxes = ctx.ground_truth()
    test = ctx.data.test
    out = []
    for i in range(len(test)):
        image = np.asarray(test[i]["image"])
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        faces = aligner.get_landmarks_from_batch([image], [boxes[i:i + 1]], return_details=True,
                                                 raise_errors=True)[0]
        out.append(landmarks_68_to_pifa34(np.asarray(faces.landmarks[0])[:, :2]))
    return np.stack(out).astype(np.float32), aligner.bundled.get("data", "") if aligner.bundled else ""


def _baseline_errors(ctx: Chapter3, points: int) -> dict[str, np.ndarray]:
    gt, vis, box = ctx.ground_truth(points)
    found: dict[str, np.ndarray] = {}
    mean_shape = mean_shape_predictions(ctx, points)
    found["Mean shape in the box"] = np.asarray(metrics.nme_visible(mean_shape, gt, vis, box))
    if "fan3d" not in ctx.results_cache:
        ctx.results_cache["fan3d"] = fan3d_predictions(ctx)
    fan, _ = ctx.results_cache["fan3d"]
    if fan is not None:
        found["3D-FAN, bundled, 68 -> 34 points"] = np.asarray(metrics.nme_visible(fan[:, :points], gt, vis, box))
    return {k: v[np.isfinite(v)] for k, v in found.items()}


def _comparison_table(ctx: Chapter3, table_id: str, points: int, best_other: str, paper_margin: float) -> ThesisResult:
    runs = ctx.runs_all()
    column = f"AFLW-PIFA {points} points (vis.)"
    cale = [ctx.nme(r, "cale", points, True) for r in runs]
    cells = mean_std_cells("CALE", column, cale)
    cells += mean_std_cells("CALE, all points", column, [ctx.nme(r, "cale", points, False) for r in runs])
    baselines = _baseline_errors(ctx, points)
    for label, errors in baselines.items():
        cells.append(dict(row=label, column=column, reproduced=100 * float(np.mean(errors))))
    verdicts = [not_measurable(
        f"CALE improves on the best earlier method ({best_other}) by about {paper_margin:.0f}%",
        f"{best_other} and the other earlier methods are the thesis's numbers on the real AFLW-PIFA; they are "
        "not run here", metric="NME (%)")]
    for label, errors in baselines.items():
        # the baseline is deterministic: the seeds' spread of CALE is the only noise
        verdicts.append(judge(f"CALE beats {label}", "CALE", [-v for v in cale], label,
                              [-100 * float(np.mean(errors))], metric="NME (%)", noise=0.0,
                              note="the baseline is deterministic (no seed); CALE's seed spread is the noise"))
    paper_all = paper_value("3.3", "CALE", f"{points} points")
    paper_best = paper_value(table_id, best_other, column)
    notes = [f"The thesis's text says CALE's error on all points beats every earlier method's error on visible points; "
             f"its own numbers {'agree' if paper_all < paper_best else 'contradict it'} at {points} points "
             f"(CALE all points {paper_all:.2f} vs {best_other} visible {paper_best:.2f}).",
             "Other authors' rows are the thesis's numbers on the real AFLW-PIFA (paper only); the rows marked (ours) "
             "are run here on the same synthetic test faces as CALE."]
    return write_result(ctx, table_id, cells, runs, verdicts,
                        f"NME (%) on the visible points, {points}-point AFLW-PIFA markup (thesis Table {table_id}; "
                        "synthetic grey stand-in)", notes)


@thesis_table("3.4", trains=(EVERY_SEED,))
def table_3_4(ctx: Chapter3) -> ThesisResult:
    """Table 3.4: CALE beside earlier methods on the 21 visible AFLW-PIFA points.

    The earlier methods are the thesis's numbers (paper only); the mean-shape and 3D-FAN baselines
    are run here."""
    return _comparison_table(ctx, "3.4", 21, "CCL", 54.7)


@thesis_table("3.5", trains=(EVERY_SEED,))
def table_3_5(ctx: Chapter3) -> ThesisResult:
    """Table 3.5: CALE beside earlier methods on the 34 visible AFLW-PIFA points.

    PIFA, RCPR and PAWF are the thesis's numbers (paper only); the mean-shape and 3D-FAN baselines
    are run here."""
    return _comparison_table(ctx, "3.5", 34, "PAWF", 37.3)


# --------------------------------------------------------------------------------------------------
# Table 3.6: cats and dogs


@thesis_table("3.6", trains=("CALE on the 22-point pet faces, when the annotations are under data_root",))
def table_3_6(ctx: Chapter3) -> ThesisResult:
    """Table 3.6: CALE on the 22 points of cat and dog faces (Oxford-IIIT-Pet subset).

    The thesis's annotations are not public: reproduced only from the user's ``.pts`` files
    (:mod:`fa_lib.data.pets`), otherwise the table holds the thesis's values alone."""
    claim = "CALE fits cats and dogs with the same accuracy"
    pets, reason = ctx.pets()
    if pets is None:
        verdict = not_measurable(claim, f"not reproduced: {reason}", metric="NME (%)")
        return write_result(ctx, "3.6", [], [], [verdict],
                            "NME (%) on 22 points of cat and dog faces (thesis Table 3.6): not reproduced",
                            ["Not reproduced: the thesis's 22-point annotations of Oxford-IIIT-Pet faces are not "
                             "public. With a `.pts` file of 22 points beside each image (fa_lib.data.pets), "
                             "`fa-lib reproduce --data-root` fills this table."],
                            dataset="Cats & Dogs (not available)")
    cells, per_species = [], {}
    for species in ("Cats", "Dogs"):
        v = [100 * float(np.mean(e[species])) for e in pets["errors"]]
        per_species[species] = v
        cells += mean_std_cells(species, f"{PET_POINTS} points", v)
    verdict = judge(claim + " (a difference within noise agrees)", "Cats", [-v for v in per_species["Cats"]],
                    "Dogs", [-v for v in per_species["Dogs"]], metric="NME (%)")
    return write_result(ctx, "3.6", cells, pets["runs"], [verdict],
                        "NME (%) on 22 points of cat and dog faces (thesis Table 3.6)",
                        ["The thesis's finding is an equality: 'within noise' is the outcome that agrees with it."],
                        dataset=f"Oxford-IIIT-Pet with the user's 22-point annotations under {ctx.data_root}")
