"""Chapter 6's 16 -> 64 px pairs made from real faces (with ``data_root``).

The thesis trains Super-FAN on real faces brought to 64x64 and bilinearly down-sampled to 16x16: 300-W-LP,
AFLW, ~20k random CelebA faces ("to avoid biasing ... towards frontal poses") and part of LS3D-W balanced,
and tests across pose on the rest of LS3D-W balanced (thesis 6.1, 6.4). :class:`RealLowResPairs` does that
to any real face dataset of :mod:`fa_lib.data.real`: each face is cropped to a 64 px square framed as the
synthetic pairs are (the 68 landmarks' box filling :data:`FACE_FRACTION` of the side, centred), down-sampled
by area, and given its 16 px input (:func:`fa_lib.data.lowres.degrade_low_resolution`, with the real-world
degradations of 6.3.3 when asked).

AFLW (21 points, only the visible ones annotated) and CelebA (5 points) have no 68 landmarks: their faces
are framed by the 68-point box their points imply (:func:`implied_68_points`: the face model's mean 68
landmarks seen through the scaled-orthographic camera fitted to the points they have), and their pairs
carry no landmarks. The thesis's heatmap loss needs none (its targets come from a FAN on the
high-resolution face, eq. 6.4), so they train the super-resolution networks; the FANs that need landmark
targets (the teacher, FAN-bilinear, the feature stand-ins) train on :meth:`RealLowResPairs.annotated`.
LS3D-W's files carry no head pose: its faces get the pose fitted to their landmarks
(:func:`fa_lib.convert_ls3dw.estimate_pose`), as in chapter 4.

As in the thesis (6.1: "3,000 images" of LS3D-W balanced for testing, the rest of it among the training
sets), :func:`real_pairs` splits LS3D-W balanced: ``lowres_test_size / 3`` faces of each |yaw| bin for
testing (1,000 each in the full profile), the others join the training sets.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from fa_lib import geometry
from fa_lib.geometry import fit_orthographic_camera, pose_from_rotation, project_orthographic
from fa_lib.convert_ls3dw import estimate_pose, mean_landmarks_3d
from fa_lib.data.formats import read_ls3dw_landmarks
from fa_lib.data.lowres import HIGH_RES, Degradation, degrade_low_resolution
from fa_lib.data.real import RealFaceDataset
from fa_lib.data.synthetic import yaw_bin_of
from fa_lib.experiments.common import YAW_BIN_LABELS
from fa_lib.experiments.runs import run_key
from fa_lib.landmarks import CELEBA_5_FROM_68, PIFA_21_FROM_68, subset_matrix

#: the 68-point box's longer side over the 64 px image side in the synthetic pairs (their median,
#: ``Chapter6.framing()`` on the quick profile's training pairs: 0.817)
FACE_FRACTION = 0.817
#: the largest intermediate crop (px) before the area down-sampling to 64 px
MAX_INTERMEDIATE = 512
#: the sparse markups a face can be framed from, by their number of points (the 68-point indices
#: each point corresponds to): CelebA's 5, AFLW's 21
SPARSE_MARKUPS: dict[int, tuple[tuple[int, ...], ...]] = {5: CELEBA_5_FROM_68, 21: PIFA_21_FROM_68}
#: the real sets with 68 landmarks on every face (the others are framed from a sparse markup)
ANNOTATED_KINDS = frozenset({"300w_lp", "ls3dw", "aflw2000_3d", "pts_folder", "300vw"})
#: how many random CelebA training faces join the training pairs (thesis 6.1: "~20k")
CELEBA_FACES = 20_000
#: the fewest annotated points a sparse markup is framed from (the camera has 6 degrees of freedom)
MIN_SPARSE_POINTS = 4


def implied_68_points(points, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """The 68 points a sparse markup implies: the scaled-orthographic camera that best maps the face
    model's mean landmarks (each sparse point the mean of its ``groups`` entry, default the markup of
    :data:`SPARSE_MARKUPS` with as many points) onto ``points`` (K, 2; NaN = not annotated; at least
    :data:`MIN_SPARSE_POINTS`), applied to all 68 mean landmarks: ((68, 2) px, (yaw, pitch, roll) degrees)."""
    points = np.asarray(points, np.float64)[:, :2]
    if groups is None:
        if len(points) not in SPARSE_MARKUPS:
            raise ValueError(f"no sparse markup with {len(points)} points; known: {sorted(SPARSE_MARKUPS)}")
        groups = SPARSE_MARKUPS[len(points)]
    if len(groups) != len(points):
        raise ValueError(f"{len(points)} points for a markup of {len(groups)}")
    mean = mean_landmarks_3d()
    reference = subset_matrix(groups) @ mean
    scale, rotation, translation = fit_orthographic_camera(points, reference)
    return project_orthographic(mean, scale, rotation, translation), np.asarray(pose_from_rotation(rotation))


def crop_square(image: np.ndarray, centre, side: float, size: int) -> np.ndarray:
    """The square of ``side`` image px centred on ``centre`` (x, y) at ``size`` px: cropped near the face's own
    size (at most :data:`MAX_INTERMEDIATE`), then area down-sampled, so that large faces do not alias."""
    middle = int(min(max(size, round(side)), MAX_INTERMEDIATE))
    crop = geometry.crop_image(image, np.asarray(centre, np.float64), side / geometry.CROP_SIDE_PER_SCALE, middle)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if middle > size else crop


def _framing_points(face: dict) -> tuple[np.ndarray, bool, np.ndarray | None]:
    """(points whose box frames the face, whether they are the face's own 68 landmarks, the pose fitted
    on the way or None)."""
    if face.get("landmarks_3d") is not None:
        return np.asarray(face["landmarks_3d"], np.float32), True, None
    points = face.get("landmarks_2d")
    if points is not None and len(points) == 68:
        return np.asarray(points, np.float32), True, None
    box = np.asarray(face["box"], np.float64)
    if points is not None and len(points) in SPARSE_MARKUPS and np.isfinite(points).all(1).sum() >= MIN_SPARSE_POINTS:
        implied, pose = implied_68_points(points)
        side = max(np.ptp(implied[:, 0]), np.ptp(implied[:, 1]))
        given = max(box[2] - box[0], box[3] - box[1])
        # a near-degenerate fit (e.g. points almost on a line) implies an absurd face: keep the box instead
        if given <= 0 or 0.5 <= side / given <= 2.0:
            return implied.astype(np.float32), False, pose
    # no usable points: the dataset's face box stands for the 68-point box
    return np.array([box[:2], box[2:]], np.float32), False, None


class RealLowResPairs(Dataset):
    """Real faces as chapter-6 pairs: the sample dict of the synthetic pairs (``image`` 64x64,
    ``image_lr`` 16x16, ``landmarks_3d`` and ``box`` in 64 px, ``pose``), from the faces of ``faces`` (a
    :class:`~fa_lib.data.real.RealFaceDataset`, or a list of ``(dataset, indices)`` sources, ``indices``
    None for all of it). ``degradation`` None: plain bilinear down-sampling; the 16 px input of pair i
    depends on (seed, i) only."""

    def __init__(self, faces, *, degradation: Degradation | None = None, seed: int = 0,
                 face_fraction: float = FACE_FRACTION):
        if not 0 < face_fraction <= 1:
            raise ValueError(f"face_fraction must be in (0, 1], got {face_fraction}")
        sources = faces if isinstance(faces, (list, tuple)) else [(faces, None)]
        self.sources = [(ds, np.arange(len(ds)) if idx is None else np.asarray(idx, np.int64)) for ds, idx in sources]
        self.sources = [(ds, idx) for ds, idx in self.sources if len(idx)]
        if not self.sources:
            raise ValueError("RealLowResPairs needs at least one face")
        self._offsets = np.cumsum([0] + [len(idx) for _, idx in self.sources])
        self.degradation, self.seed, self.face_fraction = degradation, int(seed), face_fraction
        parts = [f"{ds.kind} {ds.split}" + ("" if len(idx) == len(ds) else f" ({len(idx)} of {len(ds)})")
                 for ds, idx in self.sources]
        self.name = f"real {' + '.join(parts)} under {self.sources[0][0].root}, 16 -> 64 px pairs"
        self._arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def identity(self) -> dict[str, Any]:
        """What identifies these pairs in a run's cache key."""
        return {"real_pairs": [{"kind": ds.kind, "root": str(ds.root), "split": ds.split, "faces": len(idx),
                                "indices": run_key({"indices": idx.tolist()})} for ds, idx in self.sources],
                "size": len(self), "face_fraction": self.face_fraction, "seed": self.seed,
                "degradation": None if self.degradation is None else repr(self.degradation)}

    def face(self, index: int) -> dict:
        """The real face sample behind pair ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        source = int(np.searchsorted(self._offsets, index, side="right") - 1)
        ds, idx = self.sources[source]
        return ds[int(idx[index - self._offsets[source]])]

    def annotated(self) -> "RealLowResPairs":
        """The pairs of the sources with 68 landmarks on every face (:data:`ANNOTATED_KINDS`): what the
        networks trained on landmark targets use."""
        sources = [(ds, idx) for ds, idx in self.sources if ds.kind in ANNOTATED_KINDS]
        if len(sources) == len(self.sources):
            return self
        if not sources:
            raise ValueError(f"none of {self.name} has 68 landmarks per face")
        return RealLowResPairs(sources, degradation=self.degradation, seed=self.seed, face_fraction=self.face_fraction)

    def __getitem__(self, index: int) -> dict:
        face = self.face(index)
        index = index % len(self)
        points, annotated, fitted_pose = _framing_points(face)
        three_d = annotated and face.get("landmarks_3d") is not None
        x1, y1 = np.nanmin(points[:, :2], 0)
        x2, y2 = np.nanmax(points[:, :2], 0)
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float64)
        side = max(float(x2 - x1), float(y2 - y1), 1.0) / self.face_fraction
        high = crop_square(face["image"], centre, side, HIGH_RES)
        matrix = geometry.crop_matrix(centre, side / geometry.CROP_SIDE_PER_SCALE, HIGH_RES)
        moved = points.copy()
        moved[:, :2] = geometry.transform_points(points[:, :2], matrix)
        if moved.shape[1] == 3:
            moved[:, 2] = points[:, 2] * float(matrix[0, 0])
        pose = np.asarray(face["pose"], np.float32)
        if not np.isfinite(pose).all():
            pose = np.asarray(estimate_pose(points) if annotated else
                              fitted_pose if fitted_pose is not None else np.full(3, np.nan), np.float32)
        rng = np.random.default_rng([self.seed, index, 0x10])
        sample = {"image": np.ascontiguousarray(high), "landmarks_3d": moved if three_d else None,
                  "landmarks_2d": None, "visibility": None, "box": geometry.box_from_landmarks(moved[:, :2]),
                  "pose": pose, "identity": face.get("identity", -1), "source": face.get("source", ""),
                  "annotated": annotated}
        if not annotated:  # framed from a sparse markup or a box: no landmarks to learn from
            sample["landmarks_3d"] = np.full((68, 3), np.nan, np.float32)
        elif not three_d:  # 2D annotations only: the chapter's heatmaps are of the 68 points it has
            sample["landmarks_3d"] = np.concatenate([moved[:, :2], np.full((len(moved), 1), np.nan, np.float32)], 1)
        sample["image_lr"] = degrade_low_resolution(sample["image"], rng, self.degradation)
        return sample

    def array(self, key: str) -> np.ndarray:
        """``box`` or ``pose`` of every pair (read once)."""
        if key not in ("box", "pose"):
            raise KeyError(f"RealLowResPairs.array reads 'box' or 'pose', not {key!r}")
        if key not in self._arrays:
            samples = [self[i] for i in range(len(self))]
            self._arrays["box"] = np.stack([np.asarray(s["box"], np.float32) for s in samples])
            self._arrays["pose"] = np.stack([np.asarray(s["pose"], np.float32) for s in samples])
        return self._arrays[key]

    def framing(self) -> dict[str, Any]:
        """How the faces sit in their 64 px images (see ``Chapter6.framing``): set by construction."""
        return {"face_fraction": self.face_fraction, "box_center_offset": [0.0, 0.0]}


def ls3dw_test_split(faces: RealFaceDataset, per_bin: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, training) indices of LS3D-W balanced as chapter 6 uses it: ``per_bin`` faces of each |yaw|
    bin (the pose fitted to each face's landmarks, read from its annotation file alone) drawn with ``seed``
    for testing, the others for training."""
    yaws = []
    for record in faces.records:
        points = read_ls3dw_landmarks(record["annotation"])
        yaws.append(estimate_pose(points)[0])
    bins = yaw_bin_of(np.stack([np.asarray(yaws, np.float64), np.zeros(len(yaws)), np.zeros(len(yaws))], 1))
    rng = np.random.default_rng([seed, 0x6])
    test = []
    for b in range(3):
        members = np.flatnonzero(bins == b)
        test += sorted(rng.permutation(members)[:per_bin].tolist())
    test = np.asarray(sorted(test), np.int64)
    return test, np.setdiff1d(np.arange(len(faces)), test)


