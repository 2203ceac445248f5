"""Build an LS3D-W-style dataset from 2D annotations with 2D-to-3D-FAN (thesis 4.5, Fig. 4.3).

The thesis created LS3D-W (~230,000 images) by converting existing 2D annotations (300-W test set,
300-VW, Menpo, AFLW2000-3D) to "3D" landmarks, the 2D projections of the 68 3D landmarks: a
2D-to-3D-FAN (thesis 4.3.1) reads the RGB crop stacked with 68 Gaussian maps (std 1 px) at the 2D
landmarks and outputs heatmaps of the 3D landmarks. Where an image has no 2D annotation the thesis
guided the network with 2D-FAN's predictions (4.5). Its LS3D-W *balanced* test set has equal
numbers of faces with |yaw| in [0, 30), [30, 60) and [60, 90] degrees (Table 4.2).

:func:`convert_folder` does the same for a folder of images:

1. 2D landmarks: ``<stem>.pts`` beside the image (iBUG, 68 points), else a 2D-FAN
   (:class:`fa_lib.api.FaceAligner`, or any object with its ``get_landmarks_from_image(image,
   boxes=..., return_details=True)``; largest face) in the face box given for the image
   (``boxes`` / ``--boxes``) or, without one, in the boxes of its detector; else the image is
   reported and skipped;
2. the crop of the tight 2D-landmark box (thesis 4.1.3, official FAN crop convention) at the
   network's input size (``input_size`` / ``--input-size``: the thesis's 256 px, or the size a
   checkpoint of this project records in its metadata) plus the guide maps (Gaussians of std 1 px),
   through 2D-to-3D-FAN, in batches; heatmaps decoded to image pixels;
3. output in the LS3D-W layout read by :func:`fa_lib.data.formats.read_ls3dw_landmarks`: beside a
   copy of each image, ``<stem>.t7``, a Torch7 68x2 FloatTensor in 1-based coordinates (as the
   release's Lua files), and a ``<stem>.json`` sidecar (yaw, where the 2D points came from, the 3D
   points in our 0-based convention);
4. yaw estimated from the 3D landmarks (:func:`estimate_pose`: orthographic Procrustes fit of the
   face model's mean 68 landmarks), ``index.csv`` of every converted image and ``balanced.csv``, the
   largest subset with equal counts in the three |yaw| bins (random choice, seeded).

Resumable: an image whose ``.t7`` and ``.json`` already exist is skipped; every file is written
atomically (:mod:`fa_lib.atomic`), so an interrupted run leaves no half-written annotation.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from . import geometry
from .api import FaceAligner, load_boxes_json
from .atomic import atomic_write, atomic_write_bytes, atomic_write_text
from .data.face_model import load_face_model
from .data.formats import load_image, read_pts
from .device import resolve_device
from .geometry import fit_orthographic_camera, pose_from_rotation
from .heatmaps import DECODERS, gaussian_heatmaps, heatmaps_to_image_points
from .inference import optimize_for_inference
from .models import FAN, fan_2d_to_3d
from .models.checkpoints import checkpoint_input_size, load_fan_checkpoint

__all__ = ["YAW_BINS", "write_t7_tensor", "estimate_pose", "yaw_bin", "balanced_subset",
           "ConversionResult", "convert_folder", "load_2d_to_3d_network", "checkpoint_input_size",
           "read_boxes_json", "add_convert_ls3dw_parser", "convert_ls3dw_main"]

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
INPUT_SIZE, GUIDE_SIGMA = 256, 1.0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


# ------------------------------------------------------------------------------ Torch7 out
def _t7_string(text: str) -> bytes:
    data = text.encode("latin-1")
    return struct.pack("<i", len(data)) + data


def write_t7_tensor(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2D float32 array as a binary Torch7 ``torch.FloatTensor`` (the LS3D-W ``.t7`` files;
    format in :class:`fa_lib.data.formats._T7Reader`), atomically. Values are written as given."""
    array = np.ascontiguousarray(array, dtype="<f4")
    if array.ndim != 2:
        raise ValueError(f"expected a 2D array, got shape {array.shape}")
    rows, cols = array.shape
    torch_object = 4
    header = struct.pack("<ii", torch_object, 1) + _t7_string("V 1") + _t7_string("torch.FloatTensor")
    tensor = struct.pack("<i", 2) + struct.pack("<qq", rows, cols) + struct.pack("<qq", cols, 1)
    tensor += struct.pack("<q", 1)  # 1-based storage offset
    storage = struct.pack("<ii", torch_object, 2) + _t7_string("V 1") + _t7_string("torch.FloatStorage")
    storage += struct.pack("<q", array.size) + array.tobytes()
    atomic_write_bytes(path, header + tensor + storage)


