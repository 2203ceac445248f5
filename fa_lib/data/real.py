"""Torch datasets over the real thesis datasets, and the factory that picks real or synthetic data.

Users who have a dataset point ``data_root`` at it; :class:`RealFaceDataset` indexes the files in
the dataset's official layout (nothing is converted or cached) and yields the project's face
sample dict, the same one the synthetic stand-ins yield (before cropping)::

    {"image", "landmarks_2d", "landmarks_3d", "visibility", "box", "pose", "identity", "source"}

:func:`make_dataset` is what experiments call: with ``data_root=None`` it builds the synthetic
stand-in of :mod:`fa_lib.data.synthetic`, otherwise the real dataset.

Layouts expected under ``data_root`` (the folder of the unpacked official archive; its parent is
accepted too when the archive's top folder name is given below):

============  =================================================================================
kind          layout and splits
============  =================================================================================
pts_folder    any tree of images with same-stem iBUG ``.pts`` files (300-W, 300-W test set,
              iBUG, Menpo); ``split`` = sub-folder ('' = all). Faces without 68 points (Menpo
              profiles: 39) are skipped. 2D landmarks.
300w_lp       ``300W_LP/{AFW,HELEN,IBUG,LFPW}[_Flip]/<stem>.jpg|.mat`` and
              ``300W_LP/landmarks/<subset>/<stem>_pts.mat``; split 'train'. landmarks_2d =
              ``pt2d``; landmarks_3d x, y = ``pts_3d`` (depth not stored: z = NaN, or with option
              ``depth="3ddfa"`` the depth of the 3DDFA fit, :func:`depth_from_3ddfa`, and
              ``depth_fit_error`` its median residual in px); pose.
aflw2000_3d   ``AFLW2000/image*.jpg|.mat``; split 'test'. landmarks_3d = ``pt3d_68`` with depth.
ls3dw         ``LS3D-W/<subset>/**/<stem>.jpg|.t7``; split = subset folder (300W-Testset-3D,
              Menpo-3D, 300VW-3D, AFLW2000-3D-Reannotated, ...). landmarks_3d x, y (z = NaN).
              The LS3D-W-balanced selection (thesis 2.3.2) is not published as a file list: pass
              the folder that holds your copy of it.
300vw         ``<video id>/annot/<frame>.pts`` with ``<video id>/vid.avi`` (or extracted frames in
              ``<video id>/frames/<frame>.png|jpg``); split 'all' or option ``videos=[ids]``.
              The official A/B/C test categories are not embedded (no verifiable list offline).
aflw_pifa     images with same-stem ``.mat`` files; needs options ``points_key`` and
              ``visibility_key`` (see formats.read_aflw_pifa_mat); grey images; 34 points.
celeba        ``Img/img_celeba/`` (or ``img_align_celeba`` with option ``aligned=True``),
              ``Anno/list_bbox_celeba.txt``, ``Anno/identity_CelebA.txt``,
              ``Eval/list_eval_partition.txt``; split train/val/test/all. Box, identity and, when
              ``Anno/list_landmarks[_align]_celeba.txt`` is there, the 5 points as landmarks_2d
              (eyes, nose, mouth corners; :data:`fa_lib.landmarks.CELEBA_5_FROM_68`).
aflw          ``aflw/data/aflw.sqlite`` and ``aflw/data/flickr/<filepath>`` (the folder ``aflw`` or
              ``aflw/data`` may be given too); split 'all' (AFLW has no official split). One
              sample per face: landmarks_2d = the 21 AFLW points (NaN where not annotated),
              visibility = annotated, box = FaceRect, pose from FacePose (degrees).
widerface     ``wider_face_split/wider_face_{train,val}_bbx_gt.txt`` and
              ``WIDER_{train,val}/images/``; split train/val; one sample per valid face (option
              ``max_face_size`` keeps small faces, thesis 6.5 used very low-resolution ones).
oxford_pets   ``images/<name>.jpg``, ``annotations/{trainval,test}.txt``, ``annotations/xmls/``;
              split trainval/test; one sample per image with a head box (box = head box).
============  =================================================================================
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from ..geometry import box_from_landmarks, fit_orthographic_camera, project_orthographic
from ..profiles import get_profile
from . import formats, synthetic
from .face_model import load_face_model

REAL_KINDS = ("pts_folder", "300w_lp", "aflw2000_3d", "ls3dw", "300vw", "aflw_pifa", "celeba",
              "aflw", "widerface", "oxford_pets")

# make_dataset names -> (synthetic builder in fa_lib.data.synthetic or None, real kind or None,
# default split)
DATASETS: dict[str, tuple[str | None, str | None, str]] = {
    "300w_lp": ("train_300wlp_standin", "300w_lp", "train"),
    "ls3dw_balanced": ("test_yaw_balanced", "ls3dw", "balanced"),
    "aflw2000_3d": ("test_yaw_balanced", "aflw2000_3d", "test"),
    "aflw_pifa": ("pifa_standin", "aflw_pifa", "test"),
    # real pairs are made by degrading real high-resolution faces (chapter 6.3): no reader
    "lowres_pairs": ("lowres_pairs", None, ""),
    "300w_test": (None, "pts_folder", ""),
    "menpo": (None, "pts_folder", ""),
    "300vw": (None, "300vw", "all"),
    "celeba": (None, "celeba", "train"),
    "aflw": (None, "aflw", "all"),
    "widerface": (None, "widerface", "val"),
    "oxford_pets": (None, "oxford_pets", "trainval"),
}

_NAN_POSE = np.full(3, np.nan, dtype=np.float32)


def face_sample(image, *, landmarks_2d=None, landmarks_3d=None, visibility=None, box=None,
                pose=None, identity: int = -1, source: str) -> dict:
    """Assemble a face sample dict; the box defaults to the tight box of the 2D (else 3D) points."""
    if box is None:
        points = landmarks_2d if landmarks_2d is not None else landmarks_3d
        if points is None:
            raise ValueError(f"{source}: a sample needs landmarks or a box")
        box = box_from_landmarks(np.asarray(points)[:, :2])
    return {
        "image": image,
        "landmarks_2d": None if landmarks_2d is None else np.asarray(landmarks_2d, np.float32),
        "landmarks_3d": None if landmarks_3d is None else np.asarray(landmarks_3d, np.float32),
        "visibility": None if visibility is None else np.asarray(visibility, dtype=bool),
        "box": np.asarray(box, dtype=np.float32).reshape(4),
        "pose": _NAN_POSE.copy() if pose is None else np.asarray(pose, np.float32).reshape(3),
        "identity": int(identity),
        "source": source,
    }


def _xy_with_unknown_depth(points_xy: np.ndarray) -> np.ndarray:
    """(68, 2) projections of 3D landmarks -> (68, 3) with z = NaN (depth not in the dataset)."""
    out = np.full((len(points_xy), 3), np.nan, dtype=np.float32)
    out[:, :2] = points_xy
    return out


def _resolve(root: Path, top: str) -> Path:
    """Accept both the archive's top folder and its parent as data_root."""
    return root / top if (root / top).is_dir() and root.name != top else root