def _optional_set(kind: str, data_root, split: str) -> RealFaceDataset | None:
    """A training set the thesis adds when the data root has it (None when it has not)."""
    try:
        return RealFaceDataset(kind, data_root, split)
    except FileNotFoundError:
        return None


def real_pairs(data_root, *, seed: int = 0, test_size: int = 3000, celeba_faces: int = CELEBA_FACES
               ) -> tuple[RealLowResPairs, RealLowResPairs, RealLowResPairs]:
    """(training, test, degraded training) pairs from a data root: ``test_size / 3`` LS3D-W balanced
    faces per |yaw| bin for testing (:func:`ls3dw_test_split`); for training, the rest of LS3D-W balanced
    and 300-W-LP (its 3D landmarks' projections, as the synthetic pairs' heatmaps), and when the root has
    them AFLW (every face) and ``celeba_faces`` random faces of CelebA's training split (thesis 6.1)."""
    lp = RealFaceDataset("300w_lp", data_root, "train")
    ls3dw = RealFaceDataset("ls3dw", data_root, "balanced")
    test_idx, train_idx = ls3dw_test_split(ls3dw, max(1, test_size // 3), seed=seed)
    training: list[tuple[RealFaceDataset, Any]] = [(lp, None), (ls3dw, train_idx)]
    aflw = _optional_set("aflw", data_root, "all")
    if aflw is not None:
        training.append((aflw, None))
    celeba = _optional_set("celeba", data_root, "train")
    if celeba is not None:
        chosen = np.random.default_rng([seed, 0xCE1EBA]).permutation(len(celeba))[:max(0, celeba_faces)]
        training.append((celeba, np.sort(chosen)))
    return (RealLowResPairs(training, seed=seed), RealLowResPairs([(ls3dw, test_idx)], seed=seed),
            RealLowResPairs(training, degradation=Degradation(), seed=seed))


def sparse_framing_check(faces, count: int = 300) -> pd.DataFrame:
    """How well a sparse markup frames a face, measured where the 68 landmarks are known: for up to
    ``count`` faces of ``faces`` (samples with ``landmarks_3d``, a ``pose`` and optionally a
    ``visibility``), CelebA's 5 points and AFLW's 21 (the visible ones, as AFLW annotates) are taken from
    the 68, :func:`implied_68_points` gives the box they imply, and it is compared with the true 68-point
    box: the ratio of the longer sides and the distance between the centres over the true side, by |yaw|
    bin (10th, 50th and 90th percentiles). Faces whose markup has fewer than
    :data:`MIN_SPARSE_POINTS` points are counted as unframed."""
    step = max(1, len(faces) // max(1, count))
    rows = []
    for i in range(0, len(faces), step):
        sample = faces[i]
        truth = np.asarray(sample["landmarks_3d"], np.float64)[:, :2]
        if not np.isfinite(truth).all():
            continue
        visible = sample.get("visibility")
        visible = np.ones(68, bool) if visible is None else np.asarray(visible, bool)
        true_side = max(np.ptp(truth[:, 0]), np.ptp(truth[:, 1]))
        true_centre = (truth.min(0) + truth.max(0)) / 2
        yaw_bin = int(yaw_bin_of(np.asarray(sample["pose"], np.float64)[None])[0])
        for markup, groups, uses_visibility in (("CelebA 5 points", CELEBA_5_FROM_68, False),
                                                 ("AFLW 21 points (visible ones)", PIFA_21_FROM_68, True)):
            points = subset_matrix(groups) @ truth
            if uses_visibility:
                points[~np.array([visible[list(g)].all() for g in groups])] = np.nan
            row = {"markup": markup, "bin": yaw_bin, "framed": False, "side_ratio": np.nan, "centre_offset": np.nan}
            if np.isfinite(points).all(1).sum() >= MIN_SPARSE_POINTS:
                implied, _ = implied_68_points(points, groups)
                side = max(np.ptp(implied[:, 0]), np.ptp(implied[:, 1]))
                centre = (implied.min(0) + implied.max(0)) / 2
                row.update(framed=True, side_ratio=side / true_side,
                           centre_offset=float(np.linalg.norm(centre - true_centre)) / true_side)
            rows.append(row)
    frame = pd.DataFrame(rows)
    out = []
    for (markup, yaw_bin), group in frame.groupby(["markup", "bin"], sort=False):
        framed = group[group["framed"]]
        ratio = np.percentile(framed["side_ratio"], [10, 50, 90]) if len(framed) else [np.nan] * 3
        offset = np.percentile(framed["centre_offset"], [50, 90]) if len(framed) else [np.nan] * 2
        out.append({"markup": markup, "|yaw|": YAW_BIN_LABELS[yaw_bin], "faces": len(group),
                    "framed": len(framed), "side ratio p10": ratio[0], "side ratio median": ratio[1],
                    "side ratio p90": ratio[2], "centre offset median (of side)": offset[0],
                    "centre offset p90 (of side)": offset[1]})
    return pd.DataFrame(out).sort_values(["markup", "|yaw|"], ignore_index=True).round(3)
