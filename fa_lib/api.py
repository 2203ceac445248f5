"""``FaceAligner``: 2D / 3D / full-3D landmarks of the faces in real photos (thesis 4.3, 4.8).

The thesis's networks as a tool:

- **2D** (2D-FAN, 4.3): 68 points on the visible face contour;
- **3D** (3D-FAN, 4.3): the 2D projections of the 68 3D landmarks (the LS3D-W markup, 4.5);
- **3D-full** (3D-FAN-full, 4.8): (x, y) from 3D-FAN and the depth z from the ResNet-152 depth
  network (Fig. 4.11), z in image-pixel units, larger = nearer the camera (project convention).

Each face is found by an offline detector (:mod:`fa_lib.detectors`) or given as a box, cropped with
the official FAN convention (:func:`fa_lib.geometry.box_to_center_scale`, 256x256 crop, 64x64
heatmaps), and decoded to image pixels with the argmax + quarter-pixel rule
(:func:`fa_lib.heatmaps.heatmaps_to_image_points`).
Unlike the official package: landmarks stay floats (never rounded to int), every face of every image
of a batch goes through the network in one forward pass (chunks of ``batch_size`` faces), several
faces per image are returned, flip test-time augmentation is optional (off by default), nothing is
ever downloaded, and a batch goes on when one of its images fails (the error is reported per image).

Weights: with none given, "2D" and "3D" use the project's own 2D-FAN and 3D-FAN bundled with the
package (:mod:`fa_lib.bundled`: trained on synthetic faces by the quick profile; their manifest gives
their accuracy). ``weights=PATH`` takes an official face-alignment checkpoint (2DFAN4 / 3DFAN4, plain,
``{"state_dict": ...}`` or TorchScript; and ``depth_weights=PATH`` for the official depth network) or
a checkpoint of this project (:func:`fa_lib.models.save_model`, a run folder's ``model.pt`` or a
trainer's ``last.pt``). Without weights for "3D-full" the aligner refuses to run unless
``allow_random_weights=True`` (tests, timing). A network already in memory (e.g. one the chapter-4
experiments trained on smaller crops) becomes an aligner with :meth:`FaceAligner.from_network`
(its crop side and heatmap side given); every ``FaceAligner`` is a
:class:`fa_lib.peers.LandmarkPredictor`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import geometry
from .atomic import atomic_write_text
from .data.formats import load_image
from .detectors import FaceDetector, as_rgb_uint8, make_detector, _as_scored_boxes
from .device import resolve_device
from .heatmaps import (DECODERS, decode_heatmaps, decode_heatmaps_subpixel, heatmap_coords_to_image,
                       heatmaps_to_image_points)
from .inference import optimize_for_inference
from .landmarks import FLIP_PERMUTATION_68
from .models import FAN, FanFull, ResNetDepth
from .models.superfan import SuperFan
from . import bundled
from .models.checkpoints import (checkpoint_extra, checkpoint_input_size, describe_checkpoint, load_fan_checkpoint,
                                 load_model, load_official_depth, load_weights)
from .peers import LandmarkPredictor

__all__ = ["FaceAligner", "Faces", "load_network", "read_image", "optimize_for_inference",
           "LANDMARK_TYPES", "IMAGE_EXTENSIONS", "NO_WEIGHTS_MESSAGE", "add_landmarks_parser",
           "landmarks_main"]

LANDMARK_TYPES = ("2D", "3D", "3D-full")
#: faces are searched for on a copy of a photo no larger than this (px, longer side): detectors find
#: faces of photo size at this resolution, and a 12000 px photo would cost gigabytes and minutes
DETECT_MAX_SIDE = 2048
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
INPUT_SIZE, HEATMAP_SIZE = 256, 64

NO_WEIGHTS_MESSAGE = (
    "no trained weights for these landmarks: the package bundles its own 2D-FAN and 3D-FAN only (for "
    "'2D' and '3D'; nothing is ever downloaded). Give --weights PATH (FaceAligner(weights=PATH)): a "
    "checkpoint trained with this project (a run folder's model.pt or last.pt, or a file saved by "
    "fa_lib.models.save_model) or an official face-alignment checkpoint you obtained yourself (2DFAN4 for "
    "2D, 3DFAN4 for 3D); '3D-full' also needs --depth-weights PATH (the official depth network or one "
    "of ours). For tests and timing only, FaceAligner(allow_random_weights=True) runs an untrained network.")


# ------------------------------------------------------------------------------ results
@dataclasses.dataclass
class Faces:
    """The faces of one image.

    ``landmarks``: one float32 (68, 2) or (68, 3) array per face, image pixels (centre of pixel
    (row i, col j) at (j + 0.5, i + 0.5)); ``scores``: float32 (68,) heatmap maxima per face (a
    confidence per landmark); ``boxes``: float32 (K, 5) [x1, y1, x2, y2, detector score], the boxes
    the faces were cropped from; ``source``: file name or ``"<array i>"``; ``error``: why the image
    could not be processed (then everything else is empty); ``note``: e.g. "no face found".
    """

    landmarks: list[np.ndarray]
    scores: list[np.ndarray]
    boxes: np.ndarray
    source: str = ""
    error: str | None = None
    note: str | None = None
    super_resolved: list[bool] = dataclasses.field(default_factory=list)

    @classmethod
    def failed(cls, source: str, error: str) -> "Faces":
        return cls([], [], np.zeros((0, 5), np.float32), source, error=error)

    def to_json(self) -> dict:
        return {"source": self.source, "error": self.error, "note": self.note,
                "faces": [{"box": box[:4].tolist(), "box_score": float(box[4]),
                           "landmarks": points.tolist(), "scores": score.tolist(),
                           "super_resolved": bool(self.super_resolved[k]) if k < len(self.super_resolved) else False}
                          for k, (points, score, box) in enumerate(zip(self.landmarks, self.scores, self.boxes))]}


# ------------------------------------------------------------------------------- images
def read_image(image, name: str | None = None) -> tuple[np.ndarray, str]:
    """A path, a numpy array (grey, RGB, RGBA; uint8 or float in [0, 1]) or a torch tensor (H, W, C
    or C, H, W) -> (uint8 RGB (H, W, 3), a name for messages)."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return load_image(path), str(path)
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        image = array
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a file path, a numpy array or a torch tensor, got "
                         f"{type(image).__name__}")
    label = name or "<array>"
    return as_rgb_uint8(image, label), label


