"""The text of chapter 5 written from the numbers and the verdicts (Markdown strings for the
notebook). Nothing here measures or trains: each function reads a result, a table or the context's
setup."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import pandas as pd

from fa_lib.experiments.ch5.scale import BLOCK_SPECS
from fa_lib.experiments.verdict import Verdict, describe_verdicts, summarise  # noqa: F401  (describe_verdicts re-exported)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from fa_lib.experiments.ch5.context import Chapter5


def thread_label(threads: int) -> str:
    return f"{threads} thread{'s' if threads > 1 else ''}"


def describe_setup(ctx: "Chapter5") -> str:
    """Markdown paragraph: the scale, budget and data of this run of the chapter (from the setup)."""
    s = ctx.setup
    budget = f"{s.iterations} optimiser steps" if s.iterations is not None else f"{s.epochs} epochs"
    d = ctx.data.describe()
    return (f"Profile **{s.name}**: networks take {s.input_size}x{s.input_size} px crops and output "
            f"{s.heatmap_size}x{s.heatmap_size} heatmaps; hourglass width {s.width} (thesis 256), recursion depth "
            f"{s.hg_depth} (thesis 4), stem {s.stem_channels} (thesis (64, 128)), Gaussian targets of std {s.sigma:g} "
            f"heatmap px. Each run: RMSprop, lr {s.lr:g} dropped {len(s.lr_milestones)} time(s) to "
            f"{s.lr * s.lr_gamma ** len(s.lr_milestones):.2g} (thesis: 2.5e-4 dropped four times to 5e-5), "
            f"batch {s.batch_size}, {budget}, "
            f"seeds {list(ctx.seeds)} (sweeps: {list(ctx.sweep_seeds)}). Training set: {d['train']}; "
            f"test: {d['test']}; AFLW-PIFA stand-in: {d['pifa']}.")


def count_trainings(ctx: "Chapter5") -> float:
    """How many single-network runs of the setup's budget the notebook trains (stacks and sweeps
    included, in units of one run of the base network)."""
    s = ctx.setup
    n_seeds, n_sweep = len(s.seeds), len(s.sweep_seeds)
    per_seed = 10 + 5 + 3 * 1  # Tables 5.1-5.5 networks, 5.6-5.9 + 5.14 variants, parsing (3)
    twins = 4 if s.real_twins else 0
    sweeps = (len(s.depths) - 1) + (len(s.cardinalities) - 1)
    stacks = sum(2 * s.stage_fraction * k for k in range(2, s.max_stacks + 1))
    return per_seed * n_seeds + twins + (sweeps + stacks) * n_sweep


def describe_scale_choice(ctx: "Chapter5", scale: pd.DataFrame) -> str:
    """Markdown: why the profile's scale, from the measured step times."""
    s = ctx.setup
    chosen = scale[scale["chosen"]]
    if chosen.empty:
        return ""
    t = float(chosen["CPU s per step"].iloc[0])
    runs = count_trainings(ctx)
    steps = s.iterations if s.iterations is not None else None
    lines = [f"At the chosen scale ({s.input_size} px crops, width {s.width}, hourglass depth {s.hg_depth}) one "
             f"step costs {1e3 * t:.0f} ms of CPU time. The chapter trains about {runs:.0f} runs"
             + (f" of {steps} steps, i.e. about {runs * steps * t / 60:.0f} CPU-minutes of training, "
                f"{max(1, s.workers)} run(s) at a time (about {runs * steps * t / 60 / max(1, s.workers):.0f} "
                "minutes on an otherwise idle machine; data preparation and evaluation come on top)."
                if steps else ".")]
    for _, row in scale[~scale["chosen"]].iterrows():
        ratio = float(row["CPU s per step"]) / t
        lines.append(f"{int(row['input px'])} px / width {int(row['width'])}: {ratio:.1f}x the cost"
                     + (f", so {max(1, int(steps / ratio))} steps per run in the same time." if steps else "."))
    lines.append(f"One heatmap pixel is about {100 * 2.05 / s.heatmap_size:.0f}% of the face size at "
                 f"{s.heatmap_size} px. These timings are the cost side only: the probes above compare accuracy "
                 "at equal training time. Larger crops or wider networks buy accuracy per run at the price of "
                 "fewer steps or fewer seeds, and the seeds are what make an ordering measurable.")
    return " ".join(lines[:1]) + "\n\n" + "\n".join(f"- {line}" for line in lines[1:])


