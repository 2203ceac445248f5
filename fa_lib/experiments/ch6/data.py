"""Chapter 6's 16 -> 64 px pairs made from real faces (with ``data_root``).

The thesis trains Super-FAN on real faces (300-W-LP among them) brought to 64x64 and bilinearly
down-sampled to 16x16, and tests across pose on LS3D-W Balanced (thesis 6.1, 6.4).
:class:`RealLowResPairs` does that to any real face dataset of :mod:`fa_lib.data.real`: each face is
cropped to a 64 px square framed as the synthetic pairs are (the 68 landmarks' box filling
:data:`FACE_FRACTION` of the side, centred), down-sampled by area, and given its 16 px input
(:func:`fa_lib.data.lowres.degrade_low_resolution`, with the real-world degradations of 6.3.3 when asked).
LS3D-W's files carry no head pose: its faces get the pose fitted to their landmarks
(:func:`fa_lib.convert_ls3dw.estimate_pose`), as in chapter 4.

As in the thesis (6.1: "3,000 images" of LS3D-W balanced for testing, the rest of it among the training
sets), :func:`real_pairs` splits LS3D-W balanced: ``lowres_test_size / 3`` faces of each |yaw| bin for
testing (1,000 each in the full profile), the others join 300-W-LP in training. The thesis's other
training sets (AFLW; ~20k CelebA faces, which have no landmarks) are not used.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from fa_lib import geometry
from fa_lib.convert_ls3dw import estimate_pose
from fa_lib.data.formats import read_ls3dw_landmarks
from fa_lib.data.lowres import HIGH_RES, Degradation, degrade_low_resolution
from fa_lib.data.real import RealFaceDataset
from fa_lib.data.synthetic import yaw_bin_of
from fa_lib.experiments.runs import run_key

#: the 68-point box's longer side over the 64 px image side in the synthetic pairs (their median,
#: ``Chapter6.framing()`` on the quick profile's training pairs: 0.817)
FACE_FRACTION = 0.817
#: the largest intermediate crop (px) before the area down-sampling to 64 px
MAX_INTERMEDIATE = 512


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

    def __getitem__(self, index: int) -> dict:
        face = self.face(index)
        index = index % len(self)
        three_d = face.get("landmarks_3d") is not None
        points = np.asarray(face["landmarks_3d"] if three_d else face["landmarks_2d"], np.float32)
        x1, y1 = points[:, :2].min(0)
        x2, y2 = points[:, :2].max(0)
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float64)
        side = max(float(x2 - x1), float(y2 - y1), 1.0) / self.face_fraction
        scale = side / geometry.CROP_SIDE_PER_SCALE
        # crop near the face's own size, then area down-sampling: no aliasing from large faces
        middle = int(min(max(HIGH_RES, round(side)), MAX_INTERMEDIATE))
        crop = geometry.crop_image(face["image"], centre, scale, middle)
        high = cv2.resize(crop, (HIGH_RES, HIGH_RES), interpolation=cv2.INTER_AREA) if middle > HIGH_RES else crop
        matrix = geometry.crop_matrix(centre, scale, HIGH_RES)
        moved = points.copy()
        moved[:, :2] = geometry.transform_points(points[:, :2], matrix)
        if moved.shape[1] == 3:
            moved[:, 2] = points[:, 2] * float(matrix[0, 0])
        pose = np.asarray(face["pose"], np.float32)
        if not np.isfinite(pose).all():
            pose = np.asarray(estimate_pose(points), np.float32)
        rng = np.random.default_rng([self.seed, index, 0x10])
        sample = {"image": np.ascontiguousarray(high), "landmarks_3d": moved if three_d else None,
                  "landmarks_2d": None, "visibility": None, "box": geometry.box_from_landmarks(moved[:, :2]),
                  "pose": pose, "identity": face.get("identity", -1), "source": face.get("source", "")}
        if not three_d:  # 2D annotations only: the chapter's heatmaps are of the 68 points it has
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


def real_pairs(data_root, *, seed: int = 0, test_size: int = 3000
               ) -> tuple[RealLowResPairs, RealLowResPairs, RealLowResPairs]:
    """(training, test, degraded training) pairs from a data root: ``test_size / 3`` LS3D-W balanced
    faces per |yaw| bin for testing (:func:`ls3dw_test_split`), the rest of LS3D-W balanced and 300-W-LP
    (its 3D landmarks' projections, as the synthetic pairs' heatmaps) for training."""
    lp = RealFaceDataset("300w_lp", data_root, "train")
    ls3dw = RealFaceDataset("ls3dw", data_root, "balanced")
    test_idx, train_idx = ls3dw_test_split(ls3dw, max(1, test_size // 3), seed=seed)
    training = [(lp, None), (ls3dw, train_idx)]
    return (RealLowResPairs(training, seed=seed), RealLowResPairs([(ls3dw, test_idx)], seed=seed),
            RealLowResPairs(training, degradation=Degradation(), seed=seed))