def _files_with_images(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    return sorted(p for p in folder.rglob(pattern) if p.is_file())


# ------------------------------------------------------------------------------------ indexers
# Each indexer returns a list of records (dicts) and a loader turning a record into a sample.

def _index_pts_folder(root: Path, split: str, options: dict):
    folder = root / split if split else root
    records = []
    for pts in _files_with_images(folder, "*.pts"):
        header = re.search(r"n_points\s*:\s*(\d+)",
                           pts.read_text(encoding="utf-8", errors="replace")[:200])
        if header is not None and int(header.group(1)) != 68:
            continue  # Menpo profile faces (39 points) are another markup; bad files raise later
        records.append({"annotation": pts})

    def load(rec):
        pts = rec["annotation"]
        return face_sample(formats.load_image(formats.find_image(pts)),
                           landmarks_2d=formats.read_pts(pts, n_points=68),
                           source=f"pts:{pts.relative_to(root)}")
    return records, load


def depth_from_3ddfa(points_xy, shape_para, exp_para, model=None) -> tuple[np.ndarray, np.ndarray]:
    """The depth of a face's 68 "3D" landmarks from its 3DDFA fit (thesis 4.8: the depth network's
    targets come from the fitted 3D face model; 300-W-LP stores only their projections): the landmarks of
    ``Shape_Para`` / ``Exp_Para`` in the face model (:meth:`FaceModel.landmarks_from_3ddfa`), the
    scaled-orthographic camera that best maps them onto ``points_xy`` (the stored projections, image px)
    and their depth through it, centred on the mean and larger nearer the camera, as
    :func:`fa_lib.data.formats.depth_to_project_convention`. Returns ``(z, residual)``, both (68,) px: the
    residual is each point's distance between the fitted projection and the stored one, what the model's
    truncation (and any mismatch of conventions) costs."""
    model = load_face_model() if model is None else model
    reference = model.landmarks_from_3ddfa(shape_para, exp_para)
    xy = np.asarray(points_xy, np.float64)[:, :2]
    scale, rotation, translation = fit_orthographic_camera(xy, reference)
    residual = np.linalg.norm(project_orthographic(reference, scale, rotation, translation) - xy, axis=1)
    z = scale * reference @ rotation[2]
    return (z - z.mean()).astype(np.float32), residual.astype(np.float32)


def _index_300w_lp(root: Path, split: str, options: dict):
    root = _resolve(root, "300W_LP")
    include_flipped = options.get("include_flipped", True)
    depth = options.get("depth")
    if depth not in (None, "3ddfa"):
        raise ValueError(f"300w_lp option depth must be None or '3ddfa', got {depth!r}")
    records = []
    for mat in _files_with_images(root, "*.mat"):
        if mat.parent.parent.name == "landmarks" or "landmarks" in mat.relative_to(root).parts:
            continue
        if not include_flipped and mat.parent.name.endswith("_Flip"):
            continue
        records.append({"annotation": mat, "landmarks": root / "landmarks" / mat.parent.name / f"{mat.stem}_pts.mat"})

    def load(rec):
        mat = rec["annotation"]
        ann = formats.read_3ddfa_mat(mat)
        subset = mat.parent.name
        lm_file = rec["landmarks"]
        landmarks_3d = None
        fit_error = None
        if lm_file.is_file():
            _, pts_3d = formats.read_300w_lp_landmarks_mat(lm_file)
            landmarks_3d = _xy_with_unknown_depth(pts_3d)
            if depth == "3ddfa":
                landmarks_3d[:, 2], residual = depth_from_3ddfa(pts_3d, ann.shape_para, ann.exp_para)
                fit_error = float(np.median(residual))
        sample = face_sample(formats.load_image(formats.find_image(mat)),
                             landmarks_2d=ann.landmarks_2d, landmarks_3d=landmarks_3d,
                             pose=ann.pose, source=f"300w_lp:{subset}/{mat.stem}")
        if fit_error is not None:
            sample["depth_fit_error"] = fit_error
        return sample
    return records, load


def _index_aflw2000_3d(root: Path, split: str, options: dict):
    root = _resolve(root, "AFLW2000")
    records = [{"annotation": m} for m in _files_with_images(root, "image*.mat")]

    def load(rec):
        mat = rec["annotation"]
        ann = formats.read_3ddfa_mat(mat)
        if ann.landmarks_3d is None:
            raise ValueError(f"{mat}: no pt3d_68 field (not an AFLW2000-3D file?)")
        return face_sample(formats.load_image(formats.find_image(mat)),
                           landmarks_3d=ann.landmarks_3d, pose=ann.pose,
                           source=f"aflw2000_3d:{mat.stem}")
    return records, load


def _index_ls3dw(root: Path, split: str, options: dict):
    root = _resolve(root, "LS3D-W")
    folder = root / split if split else root
    records = [{"annotation": t} for t in _files_with_images(folder, "*.t7")]

    def load(rec):
        t7 = rec["annotation"]
        xy = formats.read_ls3dw_landmarks(t7)
        return face_sample(formats.load_image(formats.find_image(t7)),
                           landmarks_3d=_xy_with_unknown_depth(xy),
                           source=f"ls3dw:{t7.relative_to(root)}")
    return records, load


def _read_video_frame(video: Path, index: int) -> np.ndarray:
    import cv2

    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise ValueError(f"{video}: cannot read frame {index + 1}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _index_300vw(root: Path, split: str, options: dict):
    videos = options.get("videos")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if (p / "annot").is_dir())
    if videos is not None:
        wanted = {str(v).zfill(3) for v in videos}
        folders = [f for f in folders if f.name in wanted]
    records = [{"annotation": pts, "video": f} for f in folders
               for pts in sorted((f / "annot").glob("*.pts"))]

    def load(rec):
        pts, video = rec["annotation"], rec["video"]
        frames = video / "frames"
        if frames.is_dir():
            image = formats.load_image(formats.find_image(frames / pts.stem))
        else:  # annot/000001.pts is the first frame of vid.avi
            image = _read_video_frame(video / "vid.avi", int(pts.stem) - 1)
        return face_sample(image, landmarks_2d=formats.read_pts(pts, n_points=68),
                           source=f"300vw:{video.name}/{pts.stem}")
    return records, load


def _index_aflw_pifa(root: Path, split: str, options: dict):
    try:
        keys = {"points_key": options["points_key"], "visibility_key": options["visibility_key"]}
    except KeyError as err:
        raise ValueError("aflw_pifa needs options points_key=... and visibility_key=... (the "
                         "field names of your copy; see formats.read_aflw_pifa_mat)") from err
    folder = root / split if split and (root / split).is_dir() else root
    records = [{"annotation": m} for m in _files_with_images(folder, "*.mat")]

    def load(rec):
        mat = rec["annotation"]
        points, visibility = formats.read_aflw_pifa_mat(mat, **keys)
        return face_sample(formats.load_image(formats.find_image(mat), grey=True),
                           landmarks_2d=points, visibility=visibility,
                           source=f"aflw_pifa:{mat.stem}")
    return records, load


def _index_celeba(root: Path, split: str, options: dict):
    root = _resolve(root, "CelebA")
    aligned = options.get("aligned", False)
    split_codes = {"train": 0, "val": 1, "test": 2}
    if split not in (*split_codes, "all"):
        raise ValueError(f"celeba split must be train, val, test or all, got {split!r}")
    partition = formats.read_celeba_partition(root / "Eval" / "list_eval_partition.txt")
    identities = formats.read_celeba_identities(root / "Anno" / "identity_CelebA.txt")
    boxes = None
    if not aligned:
        table = formats.read_celeba_bboxes(root / "Anno" / "list_bbox_celeba.txt")
        boxes = dict(zip(table["image_id"], table[["x1", "y1", "x2", "y2"]].to_numpy()))
    images = root / "Img" / ("img_align_celeba" if aligned else "img_celeba")
    landmark_file = root / "Anno" / f"list_landmarks{'_align' if aligned else ''}_celeba.txt"
    points = dict(zip(*formats.read_celeba_landmarks(landmark_file))) if landmark_file.is_file() else {}
    records = [{"image_id": k} for k, v in partition.items()
               if split == "all" or v == split_codes[split]]

    def load(rec):
        image_id = rec["image_id"]
        image = formats.load_image(images / image_id)
        box = boxes[image_id] if boxes is not None else [0, 0, image.shape[1], image.shape[0]]
        return face_sample(image, landmarks_2d=points.get(image_id), box=box,
                           identity=identities.get(image_id, -1), source=f"celeba:{image_id}")
    return records, load


def _index_aflw(root: Path, split: str, options: dict):
    if split not in ("all", ""):
        raise ValueError(f"aflw split must be 'all' (AFLW has no official split), got {split!r}")
    for data in (root / "aflw" / "data", root / "data", root):
        if (data / "aflw.sqlite").is_file():
            break
    else:
        raise FileNotFoundError(f"AFLW's aflw/data/aflw.sqlite not found under {root}")
    records = [{"face": face} for face in formats.read_aflw_sqlite(data / "aflw.sqlite")]
    images = data / "flickr"

    def load(rec):
        face = rec["face"]
        return face_sample(formats.load_image(images / face.file), landmarks_2d=face.points,
                           visibility=np.isfinite(face.points).all(1), box=face.box, pose=face.pose,
                           source=f"aflw:{face.face_id}")
    return records, load


def _index_widerface(root: Path, split: str, options: dict):
    if split not in ("train", "val"):
        raise ValueError(f"widerface split must be train or val (test has no boxes), got {split!r}")
    root = _resolve(root, "widerface")
    max_size = options.get("max_face_size")
    records = []
    for image in formats.read_wider_face_boxes(
            root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"):
        for k, box in enumerate(image.boxes):
            size = max(box[2] - box[0], box[3] - box[1])
            if image.attributes["invalid"][k] or size <= 0:
                continue
            if max_size is not None and size > max_size:
                continue
            records.append({"file": image.file, "box": box, "k": k})
    images = root / f"WIDER_{split}" / "images"

    def load(rec):
        return face_sample(formats.load_image(images / rec["file"]), box=rec["box"],
                           source=f"widerface:{rec['file']}#{rec['k']}")
    return records, load


def _index_oxford_pets(root: Path, split: str, options: dict):
    if split not in ("trainval", "test"):
        raise ValueError(f"oxford_pets split must be trainval or test, got {split!r}")
    listing = formats.read_pet_list(root / "annotations" / f"{split}.txt")
    xmls = root / "annotations" / "xmls"
    records = [{"name": r.image, "species": r.species_name} for r in listing.itertuples()
               if (xmls / f"{r.image}.xml").is_file()]

    def load(rec):
        _, head_box = formats.read_pet_head_box(xmls / f"{rec['name']}.xml")
        return face_sample(formats.load_image(root / "images" / f"{rec['name']}.jpg"),
                           box=head_box, source=f"oxford_pets:{rec['species']}:{rec['name']}")
    return records, load


_INDEXERS: dict[str, Callable[[Path, str, dict], tuple[list, Callable]]] = {
    "pts_folder": _index_pts_folder, "300w_lp": _index_300w_lp,
    "aflw2000_3d": _index_aflw2000_3d, "ls3dw": _index_ls3dw, "300vw": _index_300vw,
    "aflw_pifa": _index_aflw_pifa, "celeba": _index_celeba, "aflw": _index_aflw, "widerface": _index_widerface,
    "oxford_pets": _index_oxford_pets,
}


class RealFaceDataset(Dataset):
    """A real dataset in its official layout (see the module docstring), yielding face samples.

    ``kind`` is one of :data:`REAL_KINDS`; ``split`` is interpreted per kind; ``options`` are the
    kind's extra settings (e.g. ``include_flipped`` for 300w_lp, ``videos`` for 300vw, the key
    names for aflw_pifa, ``max_face_size`` for widerface, ``aligned`` for celeba). ``transform``,
    if given, is applied to every sample (e.g. cropping and augmentation). Files are indexed once
    at construction; images are read on access, so a bad file raises when its sample is read,
    naming the file.
    """

    def __init__(self, kind: str, data_root, split: str = "", *, transform=None,
                 **options: Any):
        if kind not in _INDEXERS:
            raise ValueError(f"unknown real dataset kind {kind!r}; choose one of "
                             f"{', '.join(REAL_KINDS)}")
        root = Path(data_root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data_root does not exist: {root}")
        self.kind, self.root, self.split, self.transform = kind, root, split, transform
        self.options = dict(options)
        self.records, self._load = _INDEXERS[kind](root, split, options)
        if not self.records:
            raise FileNotFoundError(f"no {kind} annotations found under {root} (split "
                                    f"{split!r}); see fa_lib.data.real for the expected layout")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self._load(self.records[index])
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"RealFaceDataset(kind={self.kind!r}, root={str(self.root)!r}, " \
               f"split={self.split!r}, n={len(self)})"


def make_dataset(name: str, profile="quick", data_root=None, *, split: str | None = None,
                 **options: Any):
    """The dataset an experiment asks for: synthetic stand-in without data, real with it.

    ``name`` is one of :data:`DATASETS`. With ``data_root=None`` the synthetic builder of
    :mod:`fa_lib.data.synthetic` is called as ``builder(profile, **options)`` (the face model is
    loaded only then: reading real data never needs it); datasets without a stand-in then raise
    ``ValueError``. Otherwise a :class:`RealFaceDataset` of the mapped kind is returned (``split``
    overrides the default split).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    builder_name, kind, default_split = DATASETS[name]
    if data_root is None:
        if builder_name is None:
            raise ValueError(f"dataset {name!r} has no synthetic stand-in: pass data_root= "
                             "pointing at your copy of it")
        builder = getattr(synthetic, builder_name, None)
        if builder is None:
            raise ValueError(f"fa_lib.data.synthetic has no builder {builder_name!r}")
        return builder(get_profile(profile), **options)
    if kind is None:
        raise ValueError(f"dataset {name!r} has no real reader: build it from real faces, e.g. "
                         "make_dataset('ls3dw_balanced', data_root=...) degraded to low resolution")
    return RealFaceDataset(kind, data_root, default_split if split is None else split, **options)