def describe_training(ctx: "Chapter5", seconds: float) -> str:
    """One line: how many runs were trained by this context and how many came from the run cache."""
    trained, runs = len(ctx.newly_trained()), len(ctx.trained())
    where = ctx.runs.root if ctx.runs.root is not None else "memory only"
    return (f"{runs} runs ready in {seconds:.0f} s: {trained} trained now, {runs - trained} loaded from the run "
            f"cache ({where}).")


def describe_sweep(df: pd.DataFrame, key: str, verdict: Verdict) -> str:
    """Markdown: the best and worst setting of a depth/cardinality sweep and whether their difference
    is beyond the noise (``verdict``: best against worst, the one rule)."""
    by_auc = verdict.metric == "AUC@7%"
    column, label = ("AUC", "AUC@7%") if by_auc else ("NME (%)", "mean NME")
    score = df[column] if by_auc else -df[column]
    best, worst = df.loc[score.idxmax()], df.loc[score.idxmin()]
    text = (f"Best {key}: {int(best[key])} ({label} {best[column]:.1f}); worst: {int(worst[key])} "
            f"({worst[column]:.1f}); parameters vary from {1e3 * df['#params(M)'].min():.0f}k to "
            f"{1e3 * df['#params(M)'].max():.0f}k. ")
    if verdict.outcome == "single seed":
        return text + "No seed spread is available, so the differences cannot be judged."
    resolved = verdict.outcome == "holds"
    return text + (f"The range of {verdict.gap:.1f} points is {'larger' if resolved else 'not larger'} than two "
                   f"standard errors of the run-to-run noise ({2 * verdict.standard_error:.1f}): "
                   + ("the trend is resolved." if resolved else "no trend can be claimed at this budget."))


def describe_binarization_gap(df: pd.DataFrame) -> str:
    """Markdown: AUC lost by binarizing each block (from the explorer's table)."""
    by_auc = df["AUC"].max() >= 1.0
    parts = []
    for name in BLOCK_SPECS:
        real = df[df["network"] == f"{name}, real"]
        binary = df[df["network"] == f"{name}, binary"]
        if len(real) and len(binary):
            if by_auc:
                gap = float(real["AUC"].iloc[0]) - float(binary["AUC"].iloc[0])
            else:
                gap = float(binary["NME (%)"].iloc[0]) - float(real["NME (%)"].iloc[0])
            parts.append(f"{name}: {gap:+.1f}")
    if not parts:
        return ""
    what = ("AUC@7% lost by binarizing each block (real minus binary" if by_auc else
            "Mean NME added by binarizing each block (binary minus real, in %; AUC@7% is ~0 at this budget")
    return f"{what}, seed of the notebook): " + ", ".join(parts) + "."


