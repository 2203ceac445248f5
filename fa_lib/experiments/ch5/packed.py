"""Packed inference: the chapter's trained binary networks on the bit-packed XNOR/popcount kernels.

Binary convolutions exist to run as XNOR and bit counts on bit-packed data (thesis 5.2.1 and section
5.4, eq. 5.1-5.2; Fig. 5.4: the 1-bit model size). :func:`packed_inference_table` (registered as
table ``5.packed_inference``) converts every trained binary network with
:func:`fa_lib.kernels.packed.pack_model`, checks its outputs against the training-time forward,
compares the file sizes and times both side by side; :func:`fig_5_packed_inference` (figure
``5.packed_inference``) plots the timings.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from fa_lib import metrics
from fa_lib.experiments.ch5.context import Chapter5, RunResult, explorer_networks
from fa_lib.experiments.ch5.data import outputs_to_landmarks
from fa_lib.experiments.ch5.figures import write_figure
from fa_lib.experiments.ch5.narrative import describe_packed_inference, thread_label
from fa_lib.experiments.ch5.scale import BLOCK_SPECS, LANDMARKS, OURS, OURS_IMPROVED, NetSpec
from fa_lib.experiments.registry import ThesisResult, thesis_figure, thesis_table
from fa_lib.kernels import packed as packed_mod
from fa_lib.kernels import xnor
from fa_lib.kernels.bench import interleaved_min_ms
from fa_lib.models.binary import BinaryConv2d
from fa_lib.models.fan import FAN
from fa_lib.results import merge_with_paper

#: tolerance of "the packed outputs match the training-time forward": max |difference| of the heatmaps
#: relative to the largest |heatmap value| (the popcounts are exact; only the real layers' float sums
#: may be ordered differently, see fa_lib.kernels.packed)
PACKED_TOLERANCE = 1e-4
PACKED_TABLE_ID = "5.packed_inference"
TRAINS = ("nothing of its own beyond the explorer's networks: every Fig. 5.3 block, binary and its real twin, "
          "the notebook's seed (scale.BLOCK_SPECS), and the binary improved hourglass (scale.OURS_IMPROVED); "
          "packs the largest stage-wise stack already trained (Table 5.15)",)


def packed_networks(ctx: Chapter5) -> list[tuple[str, RunResult]]:
    """(label, run) of the trained binary networks whose packed inference is checked and timed: every
    binary block of Fig. 5.3 in the standard hourglass (Table 5.2), the improved hourglass (Fig. 5.6,
    Table 5.14) and the stacked network of Table 5.15 with the most stacks used so far (a stack is
    a chain of stage-wise runs: it is not trained here just to be timed). Labels of the blocks are
    those of the binarization explorer."""
    out = [(f"{name}, binary", ctx.run(spec)) for name, spec in BLOCK_SPECS.items()]
    out.append(("hierarchical, binary, improved HG", ctx.run(OURS_IMPROVED)))
    stacked = [r for r in ctx.trained()
               if r.recipe == LANDMARKS and r.net.stacks > 1 and replace(r.net, stacks=1) == OURS]
    if stacked:
        best = max(stacked, key=lambda r: (r.net.stacks, r.seed == ctx.seed))
        out.append((f"hierarchical, binary, {best.net.stacks} stacks", best))
    return out


def conv_macs(model: nn.Module, input_size: int, in_channels: int | None = None) -> dict[str, int]:
    """Multiply-accumulates per image of every convolution of ``model`` (name -> MACs) for one forward
    of an ``input_size`` px image with ``in_channels`` (default ``model.in_channels``) channels:
    output pixels x output channels x input channels per group x taps."""
    in_channels = int(model.in_channels if in_channels is None else in_channels)
    macs: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def count(mod, inputs, output, name=name):
                per_output = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
                macs[name] = macs.get(name, 0) + output[0].numel() * per_output
            hooks.append(module.register_forward_hook(count))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs


def interleaved_min_seconds(candidates: Mapping[Any, Callable[[], object]], repeats: int) -> dict[Any, float]:
    """Minimum wall time (s) of each candidate over ``repeats`` rounds. After one untimed warm-up call
    each, every round calls every candidate once in turn, so a change of the machine's load (it is
    shared) hits all candidates alike; the minimum is the least-disturbed call (the kernels' benchmark
    timer, :func:`fa_lib.kernels.bench.interleaved_min_ms`, with one call per round)."""
    keys = list(candidates)
    ms = interleaved_min_ms([candidates[key] for key in keys], max(1, int(repeats)), burst=1)
    return {key: value / 1e3 for key, value in zip(keys, ms)}


@dataclass
class PackedInferenceResult:
    """What :func:`packed_inference_table` measured: the long table (row, column, paper, reproduced),
    ``display`` (one row per network), the ISA of the kernels, the thread counts timed and the raw
    ``measurements`` per network (keyed by :class:`~fa_lib.experiments.ch5.scale.NetSpec`)."""

    table_id: str
    table: pd.DataFrame
    display: pd.DataFrame
    path: Any
    isa: str
    threads: tuple[int, ...]
    batch: int
    measurements: dict[NetSpec, dict[str, Any]]
    load: dict[int, float] = field(default_factory=dict)  # load average before the timings, per thread count
    tolerance: float = PACKED_TOLERANCE

    def speed(self, net: NetSpec, threads: int | None = None) -> dict[str, float] | None:
        """``{"float_ms", "packed_ms", "speedup"}`` per image of ``net`` at ``threads`` (default: the
        first thread count timed); ``packed_ms``/``speedup`` are None for a real network; None if
        ``net`` was not timed."""
        m = self.measurements.get(net)
        if m is None:
            return None
        timing = m["timing"].get(self.threads[0] if threads is None else int(threads))
        return None if timing is None else dict(timing)

    def twin_speed(self, net: NetSpec, threads: int | None = None) -> dict[str, float] | None:
        """:meth:`speed` of the real twin of the binary network ``net`` (None if it was not timed)."""
        return self.speed(replace(net, binary=False), threads)


# --------------------------------------------------------------------------------------------------
# measuring one network


def _compare_outputs(model: nn.Module, model_cl: nn.Module, packed: nn.Module, packed_nchw: nn.Module,
                     images: torch.Tensor, matrix: torch.Tensor, decoder: str = "quarter") -> dict[str, Any]:
    """Heatmaps of the training forward (NCHW and channels-last), of the packed module and of the
    packed module with NCHW real layers on every image: max differences and decoded landmarks.

    The packed module runs its real layers (stem, heads) on channels-last tensors, and PyTorch's float
    forward itself does not give bit-identical sums in the two layouts; a sign taken right at a
    threshold can then flip. So the training forward is run in both layouts: NCHW (as trained) and
    channels-last (the packed module's real-layer layout); ``packed_nchw`` (``real_layers="nchw"``)
    runs those layers as trained and is compared with NCHW; ``model_cl`` is ``model`` in channels-last.
    ``nme_f``/``nme_p`` use the chapter's ``decoder``, like every accuracy of the chapter."""
    max_diff, max_diff_cl, max_diff_nchw, max_abs = 0.0, 0.0, 0.0, 0.0
    heat_f, heat_cl, heat_p, heat_pn = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            x = images[i:i + 64]
            out_f, out_p, out_pn = model(x), packed(x), packed_nchw(x)
            out_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
            for a, b, c, d in zip(out_f, out_p, out_cl, out_pn):
                max_diff = max(max_diff, float((a - b).abs().max()))
                max_diff_cl = max(max_diff_cl, float((c - b).abs().max()))
                max_diff_nchw = max(max_diff_nchw, float((a - d).abs().max()))
                max_abs = max(max_abs, float(a.abs().max()))
            heat_f.append(out_f[-1])
            heat_p.append(out_p[-1].contiguous())
            heat_cl.append(out_cl[-1].contiguous())
            heat_pn.append(out_pn[-1].contiguous())
    # landmarks by the official quarter-pixel rule whatever the chapter's decoder: "the same landmark"
    # here means the same heatmap peak, so a last-bit difference of two forwards is not counted as one
    return {"max_diff": max_diff, "max_diff_cl": max_diff_cl, "max_diff_nchw": max_diff_nchw, "max_abs": max_abs,
            "pred_f": outputs_to_landmarks(torch.cat(heat_f), matrix),
            "pred_p": outputs_to_landmarks(torch.cat(heat_p), matrix),
            "pred_cl": outputs_to_landmarks(torch.cat(heat_cl), matrix),
            "pred_pn": outputs_to_landmarks(torch.cat(heat_pn), matrix),
            "acc_f": outputs_to_landmarks(torch.cat(heat_f), matrix, decoder),
            "acc_p": outputs_to_landmarks(torch.cat(heat_p), matrix, decoder)}


def _differing(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.any(a != b, -1).sum())


def _compare_fast(packed: nn.Module, fast: nn.Module, images: torch.Tensor, matrix: torch.Tensor,
                  decoder: str) -> dict[str, Any]:
    """The packed network with its real layers rewritten for speed (``real_layers="fast"``: BN folded, oneDNN
    conv + ReLU) against the exact packing: largest |difference| of the last stack's heatmaps, their
    landmarks (quarter-pixel rule, as :func:`_compare_outputs`) and the chapter decoder's."""
    max_diff, heat_p, heat_fast = 0.0, [], []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            x = images[i:i + 64]
            a, b = packed(x)[-1].contiguous(), fast(x)[-1]
            max_diff = max(max_diff, float((a - b).abs().max()))
            heat_p.append(a)
            heat_fast.append(b)
    heat_p, heat_fast = torch.cat(heat_p), torch.cat(heat_fast)
    return {"max_diff": max_diff, "pred_p": outputs_to_landmarks(heat_p, matrix),
            "pred_fast": outputs_to_landmarks(heat_fast, matrix),
            "acc_fast": outputs_to_landmarks(heat_fast, matrix, decoder)}


def _measure_binary(label: str, r: RunResult, packed: nn.Module, model: nn.Module, isa: str, images, matrix, gt,
                    box, batch: torch.Tensor, input_size: int, file: Path, decoder: str = "quarter",
                    fast: nn.Module | None = None) -> dict[str, Any]:
    """Everything measured about one packed binary network, except its speed (``fast``: the same packing
    with fast real layers, compared with it)."""
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    packed_nchw = packed_mod.pack_model(model, isa=isa, real_layers="nchw")
    out = _compare_outputs(model, model_cl, packed, packed_nchw, images, matrix, decoder)
    del model_cl, packed_nchw
    fast_out = _compare_fast(packed, fast, images, matrix, decoder) if fast is not None else None
    pred_f, pred_p, pred_cl, pred_pn = out["pred_f"], out["pred_p"], out["pred_cl"], out["pred_pn"]
    peak = max(out["max_abs"], 1e-12)
    # -- size on disk, and the file gives the same network back
    report = packed_mod.compression_report(model, file)
    loaded = packed_mod.load_packed(file, model=FAN(**model.config), isa=isa)
    with torch.no_grad():
        round_trip = all(torch.equal(a, b) for a, b in zip(loaded(batch), packed(batch)))
    # -- which convolutions run packed (a binary conv still present in the packed module did not)
    macs = conv_macs(model, input_size)
    binary = {n for n, m in model.named_modules() if isinstance(m, BinaryConv2d)}
    left_float = {n for n, m in packed.named_modules() if isinstance(m, BinaryConv2d)}
    packed_macs = sum(v for n, v in macs.items() if n in binary and n not in left_float)
    return {
        "label": label, "run": r.summary(), "binary": True, "max_abs_diff": out["max_diff"],
        "relative_diff": out["max_diff"] / peak, "differing_landmarks": _differing(pred_f, pred_p),
        "max_abs_diff_channels_last": out["max_diff_cl"], "relative_diff_channels_last": out["max_diff_cl"] / peak,
        "differing_landmarks_channels_last": _differing(pred_cl, pred_p),
        "float_layout_differing_landmarks": _differing(pred_f, pred_cl),
        "max_abs_diff_nchw_real_layers": out["max_diff_nchw"],
        "relative_diff_nchw_real_layers": out["max_diff_nchw"] / peak,
        "differing_landmarks_nchw_real_layers": _differing(pred_f, pred_pn),
        "landmarks": int(pred_f.shape[0] * pred_f.shape[1]),
        "nme_float": 100.0 * float(np.mean(metrics.nme_box(out["acc_f"], gt, box))),
        "nme_packed": 100.0 * float(np.mean(metrics.nme_box(out["acc_p"], gt, box))),
        "conv_macs": int(sum(macs.values())), "packed_macs": int(packed_macs),
        "binary_convs": len(binary), "binary_convs_left_float": len(left_float),
        "compression": report, "round_trip_exact": bool(round_trip), "timing": {},
        **({} if fast_out is None else {
            "relative_diff_fast_real_layers": fast_out["max_diff"] / peak,
            "differing_landmarks_fast_real_layers": _differing(fast_out["pred_p"], fast_out["pred_fast"]),
            "nme_packed_fast": 100.0 * float(np.mean(metrics.nme_box(fast_out["acc_fast"], gt, box)))})}


def _time_side_by_side(floats: dict[str, nn.Module], packs: dict[str, nn.Module], batch: torch.Tensor,
                       measurements: dict[NetSpec, dict[str, Any]], threads: tuple[int, ...],
                       repeats: int, fast_packs: dict[str, nn.Module] | None = None) -> dict[int, float]:
    """Float and packed forward of each network back to back, every network in every round, at each
    thread count; fills each measurement's ``timing``; returns the load average before each count."""
    by_label = {m["label"]: net for net, m in measurements.items()}
    torch_threads = torch.get_num_threads()
    load: dict[int, float] = {}  # 1-minute load average before each thread count's timings (shared machine)
    try:
        for t in threads:
            torch.set_num_threads(int(t))  # the packed modules use torch's thread count (threads=None)
            load[int(t)] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            candidates: dict[tuple[str, str], Callable[[], object]] = {}
            for label, model in floats.items():
                candidates[(label, "float")] = lambda m=model: m(batch)
                if label in packs:
                    candidates[(label, "packed")] = lambda m=packs[label]: m(batch)
                if fast_packs and label in fast_packs:
                    candidates[(label, "packed fast")] = lambda m=fast_packs[label]: m(batch)
            best = interleaved_min_seconds(candidates, repeats)
            for label in floats:
                f_ms = 1e3 * best[(label, "float")] / len(batch)
                p_ms = 1e3 * best[(label, "packed")] / len(batch) if label in packs else None
                fast_ms = 1e3 * best[(label, "packed fast")] / len(batch) if (label, "packed fast") in best else None
                measurements[by_label[label]]["timing"][int(t)] = {
                    "float_ms": f_ms, "packed_ms": p_ms, "speedup": f_ms / p_ms if p_ms else None,
                    "packed_fast_ms": fast_ms, "speedup_fast": f_ms / fast_ms if fast_ms else None}
    finally:
        torch.set_num_threads(torch_threads)
    return load


def _cells(measurements: dict[NetSpec, dict[str, Any]], isa: str) -> list[dict[str, Any]]:
    # the binary network's packed forward against its real twin's float forward (same block, same size)
    real_of = {replace(net, binary=True): net for net, m in measurements.items() if not m["binary"]}
    cells = []
    for net, m in measurements.items():
        row = m["label"]
        if m["binary"]:
            c = m["compression"]
            values = [
                ("max |heatmap diff|", m["max_abs_diff"]),
                ("max |heatmap diff| / max |heatmap|", m["relative_diff"]),
                ("differing landmarks", m["differing_landmarks"]),
                ("max |heatmap diff| / max |heatmap|, float channels-last", m["relative_diff_channels_last"]),
                ("differing landmarks, float channels-last", m["differing_landmarks_channels_last"]),
                ("differing landmarks, float NCHW vs channels-last", m["float_layout_differing_landmarks"]),
                ("max |heatmap diff| / max |heatmap|, packed with NCHW real layers",
                 m["relative_diff_nchw_real_layers"]),
                ("differing landmarks, packed with NCHW real layers", m["differing_landmarks_nchw_real_layers"]),
                ("landmarks compared", m["landmarks"]), ("NME float (%)", m["nme_float"]),
                ("NME packed (%)", m["nme_packed"]),
                ("conv MACs packed (%)", 100.0 * m["packed_macs"] / m["conv_macs"]),
                ("float32 state_dict (kB)", c["float32_state_dict_bytes"] / 1e3),
                ("packed file (kB)", c["packed_file_bytes"] / 1e3), ("size ratio (x)", c["ratio_vs_float32"]),
                ("file round trip exact", float(m["round_trip_exact"]))]
            if "differing_landmarks_fast_real_layers" in m:
                values += [("max |heatmap diff| / max |heatmap|, fast vs exact real layers",
                            m["relative_diff_fast_real_layers"]),
                           ("differing landmarks, fast vs exact real layers", m["differing_landmarks_fast_real_layers"]),
                           ("NME packed, fast real layers (%)", m["nme_packed_fast"])]
            cells += [dict(row=row, column=column, reproduced=value) for column, value in values]
        for t, timing in m["timing"].items():
            tl = thread_label(t)
            cells.append(dict(row=row, column=f"float ms per image ({tl})", reproduced=timing["float_ms"]))
            if timing["packed_ms"] is not None:
                cells += [dict(row=row, column=f"packed ms per image ({isa}, {tl})", reproduced=timing["packed_ms"]),
                          dict(row=row, column=f"speed-up ({tl})", reproduced=timing["speedup"])]
                if timing.get("packed_fast_ms") is not None:
                    cells += [dict(row=row, column=f"packed ms per image, fast real layers ({isa}, {tl})",
                                   reproduced=timing["packed_fast_ms"]),
                              dict(row=row, column=f"speed-up, fast real layers ({tl})",
                                   reproduced=timing["speedup_fast"])]
                twin = real_of.get(net)
                if twin is not None and t in measurements[twin]["timing"]:
                    cells.append(dict(row=row, column=f"speed-up vs real twin ({tl})",
                                      reproduced=measurements[twin]["timing"][t]["float_ms"] / timing["packed_ms"]))
    return cells


# --------------------------------------------------------------------------------------------------
# the table and the figure


@thesis_table(PACKED_TABLE_ID, trains=TRAINS)
def packed_inference_table(ctx: Chapter5, isa: str | None = None, include_real: bool = True) -> ThesisResult:
    """Table 5.packed_inference: the trained binary networks on XNOR/popcount kernels (thesis 5.2.1 and
    section 5.4, eq. 5.1-5.2; Fig. 5.4: the 1-bit model size).

    Each network of :func:`packed_networks` is converted by :func:`fa_lib.kernels.packed.pack_model`
    (binary convolutions on the bit-packed C kernels of ``isa``, default the fastest this CPU runs, and
    every real layer in PyTorch) and compared with its training-time forward in eval mode on the whole
    test set (its first ``setup.packed_images`` faces if set): max |difference| of every stack's heatmaps
    (absolute and relative to the largest |value|), the number of decoded landmarks that differ, and the
    NME (eq. 4.1) of both, in NCHW as trained and with the float network in channels-last memory (see
    :func:`_compare_outputs`). Then, side by side in this process, the float training-time forward and
    the packed module are timed on the same batch of test images at each of ``setup.packed_threads``
    thread counts (all candidates interleaved in every round, minimum wall time of
    ``setup.packed_repeats`` rounds, after a warm-up), together with the float forward of the real
    twins (``include_real``, those of the explorer) for reference. Also: the packed file against the
    float32 state_dict (:func:`fa_lib.kernels.packed.compression_report`), the file's round trip
    (:func:`~fa_lib.kernels.packed.load_packed` gives the same outputs) and the share of the
    convolution MACs that run packed (the first 7x7 convolution and the 1x1 heads stay real, 5.2.1).

    Writes ``results/tables/table_5.packed_inference.csv`` (+ JSON); the result's ``data["packed"]``
    (also ``ctx.packed_inference``) is the :class:`PackedInferenceResult` the figure and the explorer use.
    """
    s = ctx.setup
    started = time.perf_counter()
    isa = xnor.resolve_isa(isa)
    nets = packed_networks(ctx)
    reals = [(label, r) for label, r in explorer_networks(ctx) if not r.net.binary] if include_real else []
    data = ctx.prepared("test")
    n = len(data) if s.packed_images is None else min(len(data), s.packed_images)
    images, matrix = data["image"][:n], data["matrix"][:n]
    gt, box = data["landmarks_image"][:n].numpy(), data["box"][:n].numpy()
    batch = images[:max(1, min(s.packed_batch, n))].contiguous()

    measurements: dict[NetSpec, dict[str, Any]] = {}
    floats: dict[str, nn.Module] = {}
    packs: dict[str, nn.Module] = {}
    fast_packs: dict[str, nn.Module] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, r) in enumerate(nets):
            model = copy.deepcopy(r.model).cpu().eval()  # the kernels are CPU code; the run may live on a GPU
            packed = packed_mod.pack_model(model, isa=isa)
            floats[label], packs[label] = model, packed
            if isinstance(model, FAN):
                fast_packs[label] = packed_mod.pack_model(model, isa=isa, real_layers="fast")
            measurements[r.net] = _measure_binary(label, r, packed, model, isa, images, matrix, gt, box, batch,
                                                  s.input_size, Path(tmp) / f"net{k}.fabin", s.decoder,
                                                  fast=fast_packs.get(label))
        for label, r in reals:
            floats[label] = copy.deepcopy(r.model).cpu().eval()
            measurements[r.net] = {"label": label, "run": r.summary(), "binary": False, "timing": {}}
        load = _time_side_by_side(floats, packs, batch, measurements, s.packed_threads, s.packed_repeats,
                                  fast_packs)

    df = pd.DataFrame(_cells(measurements, isa))
    caption = (f"Packed inference of the trained binary networks: XNOR/popcount kernels ({isa}) against the "
               f"training-time float forward, on the {len(images)} test faces; ms per image at batch {len(batch)}, "
               f"min of {s.packed_repeats} interleaved rounds")
    extra = {"isa": isa, "available_isas": xnor.available_isas(), "openmp": xnor.has_openmp(),
             "threads": list(s.packed_threads), "timing_batch": len(batch), "repeats": s.packed_repeats,
             "timer": "wall clock (time.perf_counter), minimum over interleaved rounds after one warm-up call",
             "tolerance": PACKED_TOLERANCE, "test_set": ctx.data.describe()["test"], "compared_images": n,
             "load_average_before_timing": {str(t): v for t, v in load.items()}, "cpu_count": os.cpu_count(),
             "networks": {m["label"]: m["run"] for m in measurements.values()},
             "compression": {m["label"]: m["compression"] for m in measurements.values() if m["binary"]},
             "setup": s.to_dict()}
    described = ctx.data.describe()
    path = ctx.write_table(PACKED_TABLE_ID, df, dataset=f"{described['train']} -> {described['test']}",
                           dataset_size=len(images), caption=caption, budget=s.budget(), extra=extra,
                           wall_time_s=time.perf_counter() - started)
    wide = df.pivot_table(index="row", columns="column", values="reproduced", aggfunc="first", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(df["row"])), columns=list(dict.fromkeys(df["column"])))
    wide.index.name = "network"
    result = PackedInferenceResult(PACKED_TABLE_ID, merge_with_paper(PACKED_TABLE_ID, df), wide, path, isa,
                                   tuple(int(t) for t in s.packed_threads), len(batch), measurements, load=load)
    ctx.packed_inference = result
    return ThesisResult(PACKED_TABLE_ID, "table", table=result.table, path=path,
                        runs={"packed": [r for _, r in nets], "real twins": [r for _, r in reals]},
                        notes=[describe_packed_inference(result)], data={"packed": result, "wide": wide})


