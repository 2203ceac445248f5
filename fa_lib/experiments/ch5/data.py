"""Chapter 5's data: the training and test sets, the test sets prepared once as tensors, and the
decoding of a network's outputs into image landmarks.

The thesis trains every network of chapter 5 on 300-W-LP and tests on LS3D-W Balanced, AFLW,
AFLW-PIFA and AFLW2000-3D. Without ``data_root`` every experiment trains on the synthetic 300-W-LP
stand-in (:func:`fa_lib.data.synthetic.train_300wlp_standin`, 3D landmarks) and tests on the
yaw-balanced stand-in (:func:`~fa_lib.data.synthetic.test_yaw_balanced`, equal counts in |yaw| 0-30,
30-60, 60-90, people never seen in training) and the grey AFLW-PIFA stand-in
(:func:`~fa_lib.data.synthetic.pifa_standin`).
"""
from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from fa_lib.data.pipeline import TransformedDataset
from fa_lib.data.real import RealFaceDataset, make_dataset
from fa_lib.experiments.ch3.context import PIFA_READER_FILE, find_aflw_pifa
from fa_lib.data.synthetic import pifa_standin, test_yaw_balanced, train_300wlp_standin, yaw_bin_of
from fa_lib.experiments.runs import dataset_identity  # noqa: F401  (re-exported)
from fa_lib.heatmaps import heatmaps_to_image_points
from fa_lib.experiments.ch5.scale import Ch5Setup


@dataclass
class Ch5Data:
    """Training and test sets of the chapter (synthetic stand-ins unless ``data_root`` is given)."""

    train: Dataset
    test: Dataset
    pifa: Dataset | None
    seed: int
    real: bool = False

    def describe(self) -> dict[str, Any]:
        def name(ds):
            if isinstance(ds, RealFaceDataset):
                return f"real {ds.kind} {ds.split} under {ds.root}"
            return getattr(ds, "name", type(ds).__name__) if ds is not None else None

        return {"train": f"{name(self.train)} ({len(self.train)} faces)",
                "test": f"{name(self.test)} ({len(self.test)} faces, yaw-balanced)",
                "pifa": None if self.pifa is None else f"{name(self.pifa)} ({len(self.pifa)} faces)",
                "seed": self.seed, "real": self.real}


def load_data(setup: Ch5Setup, seed: int = 0, data_root=None, progress: bool = False) -> Ch5Data:
    """The 300-W-LP (stand-in), yaw-balanced test and AFLW-PIFA (stand-in) sets of the profile.

    With ``data_root`` the real 300-W-LP, LS3D-W balanced and AFLW-PIFA under it are read
    (``fa_lib.data.real.make_dataset``); the AFLW-PIFA set is optional there.
    """
    if data_root is None:
        return Ch5Data(train=train_300wlp_standin(setup.profile, seed=seed, progress=progress),
                       test=test_yaw_balanced(setup.profile, seed=seed, progress=progress),
                       pifa=pifa_standin(setup.profile, seed=seed, progress=progress), seed=seed)
    train = make_dataset("300w_lp", setup.profile, data_root)
    test = make_dataset("ls3dw_balanced", setup.profile, data_root)
    # the AFLW-PIFA test faces as chapter 3 finds them (aflw_pifa/{train,test}/ and its reader.json)
    folder = find_aflw_pifa(data_root)
    pifa = None
    if folder is not None and (folder / PIFA_READER_FILE).is_file():
        pifa = make_dataset("aflw_pifa", setup.profile, folder, split="test",
                            **json.loads((folder / PIFA_READER_FILE).read_text()))
    return Ch5Data(train=train, test=test, pifa=pifa, seed=seed, real=True)


def yaw_bins(dataset: Dataset) -> np.ndarray | None:
    """|yaw| bin (0, 1, 2) of every sample, or None when the poses are unknown."""
    if hasattr(dataset, "array"):
        pose = np.asarray(dataset.array("pose"), np.float64)
    else:
        pose = np.stack([np.asarray(dataset[i]["pose"], np.float64) for i in range(len(dataset))])
    if not np.isfinite(pose[:, 0]).all():
        return None
    return yaw_bin_of(pose)


class PreparedSet:
    """A test set cropped once and kept in memory as tensors (every model sees the same inputs):
    ``image`` (M, C, R, R), ``matrix`` (M, 3, 3) image -> output px, ``landmarks`` (M, N, 2) image
    px, ``box`` (M, 4), ``visibility`` (M, N), ``mask`` (M, H, H) for parsing sets."""

    def __init__(self, dataset: Dataset, transform: Callable, batch_size: int = 64):
        items = TransformedDataset(dataset, transform, seed=0)
        loader = DataLoader(items, batch_size=batch_size, shuffle=False)
        parts: dict[str, list[torch.Tensor]] = {}
        for batch in loader:
            for key in ("image", "matrix", "landmarks_image", "box", "visibility", "mask"):
                if key in batch:
                    parts.setdefault(key, []).append(batch[key])
        self.tensors = {k: torch.cat(v) for k, v in parts.items()}
        self.size = len(items)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


@torch.no_grad()
def predict_outputs(model: nn.Module, images: torch.Tensor, batch_size: int = 64,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """The last stack's output of ``model`` for every image (CPU tensor)."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(images[i:i + batch_size].to(device))[-1].float().cpu()
                for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def outputs_to_landmarks(heatmaps: torch.Tensor, matrix: torch.Tensor, decoder: str = "quarter") -> np.ndarray:
    """Landmarks in image px (float32 (M, N, 2)) from heatmaps and the crops' image -> heatmap
    affines (:func:`fa_lib.heatmaps.heatmaps_to_image_points`: ``decoder``, then back through the
    inverse affine)."""
    return heatmaps_to_image_points(heatmaps, matrix, decoder=decoder)[0]
