"""Evaluation protocol of the chapter (sections 4.1.3, 4.7): NME of eq. 4.1 normalised by sqrt(w*h)
of the box of the 2D landmarks, for 2D and 3D alike; AUC at 7%; the crop taken from the
ground-truth box with 10% uniform noise ("for all reported results so far, we used 10% of noise"),
the same noisy boxes for every model (one seed)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from fa_lib import metrics
from fa_lib.data.pipeline import TransformedDataset
from fa_lib.device import resolve_device
from fa_lib.experiments.ch4.data import (Ch4Data, DepthInputs, eval_augmentation, fan_inputs, ground_truth,
                                         mean_shape, mean_shape_errors, with_guides, with_points)
from fa_lib.experiments.ch4.scale import EVAL_BOX_NOISE, EVAL_SEED, Ch4Setup
from fa_lib.experiments.common import auc_by_bin
from fa_lib.heatmaps import DECODERS
from fa_lib.train import evaluate


def evaluate_fan(model: nn.Module, samples: Dataset, setup: Ch4Setup, *, landmarks: str,
                 box_noise: float = EVAL_BOX_NOISE, guide: bool = False, seed: int = 0,
                 device: Any = "auto", decoder: str | None = None):
    """Predictions (image px) and NME (eq. 4.1) of a FAN on ``samples``, crops from the
    ground-truth box perturbed by ``box_noise`` (the same boxes for every model given the seed),
    heatmaps decoded with ``decoder`` (:data:`fa_lib.heatmaps.DECODERS`; None: the profile's).
    Returns a :class:`fa_lib.train.Evaluation`."""
    items = TransformedDataset(samples, fan_inputs(setup, landmarks, augment=eval_augmentation(box_noise),
                                                   guide=guide), seed=seed + EVAL_SEED)
    return evaluate(model, items, batch_size=max(setup.batch_size, 16), device=device,
                    num_workers=setup.loader_workers, decoder=decoder or setup.decoder)


@torch.no_grad()
def predict_depth(depth_net: nn.Module, samples: Dataset, points_xy: np.ndarray, setup: Ch4Setup, *,
                  box_noise: float = EVAL_BOX_NOISE, seed: int = 0, device: Any = "auto") -> np.ndarray:
    """z (image px, centred on the 68 points' mean) of every sample, from the depth network fed
    with Gaussian maps at ``points_xy`` (image px, e.g. 3D-FAN's predictions): 3D-FAN-full."""
    dev = resolve_device(device)
    depth_net.to(dev).eval()
    items = TransformedDataset(with_points(samples, points_xy, "depth_points"),
                               DepthInputs(setup, eval_augmentation(box_noise)), seed=seed + EVAL_SEED)
    out = []
    for batch in DataLoader(items, batch_size=max(setup.batch_size, 16), shuffle=False,
                            num_workers=setup.loader_workers):
        z = depth_net(batch["depth_input"].to(dev)).float().cpu().numpy()
        # depth px -> heatmap px -> image px (the crop's isotropic scale: sqrt |det|)
        m = batch["matrix"].numpy()[:, :2, :2]
        image_per_hm = 1.0 / np.sqrt(np.abs(np.linalg.det(m)))
        z = z * (setup.heatmap_size / setup.depth_input_size) * image_per_hm[:, None]
        out.append(z - z.mean(axis=1, keepdims=True))
    return np.concatenate(out).astype(np.float32)


@dataclass
class Predictions:
    """Every test-set prediction the tables and figures share (computed once per context)."""

    fan2d: Any                 # Evaluation of 2D-FAN against the 2D landmarks (None: the test set has none)
    fan3d: Any                 # 3D-FAN against the projections of the 3D landmarks
    converted_pred: Any        # 2D-to-3D-FAN guided by 2D-FAN's predictions (thesis 4.5 pipeline)
    depth_z: np.ndarray | None  # 3D-FAN-full: z (image px, centred) at 3D-FAN's points (None: no depth network)
    baseline2d: np.ndarray | None  # mean-shape NME, 2D landmarks (None: the test set has none)
    baseline3d: np.ndarray     # mean-shape NME, 3D landmarks
    bins: np.ndarray
    seconds: float
    guides_2d: np.ndarray | None = None  # 2D-FAN's points on the test set (2D-to-3D-FAN's guides)


def predict_all(models: Mapping[str, nn.Module], data: Ch4Data, setup: Ch4Setup, *, seed: int = 0,
                device: Any = "auto") -> Predictions:
    """Run every network of section 4.3 (``models``: name -> network) over the test set (10% box
    noise, one seed). On a test set without 2D annotations (LS3D-W) 2D-FAN still runs, for its points
    are 2D-to-3D-FAN's guides, but is not scored (``fan2d``, ``baseline2d`` None); without the depth
    network ``depth_z`` is None."""
    started = time.perf_counter()
    test = data.test
    scored_2d = data.has_2d_test_labels
    # without 2D annotations the crops still come from the same (3D-projection) boxes: only the points are used
    fan2d = evaluate_fan(models["2D-FAN"], test, setup, landmarks="2d" if scored_2d else "3d", seed=seed,
                         device=device)
    fan3d = evaluate_fan(models["3D-FAN"], test, setup, landmarks="3d", seed=seed, device=device)
    conv_pred = evaluate_fan(models["2D-to-3D-FAN"], with_guides(test, fan2d.predictions), setup,
                             landmarks="3d", guide=True, seed=seed, device=device)
    depth_z = None
    if "3D-FAN-full depth" in models:
        depth_z = predict_depth(models["3D-FAN-full depth"], test, fan3d.predictions, setup, seed=seed,
                                device=device)
    return Predictions(
        fan2d=fan2d if scored_2d else None, fan3d=fan3d, converted_pred=conv_pred, depth_z=depth_z,
        baseline2d=mean_shape_errors(mean_shape(data.train, "2d"), test, "2d", seed=seed) if scored_2d else None,
        baseline3d=mean_shape_errors(mean_shape(data.train, "3d"), test, "3d", seed=seed),
        bins=data.test_bins, seconds=time.perf_counter() - started, guides_2d=fan2d.predictions)


@dataclass
class DepthEvaluation:
    """3D-FAN-full (3D-FAN's points, the depth network's z) on a test set whose landmarks have depth."""

    samples: Dataset           # the test faces (the chapter's test set, or AFLW2000-3D on real data)
    fan3d: Any                 # 3D-FAN's Evaluation on them
    depth_z: np.ndarray        # (N, 68) z (image px, centred) at 3D-FAN's points
    bins: np.ndarray           # |yaw| bin of each face


def depth_errors(evaluation: DepthEvaluation) -> dict[str, np.ndarray]:
    """Fig. 4.12's errors of 3D-FAN-full, all normalised by sqrt(w*h) of the 2D box (eq. 4.1):
    z alone, (x, y) alone (3D-FAN), (x, y, z), and the flat-face guess z = 0."""
    gt3, boxes = ground_truth(evaluation.samples, "3d")
    d = metrics.face_size(boxes)
    dz = np.abs(evaluation.depth_z - gt3[..., 2]).mean(axis=1) / d
    pred3 = np.concatenate([evaluation.fan3d.predictions, evaluation.depth_z[..., None]], axis=-1)
    xyz = np.linalg.norm(pred3 - gt3, axis=-1).mean(axis=1) / d
    zero = np.abs(gt3[..., 2]).mean(axis=1) / d  # predicting z = 0 (a flat face)
    return {"z (depth)": dz, "x, y (3D-FAN)": evaluation.fan3d.nme, "x, y, z": xyz, "z = 0 baseline": zero}


def error_summary(curves: Mapping[str, np.ndarray], label: str = "curve") -> pd.DataFrame:
    """Mean NME (%) and AUC@7% (%) of each set of per-image errors."""
    return pd.DataFrame([{label: k, "mean NME (%)": 100 * float(np.mean(v)), "AUC@7% (%)": 100 * metrics.auc_at(v)}
                         for k, v in curves.items()])


def decoder_comparison(ctx, name: str = "3D-FAN") -> pd.DataFrame:
    """One trained network of the chapter evaluated with every heatmap decoder of
    :data:`fa_lib.heatmaps.DECODERS` on the test set (same crops, same heatmaps): mean NME and
    AUC@7% per |yaw| bin. What the profile's ``decoder`` knob is chosen on."""
    landmarks = "2d" if name.startswith("2D-FAN") else "3d"
    rows = {}
    for decoder in DECODERS:
        ev = evaluate_fan(ctx.network(name).model, ctx.data.test, ctx.setup, landmarks=landmarks, seed=ctx.seed,
                          device=ctx.device, decoder=decoder)
        rows[decoder] = {"mean NME (%)": 100.0 * float(np.mean(ev.nme)),
                         **{f"AUC@7% {k}": v for k, v in auc_by_bin(ev.nme, ctx.data.test_bins).items()}}
    table = pd.DataFrame(rows).T
    table.index.name = f"{name}, decoder"
    return table
