"""Readers of the official annotation formats of the datasets the thesis uses (chapter 2.3, 4.1).

None of these datasets can be downloaded by the project; users who have them point ``data_root`` at
their copies and :mod:`fa_lib.data.real` builds datasets from these readers. Each reader is tested on
a small fixture written in the exact format (``tests/fixtures``, ``tests/test_formats.py``) and
names the file in every error it raises.

Coordinate convention (project-wide): continuous pixel coordinates, x right, y down, the centre of
pixel (row i, col j) at (j + 0.5, i + 0.5). Every reader converts to it and says how:

=====================  ===================================================  =====================
format                 stored convention                                    conversion on reading
=====================  ===================================================  =====================
``.pts`` (300-W ...)   1-based: the first pixel's centre is (1, 1)           x - 0.5, y - 0.5
300-W-LP / AFLW2000    MATLAB (3DDFA), 1-based                               x - 0.5, y - 0.5
LS3D-W ``.t7``         Torch7 (Lua, 1-based) output of the 2D-to-3D FAN     x - 0.5, y - 0.5
CelebA                 integer pixel indices (base undocumented; 0 taken)   + 0.5 for points
AFLW ``aflw.sqlite``   float pixel coordinates (base undocumented; 0 taken)  none; FaceRect x, y, w, h
                                                                            -> [x, y, x + w, y + h]
WiderFace              x, y, w, h of the box's top-left pixel (0-based)     [x, y, x + w, y + h]
Oxford-IIIT Pet xml    PASCAL VOC: 1-based inclusive pixel indices           [xmin - 1, ymin - 1,
                                                                            xmax, ymax]
=====================  ===================================================  =====================

Boxes are returned as float32 ``[x1, y1, x2, y2]`` pixel-edge coordinates. Where the base of a
format is not documented the table says which one we took; the ambiguity is at most 1 px.
"""
from __future__ import annotations

import dataclasses
import os
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

import numpy as np

PathLike = str | os.PathLike

# 1-based formats: the centre of the first pixel is at 1.0, ours at 0.5.
ONE_BASED_SHIFT = 0.5


# --------------------------------------------------------------------------------------- images
#: the largest image (pixels) :func:`load_image` decodes: 170 megapixels is ~510 MB as RGB, more than
#: any camera photo; beyond it a file is refused with a clear message (Pillow warns about a
#: "decompression bomb" from 89 megapixels and refuses from 179)
MAX_IMAGE_PIXELS = 170_000_000