def describe_packed_inference(result: Any) -> str:
    """Markdown: do the packed networks give the training forward's outputs, how fast and how small
    (``result``: the :class:`~fa_lib.experiments.ch5.packed.PackedInferenceResult`)."""
    binary = [m for m in result.measurements.values() if m["binary"]]
    if not binary:
        return "No binary network was packed."
    tolerance = result.tolerance
    worst = max(m["relative_diff"] for m in binary)
    differing = sum(m["differing_landmarks"] for m in binary)
    nme_gap = max(abs(m["nme_float"] - m["nme_packed"]) for m in binary)
    matching = [m for m in binary if m["relative_diff"] <= tolerance and m["differing_landmarks"] == 0]
    parts = [f"**{len(matching)} of {len(binary)}** trained binary networks give the training-time (NCHW) outputs "
             f"when packed (`{result.isa}` kernels, default channels-last real layers): largest heatmap difference "
             f"{worst:.1e} of the largest heatmap value (tolerance {tolerance:g}), {differing} of "
             f"{sum(m['landmarks'] for m in binary)} decoded landmarks differ, NME differs by at most {nme_gap:.2g} "
             "points."]
    for m in binary:
        if m not in matching:
            parts.append(f"Differs from the NCHW forward: {m['label']} (relative difference "
                         f"{m['relative_diff']:.1e}, {m['differing_landmarks']} landmarks differ).")
    exact_cl = [m for m in binary if m["relative_diff_channels_last"] <= tolerance
                and m["differing_landmarks_channels_last"] == 0]
    layout = [m for m in binary if m["float_layout_differing_landmarks"] > 0]
    parts.append(f"Against the same float forward run in channels-last memory (the layout of the packed "
                 f"module's real layers), **{len(exact_cl)} of {len(binary)}** match (largest relative "
                 f"difference {max(m['relative_diff_channels_last'] for m in binary):.1e}, "
                 f"{sum(m['differing_landmarks_channels_last'] for m in binary)} landmarks differ).")
    if layout:
        parts.append("The float forward alone, NCHW against channels-last, already differs for "
                     + ", ".join(f"{m['label']} ({m['float_layout_differing_landmarks']} landmarks)" for m in layout)
                     + ": PyTorch's real layers sum in a different order in the two layouts, the last bit of "
                     "an activation changes, and a sign taken exactly at a threshold flips and propagates "
                     "through the later stacks. That is float rounding of the real layers, not the kernels.")
    exact_nchw = [m for m in binary if m["relative_diff_nchw_real_layers"] == 0.0]
    parts.append(f"With the real layers run on NCHW copies (`pack_model(..., real_layers=\"nchw\")`), "
                 f"**{len(exact_nchw)} of {len(binary)}** packed networks give the training-time NCHW forward's "
                 f"heatmaps bit for bit ({sum(m['differing_landmarks_nchw_real_layers'] for m in binary)} "
                 "landmarks differ); the timings use the default channels-last real layers.")
    fast = [m for m in binary if "differing_landmarks_fast_real_layers" in m]
    if fast:
        moved = sum(m["differing_landmarks_fast_real_layers"] for m in fast)
        total = sum(m["landmarks"] for m in fast)
        gap = max(abs(m["nme_packed_fast"] - m["nme_packed"]) for m in fast)
        parts.append(f"With the real layers rewritten for speed (`pack_model(..., real_layers=\"fast\")`: batch norm "
                     f"folded, each real convolution and its ReLU one oneDNN pass), {moved} of {total} landmarks "
                     f"({100 * moved / max(total, 1):.2f}%) move and the NME changes by at most {gap:.3f} points: "
                     f"the folded layers round differently, a sign taken within rounding of its threshold flips, "
                     f"and the flip propagates (largest heatmap difference "
                     f"{max(m['relative_diff_fast_real_layers'] for m in fast):.2f} of the largest value).")
    if not all(m["round_trip_exact"] for m in binary):
        parts.append("The packed file did NOT give the same outputs back for: "
                     + ", ".join(m["label"] for m in binary if not m["round_trip_exact"]) + ".")
    for t in result.threads:
        sp = sorted((m["timing"][t]["speedup"], m["label"]) for m in binary)
        busy = result.load.get(t)
        busy = (f"; the machine's load average was {busy:.1f} on {os.cpu_count()} cores before these timings"
                if busy is not None and math.isfinite(busy) else "")
        parts.append(f"Speed-up over the float training forward with {thread_label(t)} (batch {result.batch}{busy}): "
                     f"{sp[0][0]:.1f}x ({sp[0][1]}) to {sp[-1][0]:.1f}x ({sp[-1][1]}).")
        sf = sorted((m["timing"][t]["speedup_fast"], m["label"]) for m in binary
                    if m["timing"][t].get("speedup_fast") is not None)
        if sf:
            parts.append(f"With fast real layers: {sf[0][0]:.1f}x ({sf[0][1]}) to {sf[-1][0]:.1f}x ({sf[-1][1]}).")
        real = []
        for net, m in result.measurements.items():
            twin = result.twin_speed(net, t) if m["binary"] else None
            if twin is not None:
                real.append((twin["float_ms"] / m["timing"][t]["packed_ms"], m["label"]))
        if real:
            real.sort()
            parts.append(f"Against the float forward of the real twin ({thread_label(t)}): {real[0][0]:.1f}x "
                         f"({real[0][1]}) to {real[-1][0]:.1f}x ({real[-1][1]}).")
    share = [100.0 * m["packed_macs"] / m["conv_macs"] for m in binary]
    ratio = [m["compression"]["ratio_vs_float32"] for m in binary]
    parts.append(f"{min(share):.0f}-{max(share):.0f}% of the convolution MACs run packed; the rest (the first 7x7 "
                 "convolution and the 1x1 heads, real by design, 5.2.1) and the operations that are not "
                 "convolutions (pooling, upsampling, the heads' BN, additions outside the hierarchical block) run "
                 f"in PyTorch. The float32 state_dicts are {min(ratio):.1f}-{max(ratio):.1f}x the size of the packed "
                 "files (real layers included; against float32 weights, 1-bit weights alone cannot pass 32x).")
    return " ".join(parts)