# ------------------------------------------------------------------------------------ pose
def mean_landmarks_3d() -> np.ndarray:
    """The face model's mean 68 landmarks (mm; x to the subject's left, y up, z to the camera)."""
    model = load_face_model()
    return np.asarray(model.mean[model.landmark_vertices], np.float64)


def estimate_pose(points, reference: np.ndarray | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face from its 68 "3D" landmarks (x, y image px; z
    ignored), by orthographic Procrustes against the face model's mean landmarks
    (:func:`fa_lib.geometry.fit_orthographic_camera`).

    With the renderer's convention ``R = Rz(roll) Rx(pitch) Ry(yaw)``
    (:func:`fa_lib.data.render.rotation_matrix`; yaw > 0 turns the nose to the image right), row 3 of R
    is ``(-cos p sin y, sin p, cos p cos y)``. Faces turned beyond 90 degrees are not distinguished from
    their mirror.
    """
    xy = np.asarray(points, np.float64)[:, :2]
    model = mean_landmarks_3d() if reference is None else np.asarray(reference, np.float64)
    if xy.shape != (68, 2) or model.shape != (68, 3):
        raise ValueError(f"estimate_pose needs (68, 2|3) points, got {np.shape(points)}")
    if np.isfinite(xy).all(1).sum() < 6:
        raise ValueError("estimate_pose needs at least 6 finite points")
    return pose_from_rotation(fit_orthographic_camera(xy, model)[1])


def yaw_bin(yaw: float) -> int:
    """Index of the LS3D-W balanced bin of |yaw| (0: 0-30, 1: 30-60, 2: 60-90 and beyond), -1 for NaN."""
    if not np.isfinite(yaw):
        return -1
    magnitude = abs(float(yaw))
    for index, (_, high) in enumerate(YAW_BINS[:-1]):
        if magnitude < high:
            return index
    return len(YAW_BINS) - 1


def balanced_subset(yaws: Sequence[float], seed: int = 0) -> list[int]:
    """Indices of the largest subset with the same number of faces in each |yaw| bin (thesis
    Table 4.2, "LS3D-W Balanced"), chosen at random with ``seed``; sorted. Empty when a bin is
    empty."""
    bins = [[i for i, y in enumerate(yaws) if yaw_bin(y) == b] for b in range(len(YAW_BINS))]
    count = min(len(b) for b in bins)
    rng = np.random.default_rng(seed)
    chosen = [int(i) for b in bins for i in (rng.choice(b, count, replace=False) if count else [])]
    return sorted(chosen)


# ---------------------------------------------------------------------------------- model
def load_2d_to_3d_network(weights=None, network=None, allow_random_weights: bool = False) -> nn.Module:
    """2D-to-3D-FAN (3 + 68 input channels) from a checkpoint (ours or official), a module, or —
    for tests only — random weights (``network`` then holds FAN kwargs)."""
    if isinstance(network, nn.Module):
        model = network
    elif weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"2D-to-3D-FAN weights not found: {weights}")
        model = load_fan_checkpoint(weights)  # ours or an official FAN
    elif allow_random_weights:
        config = dict(network or {})
        model = fan_2d_to_3d(config.pop("num_modules", 4), **config)
    else:
        raise ValueError("convert-ls3dw needs a trained 2D-to-3D-FAN (none ships with fa_lib and "
                         "nothing is downloaded): pass weights=PATH to a checkpoint trained with "
                         "this project (fa_lib.train on 300-W-LP-style 2D+3D data, thesis 4.3.2) "
                         "or to an official one")
    if not isinstance(model, FAN) or model.in_channels != 3 + model.config["num_landmarks"]:
        raise ValueError("the network is not a 2D-to-3D-FAN (expected a FAN with 3 + 68 input channels)")
    return model.eval()


def read_boxes_json(path) -> dict[str, list]:
    """``--boxes``: a JSON object {image path relative to the image folder, or file name: a box
    [x1, y1, x2, y2] or a list of boxes} (the format of ``fa-lib landmarks --boxes``)."""
    spec = load_boxes_json(path)
    if not isinstance(spec, dict):
        raise ValueError(f"--boxes {path} must hold an object {{image: box or boxes}}")
    return spec


def _boxes_for(boxes, relative: Path) -> np.ndarray | None:
    """The (K, 4) face boxes given for an image (by relative path, then by file name), or None."""
    if not boxes:
        return None
    entry = boxes.get(relative.as_posix(), boxes.get(relative.name))
    if entry is None:
        return None
    array = np.asarray(entry, np.float32)
    if array.size == 0 or array.shape[-1] < 4:
        raise ValueError(f"the box given for {relative} is not [x1, y1, x2, y2]: {entry}")
    return array.reshape(-1, array.shape[-1])[:, :4]


# ------------------------------------------------------------------------------ convert
@dataclass
class ConversionResult:
    """What :func:`convert_folder` did: converted / skipped (already done) / failed ({file: why})."""

    converted: list[str]
    skipped: list[str]
    failed: dict[str, str]
    index_path: Path
    balanced_path: Path
    balanced_counts: list[int]


def _guided_input(image: np.ndarray, points_2d: np.ndarray, input_size: int = INPUT_SIZE):
    box = geometry.box_from_landmarks(points_2d)
    center, scale = geometry.box_to_center_scale(box.astype(np.float64))
    crop = geometry.crop_image(image, center, float(scale), input_size).astype(np.float32) / 255.0
    guide_points = geometry.crop_points(points_2d.astype(np.float64), center, float(scale), input_size)
    guide = gaussian_heatmaps(guide_points, input_size, GUIDE_SIGMA).numpy()
    return np.concatenate([crop.transpose(2, 0, 1), guide], 0), center, float(scale)


def _points_2d(image_path: Path, image: np.ndarray, aligner, boxes: np.ndarray | None = None
               ) -> tuple[np.ndarray, str]:
    pts = image_path.with_suffix(".pts")
    if pts.is_file():
        return read_pts(pts, n_points=68), "pts"
    if aligner is None:
        raise ValueError(f"no {pts.name} beside the image and no 2D-FAN given to predict the 2D "
                         "landmarks (pass fan_2d_weights / --fan2d-weights)")
    faces = aligner.get_landmarks_from_image(image, boxes=boxes, return_details=True)
    if not faces.landmarks:
        raise ValueError("no .pts file and the 2D-FAN found no face" +
                         (" in the given box" if boxes is not None else " (its detector found none)"))
    largest = int(np.argmax((faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])))
    return faces.landmarks[largest][:, :2], "2D-FAN"


def _write_sidecar(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(record, indent=1))


def convert_folder(images_dir, out_dir, network: nn.Module, aligner_2d=None, batch_size: int = 8,
                   copy_images: bool = True, seed: int = 0, show_progress: bool = True,
                   device: str = "cpu", input_size: int | None = None,
                   boxes: dict | None = None, decoder: str = "quarter") -> ConversionResult:
    """Convert every image under ``images_dir`` (see the module docstring) into ``out_dir``.

    ``network``: a 2D-to-3D-FAN (:func:`load_2d_to_3d_network`); ``aligner_2d``: a 2D
    :class:`~fa_lib.api.FaceAligner` (or an object with its ``get_landmarks_from_image``) for
    images without a ``.pts`` file (or None); ``boxes``: {image path relative to ``images_dir``,
    or file name: face box(es) [x1, y1, x2, y2]} for those images (the aligner's detector is used
    for images without one); ``input_size``: the crop side the network was trained on (None: the
    thesis's 256 px); ``decoder``: how the 2D-to-3D-FAN's heatmaps become points
    (:data:`fa_lib.heatmaps.DECODERS`).
    """
    from tqdm.auto import tqdm  # imports IPython's widgets where installed: only when converting

    source = Path(images_dir)
    target = Path(out_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"image folder not found: {source}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    input_size = INPUT_SIZE if input_size is None else int(input_size)
    # the stem divides the crop by 4 and each hourglass level halves it again
    config = getattr(network, "config", None)
    step = 4 * 2 ** int(config.get("hg_depth", 0)) if isinstance(config, dict) else 4
    if input_size < step or input_size % step:
        raise ValueError(f"input_size must be a positive multiple of {step} for this network "
                         f"(4 x 2^hourglass depth), got {input_size}")
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and target not in p.parents)
    network = optimize_for_inference(network).to(device).eval()
    converted, skipped, failed = [], [], {}
    pending: list[tuple[Path, Path, np.ndarray, np.ndarray, float, np.ndarray, str]] = []

    def flush():
        if not pending:
            return
        inputs = torch.from_numpy(np.stack([p[2] for p in pending])).to(device)
        with torch.inference_mode():
            heatmaps = network(inputs)[-1].float().cpu()
        uncrop = geometry.uncrop_matrix(np.stack([p[3] for p in pending]), np.asarray([p[4] for p in pending]),
                                        heatmaps.shape[-1])
        points, _ = heatmaps_to_image_points(heatmaps, inverse=uncrop, decoder=decoder)
        for (file, stem, _, center, scale, points_2d, origin), points_3d in zip(pending, points):
            try:
                yaw, pitch, roll = estimate_pose(points_3d)
            except (ValueError, FileNotFoundError, np.linalg.LinAlgError):
                yaw = pitch = roll = float("nan")
            if copy_images:
                image_copy = stem.with_suffix(file.suffix)
                if not image_copy.exists():
                    with open(file, "rb") as original:
                        atomic_write(image_copy, lambda out: shutil.copyfileobj(original, out))
            write_t7_tensor(stem.with_suffix(".t7"), points_3d + 0.5)   # 1-based, as the release
            _write_sidecar(stem.with_suffix(".json"), {
                "image": str(file.relative_to(source)), "landmarks_2d_from": origin,
                "yaw": yaw, "pitch": pitch, "roll": roll, "landmarks_3d": points_3d.tolist(),
                "landmarks_2d": np.asarray(points_2d, np.float32).tolist(), "input_size": input_size,
                "convention": "0-based: pixel (row i, col j) has its centre at (j + 0.5, i + 0.5); "
                              "the .t7 file is 1-based"})
            converted.append(str(file))
        pending.clear()

    for file in tqdm(files, desc="2D-to-3D", unit="image", disable=not show_progress):
        stem = target / file.relative_to(source).with_suffix("")
        if stem.with_suffix(".t7").is_file() and stem.with_suffix(".json").is_file():
            skipped.append(str(file))
            continue
        try:
            image = load_image(file)
            points_2d, origin = _points_2d(file, image, aligner_2d,
                                           _boxes_for(boxes, file.relative_to(source)))
            stem.parent.mkdir(parents=True, exist_ok=True)
            channels, center, scale = _guided_input(image, points_2d, input_size)
            pending.append((file, stem, channels, center, scale, points_2d, origin))
        except (ValueError, FileNotFoundError, OSError) as error:
            failed[str(file)] = f"{type(error).__name__}: {error}"
        if len(pending) >= batch_size:
            flush()
    flush()
    index_path, balanced_path, counts = _write_index(target, seed)
    return ConversionResult(converted, skipped, failed, index_path, balanced_path, counts)


def _write_index(target: Path, seed: int) -> tuple[Path, Path, list[int]]:
    """index.csv (every converted image) and balanced.csv (equal counts per |yaw| bin)."""
    rows = []
    for sidecar in sorted(target.rglob("*.json")):
        if not sidecar.with_suffix(".t7").is_file():
            continue
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        yaw = record.get("yaw")
        yaw = float("nan") if yaw is None else float(yaw)
        rows.append({"annotation": str(sidecar.with_suffix(".t7").relative_to(target)),
                     "image": record.get("image", ""), "yaw": yaw, "yaw_bin": yaw_bin(yaw),
                     "landmarks_2d_from": record.get("landmarks_2d_from", "")})
    chosen = set(balanced_subset([r["yaw"] for r in rows], seed))
    counts = [sum(1 for i in chosen if rows[i]["yaw_bin"] == b) for b in range(len(YAW_BINS))]
    paths = []
    for name, selection in (("index.csv", rows), ("balanced.csv", [rows[i] for i in sorted(chosen)])):
        lines = ["annotation,image,yaw,yaw_bin,landmarks_2d_from"]
        lines += [f"{r['annotation']},{r['image']},{r['yaw']:.2f},{r['yaw_bin']},{r['landmarks_2d_from']}"
                  for r in selection]
        atomic_write_text(target / name, "\n".join(lines) + "\n")
        paths.append(target / name)
    return paths[0], paths[1], counts


# ------------------------------------------------------------------------------------ CLI
def convert_ls3dw_main(args: argparse.Namespace) -> int:
    """``fa-lib convert-ls3dw``: 0 when something was converted or everything was already done."""
    try:
        network = load_2d_to_3d_network(args.weights)
        aligner = None
        if args.fan2d_weights:
            aligner = FaceAligner("2D", device=args.device, detector=args.detector,
                                  weights=args.fan2d_weights, decoder=args.decoder)  # its crop size: from the checkpoint
        device = resolve_device(args.device)
        input_size = args.input_size or checkpoint_input_size(args.weights) or INPUT_SIZE
        boxes = read_boxes_json(args.boxes) if args.boxes else None
        result = convert_folder(args.images, args.out, network, aligner, batch_size=args.batch_size,
                                copy_images=not args.no_copy, seed=args.seed,
                                show_progress=not args.quiet, device=device, input_size=input_size,
                                boxes=boxes, decoder=args.decoder)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"fa-lib convert-ls3dw: {error}", file=sys.stderr)
        return 2
    for file, why in result.failed.items():
        print(f"  {file}: FAILED: {why}", file=sys.stderr)
    print(f"fa-lib convert-ls3dw: {len(result.converted)} converted, {len(result.skipped)} already "
          f"done, {len(result.failed)} failed; balanced subset {result.balanced_counts} per |yaw| "
          f"bin (0-30, 30-60, 60-90) in {result.balanced_path}")
    return 0 if (result.converted or result.skipped) else 1


def add_convert_ls3dw_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``fa-lib convert-ls3dw`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "convert-ls3dw", help="2D annotations -> LS3D-W-style 3D landmarks with 2D-to-3D-FAN (thesis 4.5)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="folder of images (with <stem>.pts 2D annotations where available)")
    parser.add_argument("--out", required=True, help="output folder (LS3D-W layout)")
    parser.add_argument("--weights", default=None, help="2D-to-3D-FAN checkpoint (ours or official)")
    parser.add_argument("--fan2d-weights", default=None,
                        help="2D-FAN checkpoint for images without a .pts file")
    parser.add_argument("--detector", default="dlib", choices=["dlib", "opencv"])
    parser.add_argument("--boxes", default=None,
                        help="JSON file {image path relative to the folder, or file name: [x1, y1, x2, y2] "
                             "or a list of boxes}: face boxes for the 2D-FAN on images without a .pts "
                             "file (the detector is used for the others)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="crop side (px) the 2D-to-3D-FAN was trained on (default: the size the "
                             "checkpoint records, else the thesis's 256)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the balanced subset")
    parser.add_argument("--no-copy", action="store_true", help="do not copy the images into --out")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--decoder", default="quarter", choices=list(DECODERS),
                        help="heatmap decoding: the official quarter-pixel rule or the sub-pixel fit")
    parser.set_defaults(func=convert_ls3dw_main)
    return parser
