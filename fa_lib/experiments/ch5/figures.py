"""The figures of chapter 5, one registered builder each: Fig. 5.2 (learned binary 3x3 filters),
5.5 (CED curves), 5.7 (block depth), 5.8 (cardinality), 5.10 (a parsing mask), 5.11 (fitting
examples) and 5.12 (parsing examples). Ground truth is drawn green and predictions red
(:mod:`fa_lib.experiments.plotting`)."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fa_lib import geometry, metrics
from fa_lib.data.parsing import PARSING_CLASSES, PARSING_COLOURS, colourise, parsing_mask
from fa_lib.experiments.ch5.context import Chapter5, RunResult
from fa_lib.experiments.ch5.data import PreparedSet
from fa_lib.experiments.ch5.narrative import describe_sweep
from fa_lib.experiments.ch5.scale import (BOTTLENECK, OURS, OURS_REAL, LANDMARKS, PARSING, PARSING_ROWS, NetSpec,
                                          cardinality_spec, depth_spec)
from fa_lib.experiments.ch5.tables import judging_metric, seed_noise
from fa_lib.experiments.common import curve_summary, learning_curves
from fa_lib.experiments.plotting import ced_axes, draw_landmarks, landmark_grid, learning_curves_figure
from fa_lib.experiments.registry import ThesisResult, thesis_figure
from fa_lib.experiments.verdict import judge, mean_std
from fa_lib.landmarks import landmarks_68_to_pifa34
from fa_lib.models.binary import BinaryConv2d

NOTEBOOK_SEED = "the notebook's seed"


def write_figure(ctx: Chapter5, fig: Figure, fig_id: str, caption: str, runs: Sequence[RunResult] = (),
                 extra: Mapping[str, Any] | None = None):
    """``results/figures/fig_<fig_id>.png`` (+ JSON) with the chapter's provenance."""
    described = ctx.data.describe()
    info = {"networks": [r.summary() for r in runs]}
    info.update(extra or {})
    return ctx.write_figure(fig, fig_id, dataset=f"{described['train']} -> {described['test']}", caption=caption,
                            budget=ctx.setup.budget(), extra=info)


def _figure(thesis_id: str, fig: Figure, path, runs: Sequence[RunResult] = (), **kwargs: Any) -> ThesisResult:
    return ThesisResult(thesis_id, "figure", figure=fig, path=path, runs={"networks": list(runs)}, **kwargs)


# --------------------------------------------------------------------------------------------------
# Fig. 5.2: learned binary filters


def binary_filters(result: RunResult, layer: str | None = None, count: int = 64) -> tuple[np.ndarray, str, int]:
    """3x3 sign patterns of a trained binary network: (count, 3, 3) in {-1, +1} from one layer
    (default: the first binary 3x3 layer of the first hourglass), its name and the number of
    distinct 3x3 patterns among all of that layer's 2D filters (at most 2^9 = 512, thesis 5.2.1)."""
    convs = [(n, m) for n, m in result.model.named_modules() if isinstance(m, BinaryConv2d) and m.kernel_size == (3, 3)]
    if not convs:
        raise ValueError(f"{result.net.describe()} has no binary 3x3 convolution")
    name, conv = next(((n, m) for n, m in convs if n == layer), None) or next(
        ((n, m) for n, m in convs if n.startswith("m0")), convs[0])
    signs = conv.binary_weight().reshape(-1, 3, 3).cpu().numpy()
    distinct = len({tuple(s.ravel()) for s in signs})
    return signs[:count], name, distinct