def describe_kernel_targets(targets: pd.DataFrame) -> str:
    """Markdown: which of the speed targets each machine's kernel benchmark meets."""
    if targets.empty:
        return "The kernels' benchmark has no rows for the targets."
    parts = []
    for machine, rows in targets.groupby("machine", sort=False) if "machine" in targets else [("the machine that "
                                                                                              "ran the benchmark",
                                                                                              targets)]:
        met = rows[rows["met"]]
        parts.append(f"**{len(met)} of {len(rows)}** speed targets met on {machine}: "
                     + "; ".join(f"{r['measurement']}: {r['speed-up']:.1f}x with `{r['isa']}` (target {r['target']:g}x, "
                                 f"{'met' if r['met'] else 'not met'})" for _, r in rows.iterrows()) + ".")
    return "\n\n".join(parts)


def describe_network_profile(profile: pd.DataFrame | None) -> str:
    """Markdown: where the packed network's time goes, before and after the real layers' rewrite
    (:func:`fa_lib.experiments.ch5.kernels.network_profile_table`)."""
    if profile is None or profile.empty:
        return "The kernels' benchmark has not profiled the packed network here (`fa-lib bench xnor`)."
    machine = profile.attrs.get("machine", "the benchmark's machine")
    parts = []
    for column in profile.columns:
        total = profile.loc["total", column]
        binary = sum(profile.loc[p, column] for p in profile.index if "binary" in p and pd.notna(profile.loc[p, column]))
        parts.append(f"with {column.replace(' (ms)', '')} the packed network takes **{total:.1f} ms**, "
                     f"{binary:.1f} ms ({binary / total:.0%}) of it in the binary layers")
    return f"Measured on {machine}: " + "; ".join(parts) + "."


def describe_cross_block(table: pd.DataFrame | None) -> str:
    """Markdown: whether packing the next block's input in the epilogues pays
    (:func:`fa_lib.experiments.ch5.kernels.cross_block_table`)."""
    if table is None or table.empty:
        return "Packing across blocks has not been measured here (`fa-lib bench xnor`)."
    ratios = table["speed-up of packing in the epilogues"]
    verdict = ("pays" if (ratios > 1).all() else "does not pay" if (ratios < 1).all() else "pays in some cases only")
    cases = "; ".join(f"{case}: {row.iloc[0]:.2f} ms with a separate packing pass, {row.iloc[1]:.2f} ms packed by the "
                      f"previous block ({row.iloc[2]:.2f}x)" for case, row in table.iterrows())
    return (f"Measured on {table.attrs.get('machine', 'the benchmark machine')}, packing a block's output for the block "
            f"it feeds in the epilogues of its convolutions **{verdict}**: {cases}. The outputs are the same either "
            "way; `pack_model` leaves it off unless `cross_block_packing=True`.")


def runs_table(ctx: "Chapter5") -> pd.DataFrame:
    """Every run used so far (network, recipe, seed, size, budget, score, from the cache or not)."""
    return pd.DataFrame([r.summary() for r in ctx.trained()])