def measured(ctx: Chapter5) -> PackedInferenceResult:
    """The chapter's packed-inference measurement (made now if table 5.packed_inference was not built)."""
    if ctx.packed_inference is None:
        ctx.build(f"table {PACKED_TABLE_ID}")
    return ctx.packed_inference


@thesis_figure(PACKED_TABLE_ID, trains=TRAINS)
def fig_5_packed_inference(ctx: Chapter5) -> ThesisResult:
    """Figure 5.packed_inference: ms per image of the float forward and the packed module of every
    binary network (table 5.packed_inference's timings), one panel per thread count, the speed-up
    written beside the bars."""
    result = measured(ctx)
    binary = [m for m in result.measurements.values() if m["binary"]]
    labels = [m["label"] for m in binary]
    y = np.arange(len(binary))
    fig = Figure(figsize=(4.6 * len(result.threads), 0.42 * len(binary) + 1.4))
    for k, t in enumerate(result.threads):
        ax = fig.add_subplot(1, len(result.threads), k + 1)
        f = np.array([m["timing"][t]["float_ms"] for m in binary])
        p = np.array([m["timing"][t]["packed_ms"] for m in binary])
        ax.barh(y - 0.2, f, 0.4, label="float (training forward)", color="C7")
        ax.barh(y + 0.2, p, 0.4, label=f"packed ({result.isa})", color="C0")
        for i in range(len(binary)):
            ax.text(max(f[i], p[i]) * 1.02, y[i], f"{f[i] / p[i]:.1f}x", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(labels if k == 0 else [], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.2 * float(max(f.max(), p.max())))
        ax.set_xlabel("ms per image")
        ax.set_title(f"{thread_label(t)}, batch {result.batch}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    path = write_figure(ctx, fig, "5_packed_inference", "Packed (XNOR/popcount) inference vs the float forward of the "
                        "trained binary networks, measured side by side", [],
                        {"isa": result.isa, "threads": list(result.threads), "batch": result.batch,
                         "points": {m["label"]: {str(t): v for t, v in m["timing"].items()} for m in binary}})
    return ThesisResult(PACKED_TABLE_ID, "figure", figure=fig, path=path, data={"packed": result})