def _crop_face(image: np.ndarray, box: np.ndarray, crop_size: int = INPUT_SIZE,
               antialias: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """The official FAN crop (``crop_size`` px, 256 for the thesis's networks) of ``box``: (float32
    (3, crop_size, crop_size) RGB / 255, centre, scale).

    With ``antialias``, when the face is much larger than the crop (more than twice its side), the
    image is first shrunk with area averaging so that bilinear resampling does not alias (the
    crop's geometry is unchanged: the shrink is composed into the affine). Without it the crop is
    exactly :func:`fa_lib.geometry.crop_image`.
    """
    import cv2

    center, scale = geometry.box_to_center_scale(np.asarray(box[:4], np.float64))
    matrix = geometry.crop_matrix(center, float(scale), crop_size)
    shrink = geometry.CROP_SIDE_PER_SCALE * float(scale) / crop_size
    source = image
    if antialias and shrink > 2.0:
        height, width = image.shape[:2]
        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        source = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        # small px -> full px is diag(W / w, H / h) in the continuous convention.
        matrix = matrix @ np.diag([width / size[0], height / size[1], 1.0])
    crop = geometry.warp_image(source, matrix, crop_size)
    return (crop.astype(np.float32) / 255.0).transpose(2, 0, 1), np.asarray(center), float(scale)


def _crop_square(image: np.ndarray, origin: np.ndarray, side: float, size: int) -> np.ndarray:
    """The square of ``side`` image px whose top-left corner is ``origin`` (continuous px), resampled
    to ``size`` px: float32 (3, size, size) RGB / 255, area-averaged first when it shrinks by more
    than two (as :func:`_crop_face`)."""
    import cv2

    k = size / side
    matrix = np.array([[k, 0.0, -origin[0] * k], [0.0, k, -origin[1] * k], [0.0, 0.0, 1.0]])
    source = image
    if 1.0 / k > 2.0:
        height, width = image.shape[:2]
        shrunk = (max(1, round(width * k * 2)), max(1, round(height * k * 2)))
        source = cv2.resize(image, shrunk, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.diag([width / shrunk[0], height / shrunk[1], 1.0])
    crop = geometry.warp_image(source, matrix, size)
    return (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)


class TinyFaces:
    """Super-FAN for faces too small for FAN (thesis chapter 6): a trained :class:`SuperFan` (file
    saved by chapter 6's ``Chapter6.export_super_fan``, :func:`fa_lib.models.checkpoints.save_model`)
    and how its training faces were framed (``face_fraction``: the 68-point box's side over the image
    side; ``box_center_offset``: the image centre minus the box centre, in image sides).

    ``landmarks(image, boxes)``: each face box is framed like the training faces, resampled to the
    generator's 16 px input, super-resolved to 64 px and localised by Super-FAN's FAN; returns the
    points (K, 68, 2) in image px and their heatmap scores (K, 68)."""

    def __init__(self, source, device: torch.device):
        if isinstance(source, SuperFan):
            model, extra = source, {}
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"super-resolution checkpoint not found: {path} (run chapter 6, which "
                                        "exports Super-FAN; see Chapter6.export_super_fan)")
            model, extra = load_model(path)
            if not isinstance(model, SuperFan):
                raise ValueError(f"{path} holds a {type(model).__name__}, not a Super-FAN (generator + FAN)")
        self.model = model.to(device).eval()
        self.device = device
        self.face_fraction = float(extra.get("face_fraction", 0.75))
        self.offset = np.asarray(extra.get("box_center_offset", (0.0, 0.0)), np.float64)
        self.extra = extra

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(boxes) == 0:
            return np.zeros((0, 68, 2), np.float32), np.zeros((0, 68), np.float32)
        crops, origins, sides = [], [], []
        for box in np.asarray(boxes, np.float64)[:, :4]:
            side = max(box[2] - box[0], box[3] - box[1]) / self.face_fraction
            centre = (box[:2] + box[2:]) / 2 + self.offset * side
            origin = centre - side / 2
            crops.append(_crop_square(image, origin, side, 16))
            origins.append(origin)
            sides.append(side)
        with torch.inference_mode():
            _, maps = self.model(torch.from_numpy(np.stack(crops)).to(self.device))
        heatmaps = maps[-1].float().cpu()
        scale = heatmaps.shape[-1] / 64.0  # 64 px image -> heatmap px
        points, scores = heatmaps_to_image_points(heatmaps, np.diag([scale, scale, 1.0]), decoder="subpixel")
        points = np.asarray(origins)[:, None, :] + points * (np.asarray(sides)[:, None, None] / 64.0)
        return points.astype(np.float32), np.asarray(scores, np.float32)


# ------------------------------------------------------------------------------ network
def _random_network(landmarks: str, network: Mapping[str, Any] | None) -> nn.Module:
    config = dict(network or {})
    if landmarks != "3D-full":
        return FAN(**config)
    fan_config = dict(config.get("fan", {}))
    depth_config = dict(config.get("depth", {}))
    n = fan_config.get("num_landmarks", 68)
    depth_config.setdefault("in_channels", 3 + n)
    depth_config.setdefault("num_outputs", n)
    return FanFull(FAN(**fan_config), ResNetDepth(**depth_config))


def load_network(landmarks: str = "2D", weights=None, depth_weights=None, network=None,
                 allow_random_weights: bool = False) -> nn.Module:
    """The network behind a :class:`FaceAligner`: a FAN ("2D", "3D") or a FanFull ("3D-full").

    ``network``: an ``nn.Module`` (used as it is, ``weights`` loaded into it if given) or a dict
    of constructor arguments (FAN kwargs; for "3D-full" ``{"fan": {...}, "depth": {...}}``) for a
    randomly initialised network (``allow_random_weights=True``).
    """
    if landmarks not in LANDMARK_TYPES:
        raise ValueError(f"landmarks must be one of {LANDMARK_TYPES}, got {landmarks!r}")
    if isinstance(network, nn.Module):
        model = network
        if weights is not None:
            load_weights(model, weights)
    elif weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        model = load_fan_checkpoint(weights)  # ours (any kind) or an official FAN
    elif allow_random_weights:
        model = _random_network(landmarks, network)
    else:
        raise ValueError(NO_WEIGHTS_MESSAGE)

    if landmarks == "3D-full" and isinstance(model, FAN):
        if depth_weights is None:
            raise ValueError("landmarks='3D-full' needs the depth network too: pass "
                             "depth_weights=PATH (official depth checkpoint or one of ours), or a "
                             "3D-FAN-full checkpoint saved by this project as weights")
        try:
            depth, _ = load_model(depth_weights)
        except ValueError:
            depth = load_official_depth(depth_weights)
        model = FanFull(model, depth)
    elif landmarks != "3D-full" and isinstance(model, FanFull):
        model = model.fan  # its 3D-FAN gives the "3D" landmarks
    if isinstance(model, FAN) and model.in_channels != 3:
        raise ValueError(f"this network takes {model.in_channels} input channels (a 2D-to-3D-FAN "
                         "needs 2D landmarks as input): use `fa-lib convert-ls3dw` / "
                         "fa_lib.convert_ls3dw for it")
    if not isinstance(model, (FAN, FanFull)):
        raise ValueError(f"expected a FAN or FanFull network, got {type(model).__name__}")
    return model.eval()


# ------------------------------------------------------------------------------ aligner
class FaceAligner(LandmarkPredictor):
    """Landmarks of every face in photos (see the module docstring); a
    :class:`~fa_lib.peers.LandmarkPredictor` (``predict(image, boxes=None)``).

    Args:
        landmarks: "2D", "3D" or "3D-full".
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N" (:func:`fa_lib.device.resolve_device`).
        detector: "dlib-cnn" (dlib's CNN, the default), "dlib" (HOG), "opencv" (Haar cascades), a
            :class:`~fa_lib.detectors.FaceDetector`,
            any callable image -> (K, 4|5) boxes, or None (then pass ``boxes`` to every call).
        weights, depth_weights, network, allow_random_weights: see :func:`load_network`; with none of
            them, "2D" and "3D" use the networks bundled with the package (:mod:`fa_lib.bundled`;
            ``self.bundled`` is then their manifest entry)
            (``network`` may be an already-built FAN / FanFull; :meth:`from_network` is the short way).
        flip_tta: also run the mirrored crop and average the un-mirrored heatmaps (in the same
            forward pass; twice the compute).
        batch_size: faces per forward pass.
        optimize: use :func:`fa_lib.inference.optimize_for_inference` (exact, faster on CPU).
            Without it the network is used as given (moved to ``device``, in eval mode).
        input_size: the crop side (px) the network reads: None takes the size a checkpoint of this
            project records (e.g. 128 for a quick-profile FAN), else the thesis's 256.
        heatmap_size: the side of the network's heatmaps (None: ``input_size // 4``, FAN's stem
            divides the crop by 4); checked against the network's output.
        compile: with ``optimize``, also compile the network with ``torch.compile`` (``CompiledFAN``:
            a one-off ~40 s compilation, then the fastest CPU path; falls back to the eager optimised
            network, with a warning, where no C++ compiler is available).
        antialias: shrink the image with area averaging before cropping a face more than twice the
            crop's side (default); False crops exactly as :func:`fa_lib.geometry.crop_image`.
        name: the predictor's name in result tables (default ``"FaceAligner (<landmarks>)"``).
        decoder: how heatmaps become points (None: what a checkpoint of this project records, e.g.
            the bundled networks' ``"subpixel"``, else ``"quarter"``): ``"quarter"`` (the official FAN
            rule: argmax moved a quarter pixel toward the larger neighbour; what the official
            checkpoints were evaluated with) or ``"subpixel"`` (a Newton step on the smoothed log-heatmap,
            :func:`fa_lib.heatmaps.decode_heatmaps_subpixel`: smoother points, no quarter-pixel
            quantisation, which matters most on small heatmaps). Points are never rounded.
        super_resolution: a trained Super-FAN (the file chapter 6 exports, or a
            :class:`~fa_lib.models.superfan.SuperFan`): faces whose box is smaller than
            ``super_resolution_below`` px (its longer side) are framed like Super-FAN's training faces,
            resampled to 16 px, super-resolved to 64 px and localised by Super-FAN's own FAN
            (:class:`TinyFaces`); larger faces take the normal path. Its points are the projections of
            the 3D landmarks (chapter 6's protocol); ``Faces.super_resolved`` says which faces took it.
    """

    def __init__(self, landmarks: str = "2D", device: str = "auto", detector="dlib-cnn", weights=None,
                 network=None, flip_tta: bool = False, batch_size: int = 16, depth_weights=None,
                 allow_random_weights: bool = False, optimize: bool = True, compile: bool = False,
                 input_size: int | None = None, heatmap_size: int | None = None, antialias: bool = True,
                 name: str | None = None, decoder: str | None = None, super_resolution=None,
                 super_resolution_below: float = 30.0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        #: the bundled network's manifest entry when no weights were given (:mod:`fa_lib.bundled`)
        self.bundled: dict | None = None
        if weights is None and network is None and not allow_random_weights and landmarks in bundled.NETWORKS:
            try:
                weights, self.bundled = bundled.bundled_weights(landmarks)
            except FileNotFoundError:
                pass  # load_network explains what to pass
        if decoder is None:
            decoder = checkpoint_extra(weights).get("decoder", "quarter") if isinstance(
                weights, (str, os.PathLike)) else "quarter"
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.decoder = decoder
        self.landmarks_type = landmarks
        if input_size is None:
            input_size = checkpoint_input_size(weights) if isinstance(weights, (str, os.PathLike)) else None
        self.input_size = int(input_size or INPUT_SIZE)
        if self.input_size < 16 or self.input_size % 4:
            raise ValueError(f"input_size must be a multiple of 4 and >= 16 (FAN's heatmaps are 1/4 of "
                             f"the crop), got {input_size}")
        self.heatmap_size = int(heatmap_size) if heatmap_size is not None else self.input_size // 4
        if self.heatmap_size < 1:
            raise ValueError(f"heatmap_size must be positive, got {heatmap_size}")
        self.device = resolve_device(device)
        model = load_network(landmarks, weights, depth_weights, network, allow_random_weights)
        if compile and not optimize:
            raise ValueError("compile=True needs optimize=True (it compiles the optimised network)")
        self.network = (optimize_for_inference(model, compile=compile) if optimize else model).to(self.device).eval()
        self.detector: FaceDetector | None = make_detector(detector)
        self.flip_tta = bool(flip_tta)
        self.batch_size = int(batch_size)
        self.antialias = bool(antialias)
        self.name = name or f"FaceAligner ({landmarks})"
        if super_resolution is not None and landmarks == "3D-full":
            raise ValueError("super_resolution cannot give landmarks='3D-full' (Super-FAN gives the 2D projections "
                             "of the 3D landmarks); use landmarks='3D' or '2D'")
        if not super_resolution_below > 0:
            raise ValueError(f"super_resolution_below must be a positive face size in px, got {super_resolution_below}")
        #: Super-FAN for the faces smaller than ``super_resolution_below`` px (None: every face takes FAN)
        self.tiny = None if super_resolution is None else TinyFaces(super_resolution, self.device)
        self.super_resolution_below = float(super_resolution_below)

    @classmethod
    def from_network(cls, network: nn.Module, input_size: int, heatmap_size: int | None = None, *,
                     landmarks: str = "2D", device: str = "auto", detector=None, **kwargs) -> "FaceAligner":
        """An aligner around a network already in memory (e.g. a FAN the chapter-4 experiments
        trained on ``input_size`` px crops with ``heatmap_size`` px heatmaps).

        ``network``: a FAN with 3 input channels ("2D", "3D") or a FanFull ("3D-full");
        ``detector`` defaults to None (give the face boxes: ``predict(image, boxes)``,
        ``get_landmarks_from_image(image, boxes=...)``); every other keyword as in the constructor
        (``optimize=False`` runs the module itself, ``antialias=False`` crops exactly as
        :func:`fa_lib.geometry.crop_image`, ``batch_size``, ``flip_tta``, ``name``, ...).
        """
        if not isinstance(network, nn.Module):
            raise TypeError(f"from_network takes an nn.Module, got {type(network).__name__}")
        return cls(landmarks, device=device, detector=detector, network=network, input_size=input_size,
                   heatmap_size=heatmap_size, **kwargs)

    def __repr__(self) -> str:
        return (f"FaceAligner(landmarks={self.landmarks_type!r}, device={str(self.device)!r}, "
                f"detector={self.detector!r}, flip_tta={self.flip_tta}, batch_size={self.batch_size}, "
                f"input_size={self.input_size})")

    # -- network ---------------------------------------------------------------------
    def _fan(self) -> nn.Module:
        return self.network.fan if self.landmarks_type == "3D-full" else self.network

    def _heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """Last-stack heatmaps (N, 68, heatmap_size, heatmap_size), flip-averaged when ``flip_tta``."""
        n = crops.shape[0]
        inputs = torch.cat([crops, crops.flip(-1)]) if self.flip_tta else crops
        heatmaps = self._fan()(inputs)[-1].float()
        if tuple(heatmaps.shape[-2:]) != (self.heatmap_size, self.heatmap_size):
            raise ValueError(f"the network gives {tuple(heatmaps.shape[-2:])} heatmaps for {self.input_size} px "
                             f"crops, not the {self.heatmap_size} px this aligner was given (heatmap_size)")
        if self.flip_tta:
            mirrored = heatmaps[n:][:, torch.as_tensor(FLIP_PERMUTATION_68)].flip(-1)
            heatmaps = (heatmaps[:n] + mirrored) / 2
        return heatmaps

    def _predict_crops(self, crops: np.ndarray, uncrop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) crops and their heatmap px -> image px affines (N, 3, 3) -> (points
        (N, 68, 2|3) in image px, scores (N, 68))."""
        points, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(crops[start:start + self.batch_size]).to(self.device)
                inverse = uncrop[start:start + self.batch_size]
                heatmaps = self._heatmaps(batch)
                if self.landmarks_type != "3D-full":
                    xy, score = heatmaps_to_image_points(heatmaps, inverse=inverse, decoder=self.decoder)
                else:
                    # the depth network reads the crop with the decoded points (crop px); its z, in
                    # crop px, is scaled to heatmap px so that the uncrop scales it with x and y
                    decode = decode_heatmaps if self.decoder == "quarter" else decode_heatmaps_subpixel
                    hm_xy, score = decode(heatmaps)
                    to_crop = self.input_size / self.heatmap_size
                    crop_xy = (hm_xy * to_crop).to(self.device)
                    z = self.network.depth(self.network.depth_input(batch[:, :3], crop_xy))
                    xyz = torch.cat([hm_xy.cpu(), (z.float().cpu() / to_crop)[..., None]], -1)
                    xy, score = heatmap_coords_to_image(xyz, inverse=inverse), score.cpu().numpy()
                points.append(xy)
                scores.append(score)
        if not points:
            dims = 3 if self.landmarks_type == "3D-full" else 2
            return np.zeros((0, 68, dims), np.float32), np.zeros((0, 68), np.float32)
        return np.concatenate(points).astype(np.float32), np.concatenate(scores).astype(np.float32)

    # -- faces -----------------------------------------------------------------------
    def _boxes_for(self, image: np.ndarray, boxes) -> np.ndarray:
        """The face boxes of ``image`` (full-resolution px): given, or detected. A large photo is
        searched on a copy shrunk to :data:`DETECT_MAX_SIDE` px (area averaging), its boxes scaled
        back; the faces are then cropped from the original."""
        if boxes is not None:
            return _as_scored_boxes(boxes, "boxes")
        if self.detector is None:
            raise ValueError("this FaceAligner has no detector (detector=None): pass boxes=[[x1, y1, "
                             "x2, y2], ...] for every image")
        height, width = image.shape[:2]
        shrink = max(height, width) / DETECT_MAX_SIDE
        if shrink <= 1.0:
            return self.detector.detect(image)
        import cv2

        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        found = np.array(self.detector.detect(cv2.resize(image, size, interpolation=cv2.INTER_AREA)),
                         np.float32, copy=True)
        if len(found):  # small px -> full px (continuous convention: x scales by W / w)
            found[:, [0, 2]] *= width / size[0]
            found[:, [1, 3]] *= height / size[1]
        return found

    def get_landmarks_from_batch(self, images: Sequence, boxes: Sequence | None = None,
                                 return_details: bool = False, names: Sequence[str] | None = None,
                                 raise_errors: bool = False) -> list:
        """Landmarks of every face of every image, with one forward pass per ``batch_size`` faces.

        ``images``: paths and/or arrays (or a (B, H, W, 3) array / (B, 3, H, W) tensor);
        ``boxes``: None (detect) or one entry per image ((K, 4|5) boxes or None to detect).
        Returns one entry per image: a list of (68, 2|3) float32 arrays (``None`` for an image that
        failed, with a warning), or :class:`Faces` with ``return_details``. A failing image (missing
        file, undecodable, bad shape) never stops the batch unless ``raise_errors``.
        """
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor)):
            raise ValueError("get_landmarks_from_batch takes a sequence of images; use "
                             "get_landmarks_from_image for one")
        images = list(images)
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"boxes must have one entry per image ({len(images)}), got {len(boxes)}")
        results: list[Faces] = []
        crops, owners, centers, scales = [], [], [], []
        for index, image in enumerate(images):
            label = names[index] if names is not None else (
                str(image) if isinstance(image, (str, os.PathLike)) else f"<array {index}>")
            try:
                array, label = read_image(image, label)
                face_boxes = self._boxes_for(array, None if boxes is None else boxes[index])
                tiny = np.array([self.tiny is not None and max(b[2] - b[0], b[3] - b[1]) < self.super_resolution_below
                                 for b in face_boxes], bool)
                faces = Faces([None] * len(face_boxes), [None] * len(face_boxes), face_boxes, label,
                              note=None if len(face_boxes) else "no face found", super_resolved=tiny.tolist())
                if tiny.any():
                    points, score = self.tiny.landmarks(array, face_boxes[tiny])
                    for slot, p, sc in zip(np.flatnonzero(tiny), points, score):
                        faces.landmarks[slot], faces.scores[slot] = p, sc
                for slot, box in enumerate(face_boxes):
                    if tiny[slot]:
                        continue
                    crop, center, scale = _crop_face(array, box, self.input_size, self.antialias)
                    crops.append(crop)
                    owners.append((index, slot))
                    centers.append(center)
                    scales.append(scale)
                results.append(faces)
            except (FileNotFoundError, ValueError, OSError) as error:
                if raise_errors:
                    raise
                results.append(Faces.failed(label, f"{type(error).__name__}: {error}"))
        # heatmap px -> image px of every face's crop
        uncrop = geometry.uncrop_matrix(np.asarray(centers, np.float64).reshape(-1, 2),
                                        np.asarray(scales, np.float64), self.heatmap_size)
        crops = np.stack(crops) if crops else np.zeros((0, 3, self.input_size, self.input_size), np.float32)
        points, scores = self._predict_crops(crops, uncrop)
        for face, (owner, slot) in enumerate(owners):
            results[owner].landmarks[slot] = points[face]
            results[owner].scores[slot] = scores[face]
        for faces in results:
            if faces.error:
                warnings.warn(f"{faces.source}: {faces.error}", stacklevel=2)
            elif faces.note:
                warnings.warn(f"{faces.source}: {faces.note}", stacklevel=2)
        if return_details:
            return results
        return [None if faces.error else faces.landmarks for faces in results]

    def get_landmarks_from_image(self, image, boxes=None, return_details: bool = False):
        """Landmarks of the faces in one image (path or array): a list of (68, 2|3) float32 arrays
        (empty, with a warning, when no face is found), or :class:`Faces` with ``return_details``.
        Bad input raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
        result = self.get_landmarks_from_batch([image], None if boxes is None else [boxes],
                                               return_details=True, raise_errors=True)[0]
        return result if return_details else result.landmarks

    def get_landmarks_from_directory(self, path, extensions: Iterable[str] = IMAGE_EXTENSIONS,
                                     recursive: bool = True, show_progress: bool = True,
                                     return_details: bool = False, images_per_batch: int = 8
                                     ) -> dict:
        """Landmarks of every image under ``path`` -> {file path: landmarks list (None on error)
        or :class:`Faces`}. Images are processed ``images_per_batch`` at a time (their faces in one
        forward pass); a tqdm progress bar counts images; failures are reported per file."""
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        files = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir())
                       if p.is_file() and p.suffix.lower() in wanted)
        results: dict = {}
        from tqdm.auto import tqdm

        with tqdm(total=len(files), desc="landmarks", unit="image", disable=not show_progress) as bar:
            for start in range(0, len(files), max(1, images_per_batch)):
                chunk = files[start:start + images_per_batch]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for file, faces in zip(chunk, self.get_landmarks_from_batch(chunk, return_details=True)):
                        results[str(file)] = faces if return_details else (
                            None if faces.error else faces.landmarks)
                bar.update(len(chunk))
        return results

    # -- LandmarkPredictor interface ---------------------------------------------------
    def detect(self, image) -> np.ndarray:
        if self.detector is None:
            return np.zeros((0, 4), np.float32)
        return self.detector.detect(image)[:, :4]

    def predict_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        faces = self.get_landmarks_from_batch([image], [boxes], return_details=True, raise_errors=True)[0]
        return [points[:, :2] for points in faces.landmarks]