def load_image(path: PathLike, *, grey: bool = False, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3), or (H, W) when ``grey``.

    Grey-scale files are expanded to three identical channels unless ``grey`` is set (AFLW-PIFA is
    grey; thesis 3.3.2 trained the human model on grey images). Raises ``FileNotFoundError`` naming
    the file when it is missing and ``ValueError`` when it cannot be decoded or has more than
    ``max_pixels`` pixels (None: no limit); the size is read from the header, before decoding.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            # our own limit replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ValueError(f"image {path} is {width} x {height} px ({width * height / 1e6:.0f} "
                                     f"megapixels), above the limit of {max_pixels / 1e6:.0f} megapixels: "
                                     "downscale it first")
                im = im.convert("L" if grey else "RGB")
                return np.asarray(im, dtype=np.uint8).copy()
    except Image.DecompressionBombError as err:
        raise ValueError(f"image {path} is too large to decode: {err}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err


def _read_text(path: PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


# --------------------------------------------------------------------------------- .pts (iBUG)
def read_pts(path: PathLike, n_points: int | None = None) -> np.ndarray:
    """Read an iBUG ``.pts`` landmark file (300-W, 300-W test set, Menpo, 300-VW ``annot/``).

    Layout (documented with the 300-W data, https://ibug.doc.ic.ac.uk/resources/300-W/, and read
    the same way by menpo's ``menpo/io/input/landmark.py``)::

        version: 1
        n_points:  68
        {
        x1 y1
        ...
        }

    The points are 1-based (MATLAB convention: menpo subtracts 1 on import), so the returned
    float32 (n_points, 2) array is ``stored - 0.5`` in the project's pixel-centre convention.
    ``n_points`` (e.g. 68) makes a file with another count an error; Menpo profile faces have 39.
    """
    text = _read_text(path)
    header = re.search(r"n_points\s*:\s*(\d+)", text)
    if header is None:
        raise ValueError(f"{path}: not a .pts file (no 'n_points:' header)")
    declared = int(header.group(1))
    body = re.search(r"\{(.*?)\}", text, flags=re.S)
    if body is None:
        raise ValueError(f"{path}: truncated .pts file (no '{{ ... }}' block with the points)")
    rows = [line.split() for line in body.group(1).strip().splitlines() if line.strip()]
    try:
        points = np.array([[float(r[0]), float(r[1])] for r in rows], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: malformed point line in .pts file ({err})") from err
    points = points.reshape(-1, 2)
    if len(points) != declared:
        raise ValueError(f"{path}: header says n_points={declared} but {len(points)} points found")
    if n_points is not None and declared != n_points:
        raise ValueError(f"{path}: expected {n_points} points, file has {declared}")
    return (points - ONE_BASED_SHIFT).astype(np.float32)


def write_pts(path: PathLike, points) -> None:
    """Write points (project convention) as an iBUG ``.pts`` file (1-based; inverse of read_pts).

    Lets predictions be scored with the official 300-W / Menpo tools.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"points must be (N, 2), got shape {points.shape}")
    lines = ["version: 1", f"n_points:  {len(points)}", "{"]
    lines += [f"{x + ONE_BASED_SHIFT:.6f} {y + ONE_BASED_SHIFT:.6f}" for x, y in points[:, :2]]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------- MATLAB (.mat) files
def _loadmat(path: PathLike) -> dict:
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return loadmat(str(path))
    except Exception as err:  # scipy raises several types for truncated/corrupt files
        raise ValueError(f"cannot read MATLAB file {path}: {err}") from err


def _mat_field(mat: dict, key: str, path: PathLike) -> np.ndarray:
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no field {key!r} (fields present: {found})")
    return np.asarray(mat[key])


def _points_from_matrix(array: np.ndarray, n_points: int, dims: int, what: str,
                        path: PathLike) -> np.ndarray:
    """(dims, n) or (n, dims) MATLAB matrix -> float64 (n, dims)."""
    a = np.asarray(array, dtype=np.float64)
    if a.shape == (dims, n_points):
        return a.T.copy()
    if a.shape == (n_points, dims):
        return a.copy()
    raise ValueError(f"{path}: {what} has shape {a.shape}, expected ({dims}, {n_points}) or "
                     f"({n_points}, {dims})")


def pose_from_3ddfa(pose_para, path: PathLike = "<Pose_Para>") -> np.ndarray:
    """3DDFA ``Pose_Para`` [pitch, yaw, roll, tx, ty, tz, scale] (radians) -> [yaw, pitch, roll] deg.

    Order as documented by the 300-W-LP / AFLW2000-3D release (3DDFA, Zhu et al. CVPR 2016,
    http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm) and read that way by e.g.
    the TensorFlow Datasets builders (tensorflow/datasets ``image/the300w_lp.py``). The signs are
    3DDFA's; they are not re-oriented to the synthetic renderer's.
    """
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if p.size != 7:
        raise ValueError(f"{path}: Pose_Para must have 7 values, got {p.size}")
    pitch, yaw, roll = p[:3]
    return np.degrees([yaw, pitch, roll]).astype(np.float32)


@dataclasses.dataclass
class ThreeDDFAAnnotation:
    """What one 300-W-LP / AFLW2000-3D ``.mat`` file holds (project conventions applied)."""

    landmarks_2d: np.ndarray | None   # (68, 2) float32 300-W-LP ``pt2d``; None for AFLW2000-3D
    landmarks_3d: np.ndarray | None   # (68, 3) float32 AFLW2000-3D ``pt3d_68``; None for 300-W-LP
    aflw_21: np.ndarray | None        # (21, 2) float32 AFLW2000-3D ``pt2d`` (NaN = not annotated)
    pose: np.ndarray                  # (3,) float32 [yaw, pitch, roll] degrees
    pose_para: np.ndarray             # (7,) raw 3DDFA pose parameters
    shape_para: np.ndarray            # (199,) BFM identity coefficients
    exp_para: np.ndarray              # (29,) expression coefficients
    roi: np.ndarray | None            # (4,) 300-W-LP face region as stored (None if absent)


def depth_to_project_convention(z) -> np.ndarray:
    """3DDFA depth -> project depth: zero at the mean of the points, larger = nearer the camera.

    3DDFA projects the BFM (z towards the viewer) with a weak-perspective camera and flips only the
    image y axis (``height + 1 - y``), so stored z already grows towards the camera; only the mean
    is removed. Units are image pixels (the projection scale is applied to all three axes).
    """
    z = np.asarray(z, dtype=np.float64)
    return z - z.mean()


def read_3ddfa_mat(path: PathLike) -> ThreeDDFAAnnotation:
    """Read one 300-W-LP or AFLW2000-3D annotation ``.mat`` (same folder and stem as the image).

    Layout of the 3DDFA release (http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm;
    fields and shapes as read by tensorflow/datasets ``image/the300w_lp.py`` and
    ``image/aflw2k3d.py``): ``pt2d`` (2, 68) in 300-W-LP, (2, 21) AFLW points with -1 for missing
    ones in AFLW2000-3D; ``pt3d_68`` (3, 68) in AFLW2000-3D only; ``Pose_Para`` (1, 7);
    ``Shape_Para`` (199, 1); ``Exp_Para`` (29, 1); ``roi`` (1, 4) in 300-W-LP; also ``Illum_Para``,
    ``Color_Para``, ``Tex_Para`` (not needed here). Coordinates are MATLAB 1-based (-0.5 applied).
    """
    mat = _loadmat(path)
    pose_para = _mat_field(mat, "Pose_Para", path).astype(np.float64).reshape(-1)
    pose = pose_from_3ddfa(pose_para, path)
    shape_para = _mat_field(mat, "Shape_Para", path).astype(np.float32).reshape(-1)
    exp_para = _mat_field(mat, "Exp_Para", path).astype(np.float32).reshape(-1)
    roi = np.asarray(mat["roi"], dtype=np.float32).reshape(-1) if "roi" in mat else None

    landmarks_2d = landmarks_3d = aflw_21 = None
    if "pt3d_68" in mat:  # AFLW2000-3D
        p3 = _points_from_matrix(mat["pt3d_68"], 68, 3, "pt3d_68", path)
        p3[:, :2] -= ONE_BASED_SHIFT
        p3[:, 2] = depth_to_project_convention(p3[:, 2])
        landmarks_3d = p3.astype(np.float32)
        if "pt2d" in mat and np.shape(mat["pt2d"]) in ((2, 21), (21, 2)):
            # a few AFLW2000-3D files do not hold 21 points (noted by tensorflow/datasets); those
            # simply get no AFLW points: they are auxiliary, the 68 3D points are the annotation
            p21 = _points_from_matrix(mat["pt2d"], 21, 2, "pt2d", path)
            missing = np.any(p21 < 0, axis=1)  # AFLW marks unannotated points with -1
            p21 = p21 - ONE_BASED_SHIFT
            p21[missing] = np.nan
            aflw_21 = p21.astype(np.float32)
    else:  # 300-W-LP
        p2 = _points_from_matrix(_mat_field(mat, "pt2d", path), 68, 2, "pt2d", path)
        landmarks_2d = (p2 - ONE_BASED_SHIFT).astype(np.float32)
    return ThreeDDFAAnnotation(landmarks_2d=landmarks_2d, landmarks_3d=landmarks_3d,
                               aflw_21=aflw_21, pose=pose, pose_para=pose_para.astype(np.float32),
                               shape_para=shape_para, exp_para=exp_para, roi=roi)


def read_300w_lp_landmarks_mat(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``300W_LP/landmarks/<subset>/<stem>_pts.mat``: (``pts_2d``, ``pts_3d``), each (68, 2).

    ``pts_2d`` are the 300-W-style landmarks (jaw on the visible outline) and ``pts_3d`` the
    projections of the fixed 3D landmark vertices (thesis Fig. 1.4); both MATLAB 1-based (-0.5
    applied). Layout as read by tensorflow/datasets ``image/the300w_lp.py``.
    """
    mat = _loadmat(path)
    p2 = _points_from_matrix(_mat_field(mat, "pts_2d", path), 68, 2, "pts_2d", path)
    p3 = _points_from_matrix(_mat_field(mat, "pts_3d", path), 68, 2, "pts_3d", path)
    return ((p2 - ONE_BASED_SHIFT).astype(np.float32), (p3 - ONE_BASED_SHIFT).astype(np.float32))


# --------------------------------------------------------------------------- Torch7 (.t7) files
_T7_NIL, _T7_NUMBER, _T7_STRING, _T7_TABLE, _T7_TORCH, _T7_BOOLEAN = 0, 1, 2, 3, 4, 5
_T7_STORAGE_DTYPES = {
    "torch.DoubleStorage": "<f8", "torch.FloatStorage": "<f4", "torch.LongStorage": "<i8",
    "torch.IntStorage": "<i4", "torch.ShortStorage": "<i2", "torch.CharStorage": "<i1",
    "torch.ByteStorage": "<u1",
}


class _T7Reader:
    """Just enough of Torch7's binary serialisation to read the tensors LS3D-W ships.

    Format: torch/torch7 ``File.lua`` (writeObject: int type tag; for Torch objects an int
    reference index, the "V <n>" version string and the class name, each as int length + chars)
    and ``generic/Tensor.c`` (tensor write: int nDimension, long sizes, long strides, long
    storageOffset (1-based), then the storage object: long size + raw data). Little-endian, 4-byte
    int, 8-byte long (files written on 64-bit Linux/macOS). Tables of numbers/strings/tensors are
    read too; anything else (functions, nn modules) is refused with a clear error.
    """

    def __init__(self, data: bytes, path: PathLike):
        self.data, self.pos, self.path, self.objects = data, 0, path, {}

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated Torch7 file (needed {n} bytes at offset "
                             f"{self.pos}, file has {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack("<i", self._take(4))[0]

    def long(self) -> int:
        return struct.unpack("<q", self._take(8))[0]

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def object(self):
        tag = self.int()
        if tag == _T7_NIL:
            return None
        if tag == _T7_NUMBER:
            return struct.unpack("<d", self._take(8))[0]
        if tag == _T7_BOOLEAN:
            return self.int() == 1
        if tag == _T7_STRING:
            return self.string()
        if tag not in (_T7_TABLE, _T7_TORCH):
            raise ValueError(f"{self.path}: unsupported Torch7 object type {tag} at offset "
                             f"{self.pos - 4} (only tensors, storages, tables, numbers, strings)")
        index = self.int()
        if index in self.objects:
            return self.objects[index]
        if tag == _T7_TABLE:
            table: dict = {}
            self.objects[index] = table
            for _ in range(self.int()):
                key = self.object()
                table[key] = self.object()
            return table
        version = self.string()
        class_name = self.string() if version.startswith("V ") else version
        if class_name in _T7_STORAGE_DTYPES:
            size = self.long()
            dtype = np.dtype(_T7_STORAGE_DTYPES[class_name])
            obj = np.frombuffer(self._take(size * dtype.itemsize), dtype=dtype).copy()
        elif class_name.endswith("Tensor") and class_name.replace("Tensor", "Storage") \
                in _T7_STORAGE_DTYPES:
            ndim = self.int()
            sizes = [self.long() for _ in range(ndim)]
            strides = [self.long() for _ in range(ndim)]
            offset = self.long() - 1  # stored 1-based "to respect Lua convention"
            storage = self.object()
            if ndim == 0 or storage is None:
                obj = np.zeros([0], dtype=np.float64)
            else:
                itemsize = storage.dtype.itemsize
                extent = offset + sum((n - 1) * st for n, st in zip(sizes, strides)) + 1
                if offset < 0 or min(sizes) < 1 or min(strides) < 0 or extent > storage.size:
                    raise ValueError(f"{self.path}: corrupt Torch7 tensor (sizes {sizes}, strides "
                                     f"{strides}, offset {offset}) for a storage of "
                                     f"{storage.size} values")
                obj = np.lib.stride_tricks.as_strided(
                    storage[offset:], shape=sizes, strides=[s * itemsize for s in strides]).copy()
        else:
            raise ValueError(f"{self.path}: unsupported Torch7 class {class_name!r}")
        self.objects[index] = obj
        return obj


def read_t7(path: PathLike):
    """Read a binary Torch7 ``.t7`` file holding tensors/tables (see :class:`_T7Reader`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    return _T7Reader(path.read_bytes(), path).object()


def read_ls3dw_landmarks(path: PathLike) -> np.ndarray:
    """Read one LS3D-W landmark file -> float32 (68, 2), project convention.

    The LS3D-W release (https://www.adrianbulat.com/face-alignment) stores, next to every image, a
    ``<stem>.t7`` file with a 68x2 tensor: the 2D projections of the 3D landmarks ("3D" in the
    sense of thesis 4.4; no depth is stored: see 1adrianb/2D-and-3D-face-alignment issue #35 and
    1adrianb/face-alignment issue #142). Produced by the Torch7 2D-to-3D network, so 1-based
    (-0.5 applied). A ``.mat`` conversion holding ``pt3d`` / ``pt3d_68`` / ``pts_3d`` ((2|3, 68) or
    (68, 2|3); x, y used) is also accepted. Not supported: ASCII-mode .t7 files and .t7 files
    written with 4-byte longs (32-bit Windows Torch).
    """
    path = Path(path)
    if path.suffix.lower() == ".mat":
        mat = _loadmat(path)
        key = next((k for k in ("pt3d_68", "pt3d", "pts_3d") if k in mat), None)
        if key is None:
            _mat_field(mat, "pt3d", path)  # raises, listing the fields found
        a = np.asarray(mat[key], dtype=np.float64)
        if a.ndim == 2 and a.shape[1] == 68 and a.shape[0] in (2, 3):
            a = a.T
        if a.shape not in ((68, 2), (68, 3)):
            raise ValueError(f"{path}: {key} has shape {np.shape(mat[key])}, expected 68 points")
        return (a[:, :2] - ONE_BASED_SHIFT).astype(np.float32)
    obj = read_t7(path)
    if isinstance(obj, dict):  # some conversions wrap the tensor in a table
        arrays = [v for v in obj.values() if isinstance(v, np.ndarray)]
        obj = arrays[0] if len(arrays) == 1 else None
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"{path}: expected a 68x2 tensor in the Torch7 file, got {type(obj)}")
    a = obj.astype(np.float64)
    if a.shape == (2, 68):
        a = a.T
    if a.shape != (68, 2):
        raise ValueError(f"{path}: expected a 68x2 landmark tensor, got shape {a.shape}")
    return (a - ONE_BASED_SHIFT).astype(np.float32)


# ------------------------------------------------------------------------------------ AFLW-PIFA
def read_aflw_pifa_mat(path: PathLike, *, points_key: str, visibility_key: str,
                       n_points: int = 34) -> tuple[np.ndarray, np.ndarray]:
    """Read one face's AFLW-PIFA points and visibility from a MATLAB file with the given keys.

    AFLW-PIFA (Jourabloo & Liu, ICCV 2015 / IJCV 2016; thesis 3.3.1) has 21 AFLW + 13 new points
    with visibility labels, but its release layout (field names, point order, one file per face or
    one per split) is not documented anywhere reachable by this project (no public loader or
    description could be found), so this reader does not guess it: pass the field names of your
    copy. Points: (2, n) or (n, 2), MATLAB 1-based (-0.5 applied); visibility: n values, non-zero =
    visible. Check the point order against ``fa_lib.landmarks.PIFA_34_FROM_68`` (that order is the
    project's own definition) before comparing with models trained on the synthetic stand-in.
    Returns float32 (n, 2) points and bool (n,) visibility.
    """
    mat = _loadmat(path)
    pts = _points_from_matrix(_mat_field(mat, points_key, path), n_points, 2, points_key, path)
    vis = _mat_field(mat, visibility_key, path).reshape(-1)
    if vis.size != n_points:
        raise ValueError(f"{path}: {visibility_key} has {vis.size} values, expected {n_points}")
    return (pts - ONE_BASED_SHIFT).astype(np.float32), vis.astype(bool)


# --------------------------------------------------------------------------------------- CelebA
CELEBA_LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")


def _read_celeba_table(path: PathLike, has_header: bool):
    """Whitespace table: [count line, header line,] rows of "<image_id> v1 v2 ...".

    Layout of the CelebA ``Anno/`` and ``Eval/`` files
    (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html; torchvision ``datasets/celeba.py`` reads
    the bbox/landmark/attribute files with a count and a header line, identity and partition files
    without).
    """
    import pandas as pd

    lines = [ln for ln in _read_text(path).splitlines() if ln.strip()]
    if has_header:
        if len(lines) < 2:
            raise ValueError(f"{path}: truncated CelebA file (missing count/header lines)")
        try:
            count = int(lines[0].split()[0])
        except ValueError as err:
            raise ValueError(f"{path}: first line must be the number of images") from err
        columns, rows = lines[1].split(), lines[2:]
        if columns and columns[0] == "image_id":  # list_bbox_celeba.txt names the id column too
            columns = columns[1:]
        if len(rows) != count:
            raise ValueError(f"{path}: header says {count} images but {len(rows)} rows found "
                             "(truncated file?)")
    else:
        columns, rows = None, lines
    split = [r.split() for r in rows]
    width = len(columns) + 1 if columns else (len(split[0]) if split else 2)
    for i, r in enumerate(split):
        if len(r) != width:
            raise ValueError(f"{path}: row {i + 1} ({rows[i][:40]!r}) has {len(r)} fields, "
                             f"expected {width}")
    values = np.array([[int(v) for v in r[1:]] for r in split], dtype=np.int64).reshape(
        len(split), width - 1)
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "image_id", [r[0] for r in split])
    return frame


def read_celeba_bboxes(path: PathLike):
    """``list_bbox_celeba.txt`` -> DataFrame image_id, x1, y1, x2, y2 (float, pixel edges).

    Stored as ``image_id x_1 y_1 width height`` for the in-the-wild images.
    """
    raw = _read_celeba_table(path, has_header=True)
    need = ["x_1", "y_1", "width", "height"]
    if list(raw.columns[1:]) != need:
        raise ValueError(f"{path}: expected columns {need}, got {list(raw.columns[1:])}")
    out = raw[["image_id"]].copy()
    out["x1"] = raw["x_1"].astype(float)
    out["y1"] = raw["y_1"].astype(float)
    out["x2"] = (raw["x_1"] + raw["width"]).astype(float)
    out["y2"] = (raw["y_1"] + raw["height"]).astype(float)
    return out


def read_celeba_landmarks(path: PathLike) -> tuple[list[str], np.ndarray]:
    """``list_landmarks_celeba.txt`` / ``list_landmarks_align_celeba.txt`` -> (ids, (N, 5, 2)).

    Five points (left eye, right eye, nose, left and right mouth corner), integer pixel indices
    stored as ``lefteye_x lefteye_y ...``; returned as pixel centres (+0.5), float32.
    """
    raw = _read_celeba_table(path, has_header=True)
    expected = [f"{n}_{c}" for n in CELEBA_LANDMARK_NAMES for c in "xy"]
    if list(raw.columns[1:]) != expected:
        raise ValueError(f"{path}: expected columns {expected}, got {list(raw.columns[1:])}")
    pts = raw[expected].to_numpy(dtype=np.float32).reshape(-1, 5, 2) + 0.5
    return list(raw["image_id"]), pts


def read_celeba_identities(path: PathLike) -> dict[str, int]:
    """``identity_CelebA.txt`` (``<image_id> <identity>`` per line, no header) -> dict."""
    frame = _read_celeba_table(path, has_header=False)
    if frame.shape[1] != 2:
        raise ValueError(f"{path}: expected '<image_id> <identity>' rows")
    return dict(zip(frame["image_id"], frame.iloc[:, 1].astype(int)))


def read_celeba_partition(path: PathLike) -> dict[str, int]:
    """``list_eval_partition.txt`` (``<image_id> <0 train|1 val|2 test>``) -> dict."""
    frame = _read_celeba_table(path, has_header=False)
    values = frame.iloc[:, 1].astype(int)
    if frame.shape[1] != 2 or not values.isin([0, 1, 2]).all():
        raise ValueError(f"{path}: expected '<image_id> <0|1|2>' rows")
    return dict(zip(frame["image_id"], values))


# ----------------------------------------------------------------------------------------- AFLW
#: AFLW's 21 points in the order of its ``FeatureCoords.feature_id`` 1-21 (Koestinger et al. 2011;
#: the order of :data:`fa_lib.landmarks.PIFA_21_FROM_68`)
AFLW_POINT_NAMES = (
    "LeftBrowLeftCorner", "LeftBrowCenter", "LeftBrowRightCorner", "RightBrowLeftCorner", "RightBrowCenter",
    "RightBrowRightCorner", "LeftEyeLeftCorner", "LeftEyeCenter", "LeftEyeRightCorner", "RightEyeLeftCorner",
    "RightEyeCenter", "RightEyeRightCorner", "LeftEar", "NoseLeft", "NoseCenter", "NoseRight", "RightEar",
    "MouthLeftCorner", "MouthCenter", "MouthRightCorner", "ChinCenter")


@dataclasses.dataclass
class AFLWFace:
    """One face of AFLW's ``aflw.sqlite``."""

    face_id: int
    file: str               # FaceImages.filepath, relative to ``aflw/data/flickr/``
    box: np.ndarray         # (4,) float32 [x1, y1, x2, y2] from FaceRect
    points: np.ndarray      # (21, 2) float32, NaN where the point is not annotated (AFLW marks visible points only)
    pose: np.ndarray        # (3,) float32 (yaw, pitch, roll) in degrees from FacePose (stored in radians), NaN if absent


def read_aflw_sqlite(path: PathLike) -> list[AFLWFace]:
    """AFLW's annotation database (``aflw/data/aflw.sqlite``) -> its faces, in ``face_id`` order.

    Tables read: ``Faces`` (face_id, file_id), ``FaceImages`` (file_id, filepath), ``FaceRect`` (face_id,
    x, y, w, h), ``FeatureCoords`` (face_id, feature_id 1-21, x, y) and ``FacePose`` (face_id, roll, pitch,
    yaw in radians; optional). Faces without a rectangle or an image row are skipped: AFLW's database
    has a handful. Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, is
    not an SQLite database or lacks a table or column.
    """
    import sqlite3

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AFLW database not found: {path}")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise ValueError(f"{path}: cannot open as an SQLite database ({error})") from error
    try:
        cursor = connection.cursor()
        try:
            faces = cursor.execute(
                "SELECT Faces.face_id, FaceImages.filepath, FaceRect.x, FaceRect.y, FaceRect.w, FaceRect.h "
                "FROM Faces JOIN FaceImages ON Faces.file_id = FaceImages.file_id "
                "JOIN FaceRect ON FaceRect.face_id = Faces.face_id ORDER BY Faces.face_id").fetchall()
            coords = cursor.execute("SELECT face_id, feature_id, x, y FROM FeatureCoords").fetchall()
            tables = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            poses = (cursor.execute("SELECT face_id, yaw, pitch, roll FROM FacePose").fetchall()
                     if "FacePose" in tables else [])
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path}: not AFLW's database layout ({error})") from error
    finally:
        connection.close()
    points: dict[int, np.ndarray] = {}
    for face_id, feature_id, x, y in coords:
        if not 1 <= int(feature_id) <= len(AFLW_POINT_NAMES):
            raise ValueError(f"{path}: face {face_id} has feature_id {feature_id}; AFLW's are 1-21")
        row = points.setdefault(int(face_id), np.full((len(AFLW_POINT_NAMES), 2), np.nan, np.float32))
        row[int(feature_id) - 1] = (x, y)
    pose_of = {int(f): np.degrees(np.array([yaw, pitch, roll], np.float64)).astype(np.float32)
               for f, yaw, pitch, roll in poses if None not in (yaw, pitch, roll)}
    out = []
    for face_id, file, x, y, w, h in faces:
        out.append(AFLWFace(int(face_id), str(file), np.array([x, y, x + w, y + h], np.float32),
                            points.get(int(face_id), np.full((len(AFLW_POINT_NAMES), 2), np.nan, np.float32)),
                            pose_of.get(int(face_id), np.full(3, np.nan, np.float32))))
    return out


# ------------------------------------------------------------------------------------ WiderFace
WIDER_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclasses.dataclass
class WiderFaceImage:
    """One image of a ``wider_face_{train,val}_bbx_gt.txt`` file."""

    file: str                       # relative to WIDER_<split>/images/
    boxes: np.ndarray               # (K, 4) float32 [x1, y1, x2, y2]
    attributes: dict[str, np.ndarray]  # each (K,) int: blur, expression, ... as WIDER_ATTRIBUTES


def read_wider_face_boxes(path: PathLike) -> list[WiderFaceImage]:
    """Read a WiderFace box annotation file (``wider_face_split/wider_face_*_bbx_gt.txt``).

    Layout (readme.txt of ``wider_face_split.zip``, http://shuoyang1213.me/WIDERFACE/)::

        <file name>
        <number of boxes>
        x1 y1 w h blur expression illumination invalid occlusion pose     (one line per box)

    Quirk: an image with 0 boxes is still followed by one all-zero box line, which is skipped (it
    is not a face). Note that torchvision's ``datasets/widerface.py`` labels the last four columns
    in a different order (occlusion, pose, invalid); we follow the dataset's readme.
    """
    lines = [ln.strip() for ln in _read_text(path).splitlines()]
    images, i = [], 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name = lines[i]
        if i + 1 >= len(lines):
            raise ValueError(f"{path}: truncated file: no box count after {name!r} "
                             f"(line {i + 1})")
        try:
            count = int(lines[i + 1])
        except ValueError as err:
            raise ValueError(f"{path}: line {i + 2}: expected the number of boxes of {name!r}, "
                             f"got {lines[i + 1]!r}") from err
        i += 2
        rows = []
        for k in range(count):
            if i + k >= len(lines) or not lines[i + k]:
                raise ValueError(f"{path}: truncated file: {name!r} declares {count} boxes, "
                                 f"only {k} found")
            fields = lines[i + k].split()
            if len(fields) != 10:
                raise ValueError(f"{path}: line {i + k + 1}: expected 10 values per box, got "
                                 f"{len(fields)}")
            rows.append([int(float(v)) for v in fields])
        i += count
        if count == 0 and i < len(lines) and _is_zero_box_line(lines[i]):
            i += 1
        a = np.array(rows, dtype=np.int64).reshape(-1, 10)
        boxes = np.stack([a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]], axis=1)
        attrs = {n: a[:, 4 + j].copy() for j, n in enumerate(WIDER_ATTRIBUTES)}
        images.append(WiderFaceImage(name, boxes.astype(np.float32), attrs))
    return images


def _is_zero_box_line(line: str) -> bool:
    fields = line.split()
    try:
        return len(fields) == 10 and all(float(v) == 0 for v in fields)
    except ValueError:
        return False


# ------------------------------------------------------------------------------ Oxford-IIIT Pet
PET_SPECIES = {1: "cat", 2: "dog"}


def read_pet_list(path: PathLike):
    """Oxford-IIIT Pet ``annotations/list.txt`` / ``trainval.txt`` / ``test.txt`` -> DataFrame.

    Rows ``<image> <class id 1-37> <species 1 cat | 2 dog> <breed id>``; ``#`` lines are comments
    (https://www.robots.ox.ac.uk/~vgg/data/pets/, README of ``annotations.tar.gz``; torchvision
    ``datasets/oxford_iiit_pet.py`` reads trainval/test the same way). Columns: image, class_id,
    species (1/2), breed_id, species_name.
    """
    import pandas as pd

    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        if len(f) != 4:
            raise ValueError(f"{path}: line {n}: expected 4 fields, got {len(f)}")
        try:
            rows.append((f[0], int(f[1]), int(f[2]), int(f[3])))
        except ValueError as err:
            raise ValueError(f"{path}: line {n}: non-integer id ({err})") from err
    frame = pd.DataFrame(rows, columns=["image", "class_id", "species", "breed_id"])
    bad = ~frame["species"].isin(list(PET_SPECIES))
    if bad.any():
        raise ValueError(f"{path}: species must be 1 (cat) or 2 (dog); bad rows "
                         f"{list(frame.loc[bad, 'image'][:3])}")
    frame["species_name"] = frame["species"].map(PET_SPECIES)
    return frame


def read_pet_head_box(path: PathLike) -> tuple[str, np.ndarray]:
    """Oxford-IIIT Pet ``annotations/xmls/<image>.xml`` (PASCAL VOC) -> (species name, head box).

    The single ``<object>`` is the animal's head ("cat"/"dog") with a VOC ``<bndbox>``: 1-based
    inclusive pixel indices, returned as float32 [xmin - 1, ymin - 1, xmax, ymax] pixel edges.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ValueError(f"{path}: malformed XML ({err})") from err
    obj = root.find("object")
    box = obj.find("bndbox") if obj is not None else None
    if box is None:
        raise ValueError(f"{path}: no <object><bndbox> element")
    try:
        xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from err
    return (obj.findtext("name") or "").strip(), np.array([xmin - 1, ymin - 1, xmax, ymax],
                                                          dtype=np.float32)


PET_TRIMAP_LABELS = {1: "pet", 2: "background", 3: "border"}


def read_pet_trimap(path: PathLike) -> np.ndarray:
    """``annotations/trimaps/<image>.png`` -> uint8 (H, W) with 1 pet, 2 background, 3 border."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trimap file not found: {path}")
    with Image.open(path) as im:
        trimap = np.asarray(im, dtype=np.uint8).copy()
    if trimap.ndim != 2 or not np.isin(np.unique(trimap), list(PET_TRIMAP_LABELS)).all():
        raise ValueError(f"{path}: a trimap must be one channel with values 1, 2, 3")
    return trimap


# --------------------------------------------------------------------------------- small helpers
def find_image(stem_path: PathLike, extensions: Iterable[str] = (".jpg", ".png", ".jpeg",
                                                                  ".bmp", ".ppm")) -> Path:
    """The image next to an annotation file: same folder and stem, any usual extension."""
    stem_path = Path(stem_path)
    for ext in extensions:
        for candidate in (stem_path.with_suffix(ext), stem_path.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no image found for annotation {stem_path} "
                            f"(tried {', '.join(extensions)})")
