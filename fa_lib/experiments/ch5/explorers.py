"""The binarization explorer: one precomputed frame per Fig. 5.3 block, real and binary, for the
book's slider (``fa_lib.widgets.frame_explorer``; works without a kernel)."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch
from matplotlib.figure import Figure

from fa_lib.experiments.ch5.context import Chapter5, explorer_networks
from fa_lib.experiments.ch5.data import predict_outputs
from fa_lib.experiments.ch5.figures import crop_image, crop_points, example_indices
from fa_lib.experiments.ch5.narrative import thread_label
from fa_lib.experiments.ch5.packed import PackedInferenceResult, measured
from fa_lib.experiments.ch5.scale import NetSpec
from fa_lib.experiments.plotting import draw_landmarks


def _speed_text(packed: PackedInferenceResult, net: NetSpec, label: str, threads: int) -> tuple[str, str, dict | None]:
    """(title line, slider label, speed) of a network from the packed-inference measurement."""
    tl = thread_label(threads)
    speed = packed.speed(net, threads)
    if speed is None:  # not timed (the explorer's networks changed since the measurement)
        return "", label, None
    if speed["packed_ms"] is not None:
        more = "".join(f"; {packed.speed(net, t)['speedup']:.1f}x with {thread_label(t)}" for t in packed.threads[1:])
        return (f"\npacked ({packed.isa}): {speed['packed_ms']:.2f} ms/image vs float training forward "
                f"{speed['float_ms']:.2f} ms/image = {speed['speedup']:.1f}x ({tl}){more}",
                f"{label}: packed {speed['speedup']:.1f}x faster than float ({tl})", speed)
    twin = packed.speed(replace(net, binary=True), threads)
    vs = (f"; the packed binary twin: {twin['packed_ms']:.2f} ms/image"
          if twin is not None and twin["packed_ms"] is not None else "")
    return (f"\nreal: float forward {speed['float_ms']:.2f} ms/image ({tl}){vs}",
            f"{label}: float {speed['float_ms']:.2f} ms/image ({tl})", speed)


def binarization_explorer_frames(ctx: Chapter5, per_bin: int = 1, packed: PackedInferenceResult | None = None
                                 ) -> tuple[list[Figure], list[str], pd.DataFrame]:
    """One frame per (block, real/binary): the same test faces with the network's landmarks (red) over
    the ground truth (green) and the sum of its heatmaps; plus the table of the frames' AUCs.

    Every frame also shows the network's inference speed measured by table 5.packed_inference
    (``packed``; default the chapter's measurement, made now if needed): for a binary network its
    packed module (XNOR/popcount kernels) against its float training forward, for a real twin its
    float forward. The slider labels carry the speed-up."""
    packed = packed if packed is not None else measured(ctx)
    threads = packed.threads[0]
    tl = thread_label(threads)
    data = ctx.prepared("test")
    idx = example_indices(ctx, per_bin)
    frames, labels, rows = [], [], []
    for label, r in explorer_networks(ctx):
        speed_title, speed_label, speed = _speed_text(packed, r.net, label, threads)
        heat = torch.sigmoid(predict_outputs(r.model, data["image"][idx], device=ctx.device))
        fig = Figure(figsize=(2.0 * len(idx), 4.5))
        for k, i in enumerate(idx):
            draw_landmarks(fig.add_subplot(2, len(idx), k + 1), crop_image(data, i),
                           prediction=crop_points(r.predictions[i], i, data),
                           ground_truth=crop_points(data["landmarks_image"][i].numpy(), i, data),
                           title=f"NME {100 * r.nme[i]:.1f}%", zoom=False)
            ax = fig.add_subplot(2, len(idx), len(idx) + k + 1)
            ax.imshow(heat[k].sum(0).numpy(), cmap="magma", interpolation="nearest")
            ax.set_axis_off()
        fig.suptitle(f"{label}: AUC@7% {r.auc:.1f}, mean NME {r.mean_nme:.1f}% on the test set, "
                     f"{r.parameters / 1e3:.0f}k parameters{speed_title}", fontsize=9)
        fig.tight_layout()
        frames.append(fig)
        labels.append(speed_label)
        nan = float("nan")
        rows.append({"network": label, "AUC": r.auc, "NME (%)": r.mean_nme, "#params(k)": r.parameters / 1e3,
                     "train ms per step": 1e3 * r.seconds_per_step,
                     f"float ms per image ({tl})": speed["float_ms"] if speed else nan,
                     f"packed ms per image ({tl})": (speed["packed_ms"] if speed and speed["packed_ms"] is not None
                                                     else nan),
                     f"packed speed-up ({tl})": (speed["speedup"] if speed and speed["speedup"] is not None else nan)})
    return frames, labels, pd.DataFrame(rows)