# ---------------------------------------------------------------------------------- CLI
def _draw_overlay(image: np.ndarray, faces: Faces) -> np.ndarray:
    """RGB copy of ``image`` with each face box and its landmarks drawn."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for points, box in zip(faces.landmarks, faces.boxes):
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        radius = max(1, round((box[2] - box[0]) / 80))
        for x, y in points[:, :2]:
            # our pixel centres are at +0.5; OpenCV's at integers
            cv2.circle(canvas, (int(round(x - 0.5)), int(round(y - 0.5))), radius, (255, 64, 0), -1)
    return canvas


def _write_outputs(out_dir: Path, stem: str, image: np.ndarray, faces: Faces, landmarks_type: str) -> None:
    import cv2

    record = faces.to_json()
    record.update(width=int(image.shape[1]), height=int(image.shape[0]), landmarks_type=landmarks_type,
                  convention="pixel (row i, col j) has its centre at (x = j + 0.5, y = i + 0.5)")
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(record, indent=1))
    dims = faces.landmarks[0].shape[1] if faces.landmarks else (3 if landmarks_type == "3D-full" else 2)
    header = ["face", "point", "x", "y"] + (["z"] if dims == 3 else []) + ["score"]
    lines = [",".join(header)]
    for f, (points, score) in enumerate(zip(faces.landmarks, faces.scores)):
        for p, (row, s) in enumerate(zip(points, score)):
            lines.append(",".join([str(f), str(p)] + [f"{v:.4f}" for v in row] + [f"{s:.5f}"]))
    atomic_write_text(out_dir / f"{stem}.csv", "\n".join(lines) + "\n")
    overlay = _draw_overlay(image, faces)
    cv2.imwrite(str(out_dir / f"{stem}_overlay.png"), overlay[:, :, ::-1])


def _expand_inputs(inputs: Sequence[str]) -> list[Path]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.append(path)  # a missing file is reported per file, not here
    return files


def load_boxes_json(path) -> list | dict:
    """The parsed ``--boxes`` JSON file (shared by ``fa-lib landmarks`` and ``fa-lib convert-ls3dw``),
    with clear errors for a missing file or invalid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--boxes file not found: {path}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"--boxes {path} is not valid JSON: {err}") from err


