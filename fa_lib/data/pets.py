"""22-point cat and dog face landmarks on Oxford-IIIT-Pet (thesis chapter 3, Table 3.6).

The thesis trains CALE on 22 landmarks of cat and dog faces annotated on Oxford-IIIT-Pet images;
those annotations are not public. This module reads a documented layout that users with their own
22-point annotations follow: the official Oxford-IIIT-Pet tree (the one :mod:`fa_lib.data.real`
reads for kind ``oxford_pets``) plus one iBUG ``.pts`` file beside each annotated image::

    <root>/images/<name>.jpg              official images
    <root>/images/<name>.pts              yours: 22 points, iBUG layout (n_points: 22, { x y ... })
    <root>/annotations/trainval.txt       official split lists (formats.read_pet_list)
    <root>/annotations/test.txt
    <root>/annotations/xmls/<name>.xml    official head box (formats.read_pet_head_box)

``<root>`` is ``<data_root>/oxford_pets`` when that folder exists, else ``data_root`` itself.

- The ``.pts`` points are 1-based like every ``.pts`` file (:func:`fa_lib.data.formats.read_pts`
  converts them to the project's pixel convention); a file with another count than 22 is an error
  naming the file, raised when its sample is read.
- The point order is the user's: it must be the same on every image, and it is what a trained
  model predicts. Horizontal flipping needs a left/right permutation of that order, which the
  project cannot know (``augment.flip_permutation`` refuses 22 points): train with flipping off.
- Only listed images with both an xml head box and a ``.pts`` file are used; the others (the
  official lists include images without a head box, and a user may annotate a subset) are skipped.
- Species ("cat"/"dog") come from the split list; every point is visible (the ``.pts`` layout
  stores no visibility) and the sample's box is the official head box.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from . import formats
from .real import face_sample

PET_POINTS = 22
PET_SPLITS = ("trainval", "test")


def _pets_root(data_root: str | os.PathLike) -> Path:
    """The Oxford-IIIT-Pet tree: ``data_root/oxford_pets`` if it is a folder, else data_root."""
    root = Path(data_root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data_root does not exist: {root}")
    if (root / "oxford_pets").is_dir():
        root = root / "oxford_pets"
    for sub in ("images", "annotations"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"no Oxford-IIIT-Pet tree under {root}: folder {root / sub} is "
                                    "missing (see fa_lib.data.pets for the layout)")
    return root


class PetLandmarks(Dataset):
    """Oxford-IIIT-Pet faces with user-supplied 22-point annotations (layout: module docstring).

    Yields the project's face sample dict (:func:`fa_lib.data.real.face_sample`) with the head box
    as ``box`` and an extra ``"species"`` key ("cat" / "dog"). Files are indexed once at
    construction; images and points are read on access. ``transform``, if given, is applied to
    every sample (e.g. ``fa_lib.data.pipeline.CaleInputs``).
    """

    name = "oxford-pets-22pt"

    def __init__(self, data_root: str | os.PathLike, split: str = "trainval", *,
                 transform: Callable[[dict], Any] | None = None):
        if split not in PET_SPLITS:
            raise ValueError(f"Oxford-IIIT-Pet split must be one of {', '.join(PET_SPLITS)}, "
                             f"got {split!r}")
        self.root = _pets_root(data_root)
        self.split, self.transform = split, transform
        images, xmls = self.root / "images", self.root / "annotations" / "xmls"
        listing = formats.read_pet_list(self.root / "annotations" / f"{split}.txt")
        annotated = [(r.image, r.species_name) for r in listing.itertuples()
                     if (images / f"{r.image}.pts").is_file()]
        if not annotated:
            raise FileNotFoundError(
                f"no {PET_POINTS}-point .pts annotations beside the Oxford-IIIT-Pet images under "
                f"{images} (the thesis's annotations are not public; see fa_lib.data.pets for the "
                "layout)")
        self.names = [name for name, _ in annotated if (xmls / f"{name}.xml").is_file()]
        if not self.names:
            raise FileNotFoundError(f"none of the {len(annotated)} {split} images with a .pts file "
                                    f"under {images} has a head box xml in {xmls}")
        species = dict(annotated)
        self.species = np.array([species[name] for name in self.names])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        name, species = self.names[index], str(self.species[index])
        _, head_box = formats.read_pet_head_box(self.root / "annotations" / "xmls" / f"{name}.xml")
        points = formats.read_pts(self.root / "images" / f"{name}.pts", n_points=PET_POINTS)
        sample = face_sample(formats.load_image(self.root / "images" / f"{name}.jpg"),
                             landmarks_2d=points, visibility=np.ones(PET_POINTS, bool), box=head_box,
                             source=f"oxford_pets:{species}:{name}")
        sample["species"] = species
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"PetLandmarks(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def pet_landmark_dataset(data_root: str | os.PathLike, split: str = "trainval", *,
                         transform: Callable[[dict], Any] | None = None) -> PetLandmarks:
    """The 22-point pet-face dataset of ``split`` (trainval / test) under ``data_root``.

    Raises ``FileNotFoundError`` when the tree or the annotations are missing and ``ValueError``
    for an unknown split (see :class:`PetLandmarks` and the module docstring).
    """
    return PetLandmarks(data_root, split, transform=transform)
