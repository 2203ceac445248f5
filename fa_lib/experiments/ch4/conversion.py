"""Fig. 4.6 through the LS3D-W construction tool (thesis 4.5, ``fa-lib convert-ls3dw``,
:mod:`fa_lib.convert_ls3dw`): test faces written to disk with their 2D annotations (and, without
them, guided by the chapter's 2D-FAN), converted by the tool, its output files read back and
measured against the renderer's true 3D landmarks (as Fig. 4.6 does against AFLW2000-3D)."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch.nn as nn
from PIL import Image
from torch.utils.data import Dataset

from fa_lib import geometry, metrics
from fa_lib.api import FaceAligner
from fa_lib.convert_ls3dw import YAW_BINS, add_convert_ls3dw_parser, convert_folder, load_2d_to_3d_network, yaw_bin
from fa_lib.data.formats import read_ls3dw_landmarks, write_pts
from fa_lib.device import resolve_device
from fa_lib.experiments.ch4.data import Ch4Data, ListSamples, ground_truth
from fa_lib.experiments.ch4.evaluation import evaluate_fan
from fa_lib.experiments.ch4.scale import EVAL_BOX_NOISE, EVAL_SEED, Ch4Setup
from fa_lib.experiments.common import AUC_THRESHOLD, YAW_BIN_LABELS, long_table
from fa_lib.models import save_model

#: Fig. 4.6's summary column on profile faces (the verdicts are taken there)
PROFILE_NME = "mean NME, |yaw| 60-90 (%)"
#: why Fig. 4.6 and table 4.fig6 do not run on a data root without AFLW2000-3D
CONVERSION_NOT_RUN = ("not run: on real data Fig. 4.6 follows the thesis's protocol on AFLW2000-3D (its faces "
                      "converted by fa-lib convert-ls3dw guided by 2D-FAN, against its 3D annotations), and "
                      "AFLW2000-3D was not found under the data root")
#: the curves of Fig. 4.6
PTS_CURVE = "convert-ls3dw, 2D annotations (.pts)"
FAN2D_CURVE = "convert-ls3dw, 2D-FAN guide (no .pts)"
ALONE_CURVE = "3D-FAN (no guide)"
NONE_CURVE = "no conversion (2D labels as 3D)"
#: on real faces (AFLW2000-3D has no 2D annotations): 2D-FAN's points taken as the 3D ones
NONE_REAL_CURVE = "no conversion (2D-FAN's points as 3D)"
#: the failure criterion of the summary, NME above 7% (the thesis set aside 19 failures without
#: stating its criterion)
FAILURE_NME = AUC_THRESHOLD


def conversion_subset(data: Ch4Data, count: int | None, bins: np.ndarray | None = None) -> np.ndarray:
    """Indices of the test faces given to the tool: the first ``count // 3`` of each |yaw| bin (the
    test set is yaw-balanced, so the subset is too); all of them when ``count`` is None. ``bins``: the
    |yaw| bins of the faces to choose from (default: the test set's)."""
    bins = data.test_bins if bins is None else np.asarray(bins)
    if count is None or count >= len(bins):
        return np.arange(len(bins))
    per_bin = max(1, int(count) // 3)
    return np.sort(np.concatenate([np.flatnonzero(bins == b)[:per_bin] for b in range(3)]))


@dataclass
class ToolConversion:
    """What ``fa-lib convert-ls3dw`` produced on test faces (:func:`convert_with_tool`).

    Landmarks are those read back from the tool's ``.t7`` files (image px, project convention);
    ``yaw_*`` the tool's yaw estimates (its ``.json`` sidecars); ``balanced_*`` the number of faces
    per |yaw| bin of its ``balanced.csv``; ``direct_pts``: 2D-to-3D-FAN run directly by the
    chapter's evaluation pipeline on the first of the same faces and guides (ground-truth 2D
    landmarks, crop of their tight box), the cross-check of the tool's output."""

    indices: np.ndarray
    from_pts: np.ndarray | None    # None on real faces without 2D annotations (AFLW2000-3D)
    yaw_pts: np.ndarray | None
    balanced_pts: list[int] | None
    direct_pts: np.ndarray | None
    from_fan2d: np.ndarray | None = None
    yaw_fan2d: np.ndarray | None = None
    balanced_fan2d: list[int] | None = None
    fan2d_points: np.ndarray | None = None     # the 2D landmarks the tool's 2D-FAN produced
    fan2d_boxes: np.ndarray | None = None      # the face boxes it was given (10% noise, section 4.7)
    exit_code: int = 0
    seconds: float = 0.0
    failed: dict = field(default_factory=dict)

    @property
    def max_direct_difference(self) -> float:
        """Largest |tool - direct| over every landmark coordinate of the cross-checked faces (px); NaN
        when the tool had no annotations to convert."""
        if self.from_pts is None or self.direct_pts is None:
            return float("nan")
        return float(np.abs(self.from_pts[:len(self.direct_pts)] - self.direct_pts).max())


def _read_tool_output(out: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[int], list[np.ndarray]]:
    """(3D landmarks from the .t7 files, yaw estimates, balanced.csv counts per |yaw| bin, the 2D
    guides recorded in the .json sidecars) of a convert-ls3dw output folder."""
    points, yaws, guides = [], [], []
    for name in names:
        points.append(read_ls3dw_landmarks(out / f"{name}.t7"))
        record = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        yaws.append(np.nan if record.get("yaw") is None else float(record["yaw"]))
        guides.append(np.asarray(record["landmarks_2d"], np.float32))
    balanced = pd.read_csv(out / "balanced.csv")
    counts = [int((balanced["yaw_bin"] == b).sum()) for b in range(len(YAW_BINS))]
    return np.stack(points).astype(np.float32), np.asarray(yaws, np.float64), counts, guides


def fan_aligner(model: nn.Module, setup: Ch4Setup, *, name: str = "2D-FAN", device: Any = "cpu",
                optimize: bool = True):
    """A trained FAN of the chapter as a :class:`fa_lib.api.FaceAligner` (no detector: give the
    boxes), reading the chapter's crops (``setup.input_size`` px, exactly as
    :func:`fa_lib.geometry.crop_image`). With ``optimize`` the network runs batch-norm folded
    (:func:`fa_lib.inference.optimize_for_inference`: the same function, faster)."""
    return FaceAligner.from_network(model, setup.input_size, setup.heatmap_size, device=device, name=name,
                                    optimize=optimize, antialias=False, decoder=setup.decoder)


def convert_with_tool(fan_2d_to_3d: nn.Module, fan_2d: nn.Module | None, setup: Ch4Setup, data: Ch4Data, *,
                      seed: int = 0, device: Any = "cpu", count: int | None = None,
                      work_dir: str | Path | None = None, cross_check: int = 30) -> ToolConversion:
    """Run ``fa-lib convert-ls3dw`` on ``count`` test faces (default ``setup.convert_images``,
    equal numbers per |yaw| bin).

    The faces are written to a folder as PNG images with their 2D landmarks as iBUG ``.pts`` files
    (the format of 300-W / Menpo, which LS3D-W re-annotated); the trained 2D-to-3D-FAN is saved as a
    checkpoint (recording its input size) and the folder converted by ``fa-lib convert-ls3dw`` (the
    CLI's own parser and entry point, in this process). With ``fan_2d``, the same images without
    ``.pts`` files are converted again by :func:`fa_lib.convert_ls3dw.convert_folder` (what the CLI
    calls) with that 2D-FAN as the tool's 2D aligner, given each face's box with 10% noise (the
    thesis's pipeline for images without 2D annotations, and its Fig. 4.6 protocol on AFLW2000-3D).
    The ``.t7``/``.json``/``balanced.csv`` files are read back. ``cross_check``: on that many of the
    faces (the first), 2D-to-3D-FAN is also run directly by the chapter's evaluation code, to check
    the tool's files against it. ``work_dir``: keep the folders there (default: a temporary folder,
    removed afterwards).
    """
    started = time.perf_counter()
    indices = conversion_subset(data, setup.convert_images if count is None else count)
    names = [f"face_{int(i):05d}" for i in indices]
    dev = str(resolve_device(device))
    context = tempfile.TemporaryDirectory(prefix="fa_lib_convert_") if work_dir is None else None
    root = Path(context.name if context is not None else work_dir)
    try:
        annotated, unannotated = root / "images_with_pts", root / "images_without_pts"
        for folder in (annotated, unannotated):
            folder.mkdir(parents=True, exist_ok=True)
        samples = [data.test[int(i)] for i in indices]
        for name, sample in zip(names, samples):
            Image.fromarray(np.asarray(sample["image"], np.uint8)).save(annotated / f"{name}.png")
            write_pts(annotated / f"{name}.pts", sample["landmarks_2d"])
        weights = save_model(fan_2d_to_3d, root / "2d_to_3d_fan.pt",
                             extra={"input_size": setup.input_size, "profile": setup.name})
        parser = argparse.ArgumentParser(prog="fa-lib")
        add_convert_ls3dw_parser(parser.add_subparsers())
        args = parser.parse_args(["convert-ls3dw", str(annotated), "--out", str(root / "out_pts"),
                                  "--weights", str(weights), "--device", dev, "--seed", str(seed),
                                  "--batch-size", str(max(setup.batch_size, 8)), "--no-copy", "--quiet",
                                  "--decoder", setup.decoder])
        code = args.func(args)
        if code != 0:
            raise RuntimeError(f"fa-lib convert-ls3dw exited with code {code}")
        from_pts, yaw_pts, balanced_pts, _ = _read_tool_output(root / "out_pts", names)
        # the cross-check: the chapter's own pipeline, same guides, same (noise-free) box
        direct = evaluate_fan(fan_2d_to_3d, ListSamples(samples[:max(1, int(cross_check))]),
                              setup, landmarks="3d", guide=True, box_noise=0.0, seed=seed, device=dev)
        result = ToolConversion(indices=indices, from_pts=from_pts, yaw_pts=yaw_pts, balanced_pts=balanced_pts,
                                direct_pts=np.asarray(direct.predictions, np.float32), exit_code=code)
        if fan_2d is not None:
            result = replace(result, **_convert_guided_by_fan2d(samples, names, weights, fan_2d, setup, unannotated,
                                                                root / "out_fan2d", seed=seed, device=dev))
    finally:
        if context is not None:
            context.cleanup()
    result.seconds = time.perf_counter() - started
    return result


def _convert_guided_by_fan2d(samples: Sequence[dict], names: Sequence[str], weights: Path, fan_2d: nn.Module,
                             setup: Ch4Setup, images: Path, out: Path, *, seed: int, device: str) -> dict[str, Any]:
    """The faces written to ``images`` without annotations and converted by
    :func:`fa_lib.convert_ls3dw.convert_folder` (what ``fa-lib convert-ls3dw`` calls) with ``fan_2d`` as the
    tool's 2D aligner, given each face's box with 10% noise: the :class:`ToolConversion` fields of that run."""
    images.mkdir(parents=True, exist_ok=True)
    for name, sample in zip(names, samples):
        Image.fromarray(np.asarray(sample["image"], np.uint8)).save(images / f"{name}.png")
    gt_boxes = np.stack([np.asarray(sample["box"], np.float32) for sample in samples])
    noisy = geometry.perturb_box(gt_boxes, EVAL_BOX_NOISE, np.random.default_rng(seed + EVAL_SEED))
    outcome = convert_folder(images, out, load_2d_to_3d_network(weights), fan_aligner(fan_2d, setup, device=device),
                             batch_size=max(setup.batch_size, 8), copy_images=False, seed=seed, show_progress=False,
                             device=device, input_size=setup.input_size,
                             boxes={f"{name}.png": box.tolist() for name, box in zip(names, noisy)},
                             decoder=setup.decoder)
    if outcome.failed:
        raise RuntimeError(f"convert-ls3dw failed on {len(outcome.failed)} images: {outcome.failed}")
    from_fan2d, yaw_fan2d, balanced_fan2d, guides = _read_tool_output(out, names)
    return {"from_fan2d": from_fan2d, "yaw_fan2d": yaw_fan2d, "balanced_fan2d": balanced_fan2d,
            "fan2d_points": np.stack(guides), "fan2d_boxes": noisy}


def conversion_errors(tool: ToolConversion, data: Ch4Data, fan3d_nme: np.ndarray | None = None
                      ) -> dict[str, np.ndarray]:
    """Fig. 4.6's curves: NME (eq. 4.1) against the renderer's true 3D landmarks, on the faces
    given to the tool.

    - the tool's output from the 2D annotations (``.pts``): converting annotations, as for LS3D-W;
    - the tool's output guided by 2D-FAN (no ``.pts``): the thesis's pipeline on AFLW2000-3D;
    - 3D-FAN alone (no 2D guide, 10% box noise; when its per-image ``fan3d_nme`` on the whole
      test set is given), for reference;
    - "no conversion": the 2D landmarks taken as the 3D ones (the gap the conversion must close).
    """
    idx = tool.indices
    gt3, boxes = ground_truth(data.test, "3d")
    gt2, _ = ground_truth(data.test, "2d")
    gt3, gt2, boxes = gt3[idx], gt2[idx], boxes[idx]

    def nme(points):
        return np.asarray(metrics.nme_box(points[..., :2], gt3[..., :2], boxes), np.float64)

    curves = {PTS_CURVE: nme(tool.from_pts)}
    if tool.from_fan2d is not None:
        curves[FAN2D_CURVE] = nme(tool.from_fan2d)
    if fan3d_nme is not None:
        curves[ALONE_CURVE] = np.asarray(fan3d_nme, np.float64)[idx]
    curves[NONE_CURVE] = nme(gt2)
    return curves


def conversion_summary(curves: dict[str, np.ndarray], profile: np.ndarray) -> pd.DataFrame:
    """One row per curve: mean NME (%), mean NME on profile faces (``profile``: a mask of the
    faces with |yaw| 60-90), AUC@7% (%), failures (NME > 7%) and the number of faces."""
    return pd.DataFrame([{"curve": k, "mean NME (%)": 100 * float(np.mean(v)),
                          PROFILE_NME: 100 * float(np.mean(v[profile])) if profile.any() else float("nan"),
                          "AUC@7% (%)": 100 * metrics.auc_at(v), "failures (NME > 7%)": int((v > FAILURE_NME).sum()),
                          "images": len(v)} for k, v in curves.items()])


def conversion_balance(tool: ToolConversion, data: Ch4Data, bins: np.ndarray | None = None) -> pd.DataFrame:
    """Faces per |yaw| bin: true yaw of the faces given to the tool, the tool's yaw estimate (from
    the converted 3D landmarks), and its balanced subset (``balanced.csv``); with the share of
    faces whose estimated bin is the true one. Long frame (row, column, reproduced). ``bins``: the
    |yaw| bins of the faces the tool converted (default: the test set's)."""
    true_bins = (data.test_bins if bins is None else np.asarray(bins))[tool.indices]
    rows: dict[str, dict[str, float]] = {
        "faces given to the tool (true |yaw|)": {lab: float((true_bins == b).sum())
                                                 for b, lab in enumerate(YAW_BIN_LABELS)}}
    runs = [(".pts", tool.yaw_pts, tool.balanced_pts)] if tool.yaw_pts is not None else []
    if tool.yaw_fan2d is not None:
        runs.append(("2D-FAN guide", tool.yaw_fan2d, tool.balanced_fan2d))
    for what, yaws, balanced in runs:
        estimated = np.array([yaw_bin(y) for y in yaws])
        rows[f"tool's |yaw| estimate, {what}"] = {lab: float((estimated == b).sum())
                                                  for b, lab in enumerate(YAW_BIN_LABELS)}
        rows[f"tool's |yaw| estimate, {what}"]["bin = true bin (%)"] = 100 * float(np.mean(estimated == true_bins))
        rows[f"balanced subset (balanced.csv), {what}"] = {lab: float(c) for lab, c in zip(YAW_BIN_LABELS, balanced)}
    return long_table(rows)


def convert_real_faces(fan_2d_to_3d: nn.Module, fan_2d: nn.Module, setup: Ch4Setup, data: Ch4Data,
                       faces: Dataset, bins: np.ndarray, *, seed: int = 0, device: Any = "cpu",
                       count: int | None = None) -> ToolConversion:
    """Fig. 4.6 on real faces without 2D annotations (AFLW2000-3D, the thesis's protocol): ``count``
    faces of ``faces`` (default ``setup.convert_images``, equal numbers per |yaw| bin of ``bins``)
    converted by the tool guided by 2D-FAN (:func:`_convert_guided_by_fan2d`)."""
    started = time.perf_counter()
    indices = conversion_subset(data, setup.convert_images if count is None else count, bins)
    names = [f"face_{int(i):05d}" for i in indices]
    dev = str(resolve_device(device))
    with tempfile.TemporaryDirectory(prefix="fa_lib_convert_real_") as tmp:
        root = Path(tmp)
        weights = save_model(fan_2d_to_3d, root / "2d_to_3d_fan.pt",
                             extra={"input_size": setup.input_size, "profile": setup.name})
        guided = _convert_guided_by_fan2d([faces[int(i)] for i in indices], names, weights, fan_2d, setup,
                                          root / "images", root / "out_fan2d", seed=seed, device=dev)
    return ToolConversion(indices=indices, from_pts=None, yaw_pts=None, balanced_pts=None, direct_pts=None,
                          seconds=time.perf_counter() - started, **guided)


def real_conversion_errors(tool: ToolConversion, faces: Dataset, fan3d_nme: np.ndarray | None = None
                           ) -> dict[str, np.ndarray]:
    """Fig. 4.6's curves on real faces: NME (eq. 4.1, the box of the annotated 3D landmarks) of the
    tool's output guided by 2D-FAN, of 3D-FAN alone (``fan3d_nme``: per face of ``faces``) and of
    2D-FAN's points taken as the 3D ones, against the dataset's 3D annotations."""
    idx = tool.indices
    gt3, boxes = ground_truth(faces, "3d")
    gt3, boxes = gt3[idx], boxes[idx]

    def nme(points):
        return np.asarray(metrics.nme_box(np.asarray(points)[..., :2], gt3[..., :2], boxes), np.float64)

    curves = {FAN2D_CURVE: nme(tool.from_fan2d)}
    if fan3d_nme is not None:
        curves[ALONE_CURVE] = np.asarray(fan3d_nme, np.float64)[idx]
    curves[NONE_REAL_CURVE] = nme(tool.fan2d_points)
    return curves

