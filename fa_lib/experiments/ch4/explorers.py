"""Frames of the chapter's kernel-free explorers (:func:`fa_lib.widgets.frame_explorer`): one face
turned through every yaw, and test faces at decreasing resolution. Ground truth green, prediction
red (:func:`fa_lib.experiments.plotting.draw_landmarks`)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from fa_lib.data.render import RenderConfig, face_model_for, render_random_sample
from fa_lib.experiments.ch4.data import ListSamples, at_resolution, example_indices
from fa_lib.experiments.ch4.evaluation import evaluate_fan
from fa_lib.experiments.plotting import draw_landmarks


def render_pose_series(image_size: int, yaws: Sequence[float], *, identity: int = 7, seed: int = 0) -> list[dict]:
    """One unseen test person rendered at each yaw, everything else (expression, light, framing,
    background) fixed; no occluders, blur or noise so that only the pose changes."""
    config = RenderConfig(size=image_size, occluder_probability=0.0, blur_probability=0.0,
                          noise_probability=0.0, roll_std=0.0, pitch_std=0.0)
    model = face_model_for(config)
    return [render_random_sample((seed, 0x9E5), config, identity=identity, yaw=float(y), namespace=2,
                                 model=model, source="pose series") for y in yaws]


def pose_explorer_frames(ctx, *, yaws: Sequence[float] = tuple(range(-90, 91, 15))
                         ) -> tuple[list[Figure], list[str], pd.DataFrame]:
    """Frames of the pose explorer: 2D-FAN and 3D-FAN on one identity turned from -90 to 90 degrees
    of yaw (left: 2D-FAN vs the 2D labels whose jaw follows the silhouette; right: 3D-FAN vs the
    projected 3D landmarks). Returns (figures, labels, NME per yaw)."""
    samples = ListSamples(render_pose_series(ctx.setup.image_size, yaws, seed=ctx.seed))
    common = dict(box_noise=0.0, device=ctx.device)
    ev2 = evaluate_fan(ctx.network("2D-FAN").model, samples, ctx.setup, landmarks="2d", **common)
    ev3 = evaluate_fan(ctx.network("3D-FAN").model, samples, ctx.setup, landmarks="3d", **common)
    frames, labels, rows = [], [], []
    for i, yaw in enumerate(yaws):
        fig = Figure(figsize=(6.4, 3.3))
        image = samples[i]["image"]
        for k, (name, ev) in enumerate((("2D-FAN", ev2), ("3D-FAN", ev3))):
            draw_landmarks(fig.add_subplot(1, 2, k + 1), image, ev.predictions[i], ev.ground_truth[i],
                           title=f"{name}, NME {100 * ev.nme[i]:.1f}%")
        fig.suptitle(f"yaw {yaw:+.0f} deg (red: prediction, green: ground truth)", fontsize=9)
        fig.tight_layout()
        frames.append(fig)
        labels.append(f"yaw {yaw:+.0f}")
        rows.append({"yaw": yaw, "2D-FAN NME (%)": 100 * ev2.nme[i], "3D-FAN NME (%)": 100 * ev3.nme[i]})
    return frames, labels, pd.DataFrame(rows)


def resolution_explorer_frames(ctx, *, sizes: Sequence[int] | None = None, count: int = 3
                               ) -> tuple[list[Figure], list[str]]:
    """Frames of the resolution explorer: a few test faces (one per yaw bin) at each face size,
    what 3D-FAN sees after the down- and up-scaling of Fig. 4.10 and what it predicts."""
    sizes = list(sizes or sorted(ctx.setup.resolutions))
    idx = example_indices(ctx.data.test_bins, 1)[:count]
    base = ListSamples([ctx.data.test[i] for i in idx])
    frames, labels = [], []
    for px in sizes:
        samples = at_resolution(base, px)
        ev = evaluate_fan(ctx.network("3D-FAN").model, samples, ctx.setup, landmarks="3d", seed=ctx.seed,
                          device=ctx.device)
        fig = Figure(figsize=(2.3 * len(idx), 2.6))
        for k in range(len(idx)):
            draw_landmarks(fig.add_subplot(1, len(idx), k + 1), samples[k]["image"], ev.predictions[k],
                           ev.ground_truth[k], title=f"NME {100 * ev.nme[k]:.1f}%")
        fig.suptitle(f"face size {px} px (down-scaled, then up-scaled back)", fontsize=9)
        fig.tight_layout()
        frames.append(fig)
        labels.append(f"{px} px")
    return frames, labels