def _read_boxes_json(path: str, files: list[Path]) -> list | None:
    """--boxes: a JSON list of boxes for every image, or {image path or name: boxes}."""
    spec = load_boxes_json(path)
    if isinstance(spec, list):
        return [spec] * len(files)
    if not isinstance(spec, dict):
        raise ValueError(f"--boxes {path} must hold a list of boxes or an object {{image: boxes}}")
    out = []
    for file in files:
        boxes = spec.get(str(file), spec.get(file.name))
        out.append(boxes)
    return out


def landmarks_main(args: argparse.Namespace) -> int:
    """``fa-lib landmarks``: exit code 0 when every image was processed (with or without a face), 1
    when any image failed (the others are still written), 2 when the aligner cannot be built (e.g.
    unreadable weights). Ends with one summary line: processed / no face / failed."""
    files = _expand_inputs(args.images)
    if not files:
        print("fa-lib landmarks: no images given", file=sys.stderr)
        return 1
    detector = None if args.detector == "none" else args.detector
    try:
        boxes = _read_boxes_json(args.boxes, files) if args.boxes else None
        if boxes is not None and detector is None:
            boxes = [b if b is not None else [] for b in boxes]
        aligner = FaceAligner(landmarks=args.landmarks, device=args.device, detector=detector,
                              weights=args.weights, depth_weights=args.depth_weights,
                              flip_tta=args.flip, compile=args.compile, input_size=args.input_size,
                              decoder=args.decoder, super_resolution=args.super_resolution,
                              super_resolution_below=args.super_resolution_below)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"fa-lib landmarks: {error}", file=sys.stderr)
        return 2
    if aligner.bundled is not None:
        print(f"fa-lib landmarks: using {bundled.describe(aligner.bundled)}", file=sys.stderr)
    elif args.weights:
        print(f"fa-lib landmarks: weights {describe_checkpoint(args.weights)}", file=sys.stderr)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    processed = n_faces = no_face = failed = 0
    used_stems: set[str] = set()
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(files), args.batch_size), desc="landmarks", unit="batch",
                      disable=args.quiet):
        chunk = files[start:start + args.batch_size]
        chunk_boxes = None if boxes is None else boxes[start:start + args.batch_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = aligner.get_landmarks_from_batch(chunk, chunk_boxes, return_details=True)
        for file, faces in zip(chunk, results):
            if faces.error:
                print(f"  {file}: FAILED: {faces.error}", file=sys.stderr)
                failed += 1
                continue
            if out_dir is None:  # no output folder: the landmarks go to stdout, one JSON line per image
                print(json.dumps({**faces.to_json(), "landmarks_type": args.landmarks}))
            else:
                stem = file.stem
                k = 2
                while stem in used_stems:
                    stem, k = f"{file.stem}_{k}", k + 1
                used_stems.add(stem)
                image, _ = read_image(file)
                _write_outputs(out_dir, stem, image, faces, args.landmarks)
            processed += 1
            n_faces += len(faces.landmarks)
            no_face += not faces.landmarks
            if faces.note:
                print(f"  {file}: {faces.note}", file=sys.stderr)
    where = f"outputs in {out_dir}" if out_dir is not None else "landmarks printed above"
    print(f"fa-lib landmarks: {len(files)} images: {processed} processed ({n_faces} faces), {no_face} with no "
          f"face, {failed} failed; {where}", file=sys.stderr if out_dir is None else sys.stdout)
    return 1 if failed else 0


def add_landmarks_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``fa-lib landmarks`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "landmarks", help="68 landmarks of the faces in photos (JSON, CSV, overlay PNG per image)",
        description="Detect faces and localise 68 landmarks with a trained FAN: by default the project's "
                    "own 2D-FAN / 3D-FAN bundled with the package (trained on synthetic faces); --weights "
                    "takes an official face-alignment checkpoint or any checkpoint of this project.")
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--out", default=None,
                        help="output folder (JSON, CSV and overlay PNG per image); without it the landmarks "
                             "are printed, one JSON line per image")
    parser.add_argument("--landmarks", default="2D", choices=LANDMARK_TYPES)
    parser.add_argument("--weights", default=None,
                        help="FAN checkpoint: official, or ours (a saved model, a run's model.pt, a trainer's "
                             "last.pt); default: the bundled network")
    parser.add_argument("--depth-weights", default=None, help="depth network checkpoint (3D-full)")
    parser.add_argument("--detector", default="dlib-cnn", choices=["dlib-cnn", "dlib", "opencv", "none"],
                        help="face detector: dlib's CNN (default: every annotated real test face found, ~1-3 s "
                             "per photo on one CPU thread), dlib's HOG (fast, frontal faces), OpenCV's Haar "
                             "cascades, or none (give --boxes)")
    parser.add_argument("--boxes", default=None,
                        help="JSON file: a list of [x1, y1, x2, y2] boxes for every image, or "
                             "{image path or file name: boxes}; images without an entry are detected")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--decoder", default=None, choices=list(DECODERS),
                        help="heatmap decoding: the official quarter-pixel rule or the sub-pixel fit (default: "
                             "what the weights record, else quarter)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--input-size", type=int, default=None,
                        help="crop side the network reads (default: what the checkpoint records, else 256)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network (~40 s once; worth it for many images on a CPU)")
    parser.add_argument("--super-resolution", default=None, metavar="FILE",
                        help="a trained Super-FAN (the super_fan.pt chapter 6 exports): faces smaller than "
                             "--super-resolution-below px are super-resolved from 16 to 64 px and localised by it")
    parser.add_argument("--super-resolution-below", type=float, default=30.0, metavar="PX",
                        help="face size (longer box side, px) under which --super-resolution is used (default 30)")
    parser.set_defaults(func=landmarks_main)
    return parser