@thesis_figure("5.2", trains=(f"binary proposed block, {NOTEBOOK_SEED} (scale.OURS)",))
def fig_5_2(ctx: Chapter5, count: int = 64) -> ThesisResult:
    """Fig. 5.2: learned 3x3 binary filters (white +1, black -1) of the trained "Ours, Final"."""
    result = ctx.run(OURS)
    signs, name, distinct = binary_filters(result, count=count)
    n = len(signs)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(cols * 0.55 + 0.5, rows * 0.55 + 0.9))
    for i, s in enumerate(signs):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(s, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Learned binary 3x3 filters ({name}): {distinct} distinct of 512 possible", fontsize=9)
    path = write_figure(ctx, fig, "5_2", "Examples of learned 3x3 binary filters (thesis Fig. 5.2)", [result],
                        {"layer": name, "distinct_patterns": distinct, "shown": n})
    return _figure("5.2", fig, path, [result], data={"layer": name, "distinct_patterns": distinct},
                   notes=[f"The layer {name} uses {distinct} of the 512 possible binary 3x3 patterns."])


# --------------------------------------------------------------------------------------------------
# Fig. 5.5: CED curves


@thesis_figure("5.5", trains=(f"binary and real proposed block and binary bottleneck, {NOTEBOOK_SEED} "
                              "(scale.OURS, OURS_REAL, BOTTLENECK)",))
def fig_5_5(ctx: Chapter5) -> ThesisResult:
    """Fig. 5.5: CED curves (a) on the AFLW-PIFA stand-in, all 34 points, (b) on the yaw-balanced
    faces (AFLW2000-3D stand-in), all 68 points. Binary "Ours" beside its real twin and the binary
    bottleneck, and chapter 3's CALE on the AFLW-PIFA faces when the run cache holds it (the thesis's
    curves of other authors' methods are not reproducible here)."""
    nets = [("Ours (binary)", OURS), ("Ours (real)", OURS_REAL), ("Bottleneck (binary)", BOTTLENECK)]
    runs = {label: ctx.run(net) for label, net in nets}
    panels = [("(b) yaw-balanced stand-in of AFLW2000-3D, all 68 points", lambda r: r.nme)]
    if ctx.data.pifa is not None:  # panel (a) only with an AFLW-PIFA set
        pifa = ctx.prepared("pifa")
        gt34 = pifa["landmarks_image"].numpy()
        if gt34.shape[1] == 68:
            gt34 = landmarks_68_to_pifa34(gt34)
        panels.insert(0, ("(a) AFLW-PIFA stand-in, all 34 points", lambda r: metrics.nme_box(
            landmarks_68_to_pifa34(ctx.pifa_predictions(r)), gt34, pifa["box"].numpy())))
    fig = Figure(figsize=(5 * len(panels), 4))
    ch3, cale_runs = ctx.cale() if ctx.data.pifa is not None else (None, [])
    for k, (title, errors_of) in enumerate(panels):
        curves = {label: np.asarray(errors_of(r)) for label, r in runs.items()}
        if title.startswith("(a)") and cale_runs:  # chapter 3's CALE on the same faces (run cache; the notebook's seed)
            curves["CALE (chapter 3)"] = ch3.errors(cale_runs[0], "cale", 34, visible_only=False)
        ced_axes(fig.add_subplot(1, len(panels), k + 1), curves, title=title)
    fig.tight_layout()
    path = write_figure(ctx, fig, "5_5", "Cumulative error curves (thesis Fig. 5.5) on the synthetic stand-ins",
                        list(runs.values()))
    return _figure("5.5", fig, path, list(runs.values()))


# --------------------------------------------------------------------------------------------------
# Figs. 5.7 and 5.8: depth and cardinality of the block


def _sweep_figure(ctx: Chapter5, thesis_id: str, values: Sequence[int], spec_of: Callable[[int], NetSpec],
                  key: str, caption: str, thesis_says: str) -> ThesisResult:
    rows, all_runs, by_value = [], [], {}
    for v in values:
        runs = ctx.runs_of(spec_of(v), LANDMARKS, ctx.sweep_seeds)
        all_runs += runs
        by_value[v] = runs
        mean, std, n = mean_std([r.auc for r in runs])
        nme, nme_std, _ = mean_std([r.mean_nme for r in runs])
        rows.append({key: v, "AUC": mean, "AUC std": std, "NME (%)": nme, "NME (%) std": nme_std, "runs": n,
                     "#params(M)": runs[0].parameters / 1e6,
                     "#params(M) at thesis scale": runs[0].thesis_parameters / 1e6,
                     "train ms per step": 1e3 * float(np.mean([r.seconds_per_step for r in runs]))})
    df = pd.DataFrame(rows)
    score, metric = judging_metric([all_runs])
    column = "AUC" if metric == "AUC@7%" else "NME (%)"
    noise = seed_noise(ctx, score)

    def compare(claim: str, a: int, b: int):
        return judge(claim, f"{key} {a}", [score(r) for r in by_value[a]], f"{key} {b}",
                     [score(r) for r in by_value[b]], noise=noise, metric=metric)

    # the thesis's finding: the largest setting beats the smallest; the narrative: is there any trend at
    # all (best against worst setting)? Both by the one rule.
    verdicts = [compare(thesis_says, max(values), min(values))] if len(values) > 1 else []
    means = {v: float(np.mean([score(r) for r in rs])) for v, rs in by_value.items()}
    trend = compare(f"the {key} changes the accuracy", max(means, key=means.get), min(means, key=means.get))
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot(1, 2, 1)
    ax.errorbar(df[key], df[column], yerr=df[f"{column} std"], fmt="o-", capsize=3)
    ax.set_xlabel(key)
    ax.set_ylabel("AUC@7% (%)" if column == "AUC" else "mean NME (%), lower is better")
    ax.set_xticks(list(df[key]))
    ax.grid(alpha=0.3)
    ax.set_title("accuracy", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(df[key], df["#params(M)"] * 1e3, "s-", label="parameters (k), this scale")
    ax2.set_xlabel(key)
    ax2.set_ylabel("parameters (thousands)")
    ax2.set_xticks(list(df[key]))
    ax3 = ax2.twinx()
    ax3.plot(df[key], df["train ms per step"], "^--", color="C3", label="train ms per step")
    ax3.set_ylabel("training ms per step", color="C3")
    ax2.grid(alpha=0.3)
    ax2.set_title("size and training cost", fontsize=9)
    fig.tight_layout()
    plotted = "AUC@7%" if column == "AUC" else "mean NME (AUC@7% is below the judging floor at this scale)"
    caption = f"{plotted} {caption}"
    path = write_figure(ctx, fig, thesis_id.replace(".", "_"), caption, all_runs,
                        {"points": df.to_dict(orient="records"), "verdicts": [v.to_dict() for v in verdicts]})
    return _figure(thesis_id, fig, path, all_runs, verdicts=verdicts, data={"points": df, "trend": trend,
                                                                             "caption": caption},
                   notes=[describe_sweep(df, key, trend)])


@thesis_figure("5.7", trains=("binary proposed block at every block depth of the setup, sweep seeds "
                              "(scale.depth_spec(d) for d in setup.depths)",))
def fig_5_7(ctx: Chapter5) -> ThesisResult:
    """Fig. 5.7: AUC against the depth of the proposed block (widths halve at each level, so the
    parameter count stays about constant)."""
    return _sweep_figure(ctx, "5.7", ctx.setup.depths, depth_spec, "block depth",
                         "against the depth of the binary hierarchical block (thesis Fig. 5.7)",
                         "a deeper block is more accurate (thesis: AUC improves up to depth 6, then saturates)")


@thesis_figure("5.8", trains=("binary proposed block at every cardinality of the setup, sweep seeds "
                              "(scale.cardinality_spec(c) for c in setup.cardinalities)",))
def fig_5_8(ctx: Chapter5) -> ThesisResult:
    """Fig. 5.8: AUC against the cardinality of the proposed block (C parallel hierarchical paths)."""
    return _sweep_figure(ctx, "5.8", ctx.setup.cardinalities, cardinality_spec, "cardinality",
                         "against the cardinality of the binary hierarchical block (thesis Fig. 5.8)",
                         "more parallel paths are more accurate at about the same size (thesis: 1-2% gains)")


# --------------------------------------------------------------------------------------------------
# examples


def example_indices(ctx: Chapter5, per_bin: int = 2) -> list[int]:
    """Test faces shown by the example figures and the explorer: ``per_bin`` per yaw bin."""
    bins = ctx.test_bins
    if bins is None:
        return list(range(min(3 * per_bin, len(ctx.data.test))))
    out = []
    for b in range(3):
        out += list(np.flatnonzero(bins == b)[:per_bin])
    return [int(i) for i in out]


def crop_image(data: PreparedSet, index: int) -> np.ndarray:
    """A prepared face crop as uint8 (R, R, 3)."""
    image = data["image"][index].numpy().transpose(1, 2, 0)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def crop_points(points_image: np.ndarray, index: int, data: PreparedSet) -> np.ndarray:
    """Image-px points of face ``index`` in the px of its input crop."""
    matrix = data["matrix"][index].numpy().astype(np.float64)
    out = np.asarray(geometry.transform_points(points_image.astype(np.float64), matrix), np.float32)
    size = data["image"].shape[-1]
    return out * (size / (size // 4))


@thesis_figure("5.11", trains=(f"binary proposed block, {NOTEBOOK_SEED} (scale.OURS)",))
def fig_5_11(ctx: Chapter5, per_bin: int = 2) -> ThesisResult:
    """Fig. 5.11: fitting examples of the binary network across yaw (green ground truth, red ours)."""
    result = ctx.run(OURS)
    data = ctx.prepared("test")
    idx = example_indices(ctx, per_bin)
    fig = landmark_grid([crop_image(data, i) for i in idx],
                        [crop_points(result.predictions[i], i, data) for i in idx],
                        [crop_points(data["landmarks_image"][i].numpy(), i, data) for i in idx],
                        titles=[f"NME {100 * result.nme[i]:.1f}%" for i in idx], size=2.2)
    path = write_figure(ctx, fig, "5_11", "Fitting examples of the binary network (thesis Fig. 5.11; synthetic faces)",
                        [result], {"indices": idx})
    return _figure("5.11", fig, path, [result], data={"indices": idx})


@thesis_figure("5.10")
def fig_5_10(ctx: Chapter5, index: int = 0) -> ThesisResult:
    """Fig. 5.10: a ground-truth parsing mask made by joining the 68 landmarks (left: landmarks)."""
    sample = ctx.data.test[index]
    # LS3D-W annotates only the 3D landmarks' projections: the mask is drawn from them (as ParsingInputs does)
    points = sample["landmarks_2d"] if sample.get("landmarks_2d") is not None else sample["landmarks_3d"][:, :2]
    mask = parsing_mask(points, sample["image"].shape[:2], sample["visibility"])
    fig = Figure(figsize=(7, 3.6))
    draw_landmarks(fig.add_subplot(1, 2, 1), sample["image"], ground_truth=points, zoom=False,
                   title="68 landmarks")
    ax = fig.add_subplot(1, 2, 2)
    h, w = mask.shape[:2]
    ax.imshow(colourise(mask), extent=(0, w, h, 0), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("7-class mask", fontsize=9)
    ax.legend(handles=[Patch(color=PARSING_COLOURS[i] / 255, label=n.replace("_", " "))
                       for i, n in enumerate(PARSING_CLASSES)], fontsize=6, loc="center left",
              bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    path = write_figure(ctx, fig, "5_10", "A face-parsing mask made from the 68 landmarks (thesis Fig. 5.10)",
                        extra={"index": index})
    return _figure("5.10", fig, path, data={"index": index})


@thesis_figure("5.12", trains=(f"real and binary bottleneck and the reduced binary proposed block with a 7-class "
                               f"head, {NOTEBOOK_SEED} (scale.PARSING_ROWS with PARSING)",))
def fig_5_12(ctx: Chapter5, per_bin: int = 1) -> ThesisResult:
    """Fig. 5.12: face parsing by the real bottleneck, the binary bottleneck and binary "Ours"."""
    data = ctx.prepared("parsing")
    runs = [(label, ctx.run(net, PARSING)) for label, net in PARSING_ROWS]
    idx = example_indices(ctx, per_bin)
    cols = 2 + len(runs)
    fig = Figure(figsize=(1.9 * cols, 1.9 * len(idx) + 0.3))
    for k, i in enumerate(idx):
        image = data["image"][i].numpy().transpose(1, 2, 0)
        panels = [("input", np.clip(image, 0, 1)), ("ground truth", colourise(data["mask"][i].numpy()))]
        panels += [(label, colourise(r.parsing_pred[i])) for label, r in runs]
        for j, (title, panel) in enumerate(panels):
            ax = fig.add_subplot(len(idx), cols, k * cols + j + 1)
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if k == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = write_figure(ctx, fig, "5_12", "Face-parsing examples (thesis Fig. 5.12; synthetic faces)",
                        [r for _, r in runs], {"indices": idx})
    return _figure("5.12", fig, path, [r for _, r in runs], data={"indices": idx})


# --------------------------------------------------------------------------------------------------
# the scale section's evidence: learning curves

#: the networks drawn in figure "5.learning_curves" (label, network)
CURVE_NETWORKS = (("Ours (binary)", OURS), ("Ours (real)", OURS_REAL), ("Bottleneck (binary)", BOTTLENECK),
                  ("Bottleneck (real)", replace(BOTTLENECK, binary=False)))


@thesis_figure("5.learning_curves", trains=(f"binary and real proposed block and bottleneck, {NOTEBOOK_SEED} "
                                            "(figures.CURVE_NETWORKS)",))
def fig_learning_curves(ctx: Chapter5) -> ThesisResult:
    """Figure 5.learning_curves (the scale section's evidence, not a thesis figure): the validation
    NME (``setup.val_fraction`` of the training faces held out, no augmentation, the chapter's
    decoder) after every epoch of the binary and real "Ours" and bottleneck networks, against
    optimiser steps and training wall time. ``data["summary"]``: where the curve of every
    single-stack landmark run of the notebook's seed made so far flattened
    (:func:`fa_lib.experiments.common.curve_summary`); empty when the profile holds out no faces."""
    runs = {label: ctx.run(net) for label, net in CURVE_NETWORKS}
    curves = learning_curves({label: r.history for label, r in runs.items()})
    others = {f"{r.net.describe()} | {r.recipe.describe()}": r.history for r in ctx.trained()
              if r.seed == ctx.seed and r.net.stacks == 1 and r.recipe.task != "parsing"
              and all(r is not seen for seen in runs.values())}
    summary = curve_summary(pd.concat([curves, learning_curves(others)], ignore_index=True)) if len(curves) else \
        pd.DataFrame()
    fig = learning_curves_figure(curves, title=f"Validation NME while training ({ctx.setup.name} profile)")
    path = write_figure(ctx, fig, "5_learning_curves", "validation NME against optimiser steps and training wall "
                        "time", list(runs.values()))
    notes = [] if len(curves) else ["This profile holds out no validation faces (ch5.val_fraction = 0)."]
    return _figure("5.learning_curves", fig, path, list(runs.values()), data={"curves": curves, "summary": summary},
                   notes=notes)
