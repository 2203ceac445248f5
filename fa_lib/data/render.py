"""Rendering of synthetic annotated faces: the embedded benchmark (thesis 1.3.2, 4.1).

A sample is a random face of the morphable model (:mod:`fa_lib.data.face_model`) seen by a
scaled-orthographic ("weak perspective") camera, as in the 3DDFA fits behind 300-W-LP and
AFLW2000-3D, rasterised with a z-buffer and Lambert + Blinn-Phong shading on a per-vertex albedo,
composited over a background, partly covered by occluders and degraded (blur, noise, colour).

Its annotations follow the thesis's two markups (Fig. 1.4, section 4.1):
- "3D" landmarks: the projections of the 68 fixed landmark vertices, whatever their visibility, with
  depth z (image px, larger = nearer, zero at the mean of the 68) and z-buffer visibility;
- "2D" landmarks: the same points except the 17 jaw points, which slide to the visible silhouette:
  each jaw point is the outermost visible vertex of its iso-height line of the mesh (so near
  frontal poses they coincide with the 3D points and at large yaw they follow the face outline).

Pose convention (degrees): yaw > 0 turns the nose towards the image's right (the subject's left
half turns away), pitch > 0 tilts the face down, roll > 0 turns it counter-clockwise in the image.
Everything random comes from one ``numpy.random.Generator`` so a sample is a pure function of its
seed.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from fa_lib.data.face_model import FaceModel, load_face_model
from fa_lib.geometry import box_from_landmarks

#: Bump when anything changes the rendered bytes: cached datasets record it and are re-rendered.
RENDERER_VERSION = 6
#: Mean-face height (mm) from the brow tops to the chin, used to size faces in the image.
_MODEL_FACE_HEIGHT_MM = 136.0


# ----------------------------------------------------------------------------------------------
# configuration and per-sample parameters

@dataclass(frozen=True)
class RenderConfig:
    """What varies between samples and by how much (all ranges inclusive).

    face_height: the face's height (brows to chin, frontal) as a fraction of the image side, like
    the faces in detector crops of 300-W-LP; centre_jitter: offset of the face centre as a fraction
    of the side. supersample: the face layer is rasterised at this factor and area-averaged
    (anti-aliasing). grey: output HxW uint8. occluders_hide_points: a landmark under a drawn
    occluder is labelled invisible (AFLW-PIFA's visibility, chapter 3); off, visibility is the
    face's own self-occlusion only (the z-buffer).
    """

    size: int = 256
    yaw_range: tuple[float, float] = (-90.0, 90.0)
    pitch_std: float = 10.0
    pitch_limit: float = 30.0
    roll_std: float = 10.0
    roll_limit: float = 30.0
    face_height: tuple[float, float] = (0.36, 0.52)
    centre_jitter: float = 0.06
    shape_scale: float = 1.0
    expression_scale: float = 1.0
    occluder_probability: float = 0.3
    blur_probability: float = 0.3
    max_blur_sigma: float = 1.2
    noise_probability: float = 0.5
    max_noise_std: float = 6.0
    colour_jitter: float = 0.12
    grey: bool = False
    supersample: int = 1
    occluders_hide_points: bool = False


    def __post_init__(self):
        if int(self.size) < 16:
            raise ValueError(f"size must be >= 16 px, got {self.size}")
        lo, hi = self.yaw_range
        if not -90.0 <= lo <= hi <= 90.0:
            raise ValueError(f"yaw_range must satisfy -90 <= lo <= hi <= 90, got {self.yaw_range}")
        flo, fhi = self.face_height
        if not 0.05 <= flo <= fhi <= 1.0:
            raise ValueError(f"face_height must satisfy 0.05 <= lo <= hi <= 1, got {self.face_height}")
        if int(self.supersample) < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")

    def to_dict(self) -> dict:
        """The fields as a dict; switches added after sets were rendered are left out while off,
        so the keys of those sets stay valid."""
        d = asdict(self)
        if not self.occluders_hide_points:
            d.pop("occluders_hide_points")
        return d


@dataclass(frozen=True)
class Identity:
    """A person: shape coefficients and the colours of their face (fixed by the identity id)."""

    identity: int
    shape: np.ndarray
    skin: np.ndarray          # RGB in [0, 1]
    hair: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    brow_density: float
    hairline_mm: float        # height of the hairline above the brows (the mesh ends near 40 mm)
    beard: float              # 0 clean shaven .. 1 dark stubble
    rosiness: float
    vertex_noise_seed: int


@dataclass(frozen=True)
class Scene:
    """Everything else about one picture of an identity."""

    expression: np.ndarray
    yaw: float
    pitch: float
    roll: float
    face_height_px: float
    centre: tuple[float, float]
    ambient: np.ndarray       # RGB
    diffuse: np.ndarray       # RGB
    light_direction: np.ndarray  # unit vector in camera coordinates (x right, y up, z to camera)
    specular: float
    seed: int                 # background, occluders and degradations


_SKIN_TONES = np.array([  # light .. dark, sRGB in [0, 1]
    [0.98, 0.84, 0.74], [0.93, 0.76, 0.64], [0.85, 0.65, 0.52], [0.74, 0.54, 0.40],
    [0.60, 0.42, 0.30], [0.45, 0.30, 0.21], [0.33, 0.22, 0.16]])
_HAIR_COLOURS = np.array([
    [0.06, 0.05, 0.05], [0.18, 0.12, 0.08], [0.32, 0.21, 0.12], [0.55, 0.40, 0.24],
    [0.78, 0.64, 0.42], [0.50, 0.22, 0.10], [0.62, 0.60, 0.58]])
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.1, 0.07, 0.05, 0.08])
_IRIS_COLOURS = np.array([
    [0.20, 0.12, 0.07], [0.35, 0.22, 0.12], [0.25, 0.38, 0.55], [0.30, 0.40, 0.30],
    [0.10, 0.08, 0.07]])


def sample_identity(model: FaceModel, identity: int, config: RenderConfig = RenderConfig(),
                    namespace: int = 0) -> Identity:
    """The identity with this id: a pure function of (identity, namespace).

    Different namespaces give disjoint populations (e.g. training and test people).
    """
    rng = np.random.default_rng([0x1D, int(namespace), int(identity)])
    shape, _ = model.sample_coefficients(rng, shape_scale=config.shape_scale)
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = int(min(t, len(_SKIN_TONES) - 2))
    skin = _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[i + 1] * (t - i)
    skin = np.clip(skin * rng.normal(1.0, 0.03, 3), 0, 1)
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)] * rng.uniform(0.85, 1.15)
    if t > 3.5:                                   # darker skin: mostly dark hair
        hair = _HAIR_COLOURS[rng.integers(0, 2)] * rng.uniform(0.85, 1.15)
    lip = np.clip(skin * np.array([0.86, 0.58, 0.58]) + rng.normal(0, 0.03, 3), 0, 1)
    if rng.random() < 0.15:                       # lipstick
        lip = np.array([0.62, 0.12, 0.18]) * rng.uniform(0.7, 1.1)
    return Identity(
        identity=int(identity), shape=shape, skin=skin.astype(np.float32),
        hair=np.clip(hair, 0, 1).astype(np.float32), lip=lip.astype(np.float32),
        iris=(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2)).astype(np.float32),
        brow_density=float(rng.uniform(0.55, 0.95)),
        hairline_mm=float(rng.choice([rng.uniform(18, 34), rng.uniform(34, 60)], p=[0.55, 0.45])),
        beard=float(rng.uniform(0.0, 1.0) if rng.random() < 0.3 else 0.0),
        rosiness=float(rng.uniform(0.0, 1.0)),
        vertex_noise_seed=int(rng.integers(2**31)))


def _truncated_normal(rng, std, limit):
    return float(np.clip(rng.normal(0.0, std), -limit, limit)) if std > 0 else 0.0


def sample_scene(model: FaceModel, rng: np.random.Generator, config: RenderConfig = RenderConfig(),
                 yaw: float | None = None) -> Scene:
    """Random expression, pose, framing and lighting (``yaw`` fixes the yaw)."""
    _, expression = model.sample_coefficients(rng, expression_scale=config.expression_scale)
    yaw_value = float(rng.uniform(*config.yaw_range)) if yaw is None else float(yaw)
    pitch = _truncated_normal(rng, config.pitch_std, config.pitch_limit)
    roll = _truncated_normal(rng, config.roll_std, config.roll_limit)
    size = config.size
    face_height = float(rng.uniform(*config.face_height)) * size
    centre = tuple(float(v) for v in size / 2 + rng.uniform(-1, 1, 2) * config.centre_jitter * size)
    azimuth = math.radians(rng.uniform(-75, 75))
    elevation = math.radians(rng.uniform(-25, 60))
    direction = np.array([math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
                          math.cos(azimuth) * math.cos(elevation)], np.float32)
    tint = rng.normal(1.0, 0.06, 3)
    ambient = (rng.uniform(0.35, 0.65) * tint).astype(np.float32)
    diffuse = (rng.uniform(0.35, 0.8) * rng.normal(1.0, 0.05, 3)).astype(np.float32)
    return Scene(expression=expression, yaw=yaw_value, pitch=pitch, roll=roll,
                 face_height_px=face_height, centre=centre, ambient=ambient, diffuse=diffuse,
                 light_direction=direction, specular=float(rng.uniform(0.0, 0.25)),
                 seed=int(rng.integers(2**31)))


# ----------------------------------------------------------------------------------------------
# geometry

def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) model -> camera rotation ``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees; module doc)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def rasterize(points: np.ndarray, depth: np.ndarray, triangles: np.ndarray, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised z-buffer rasterisation of triangles with a pixel-centre sampling rule.

    ``points`` (V, 2) in continuous pixel coordinates (pixel (i, j) has its centre at
    (j + 0.5, i + 0.5)), ``depth`` (V,) larger = nearer. Every triangle is drawn (cull before).
    Returns ``triangle`` (H, W) int32 (index into ``triangles``, -1 empty), ``barycentric``
    (H, W, 3) float32 and ``zbuffer`` (H, W) float32 (-inf empty).

    Each triangle enumerates the pixel centres of its bounding box; the nearest candidate of each
    pixel wins (``np.maximum.at`` on the depth), so there is no Python loop over triangles.
    """
    tri_buf = np.full(height * width, -1, np.int32)
    bary = np.zeros((height * width, 3), np.float32)
    zbuf = np.full(height * width, -np.inf, np.float32)
    if len(triangles) == 0:
        return tri_buf.reshape(height, width), bary.reshape(height, width, 3), zbuf.reshape(height, width)
    p = points[triangles].astype(np.float64)           # (T, 3, 2)
    z = depth[triangles].astype(np.float64)             # (T, 3)
    x0, y0 = p[:, 0, 0], p[:, 0, 1]
    e1 = p[:, 1] - p[:, 0]
    e2 = p[:, 2] - p[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    # (reductions over a length-3 middle axis are slow in numpy: take the extremes pairwise)
    lo = np.ceil(np.minimum(np.minimum(p[:, 0], p[:, 1]), p[:, 2]) - 0.5).astype(np.int64)
    hi = np.floor(np.maximum(np.maximum(p[:, 0], p[:, 1]), p[:, 2]) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    n = hi - lo + 1
    ok = (np.abs(area2) > 1e-9) & (n[:, 0] > 0) & (n[:, 1] > 0)
    idx = np.flatnonzero(ok)
    nx, ny = n[idx, 0], n[idx, 1]
    count = nx * ny
    total = int(count.sum())
    if total == 0:
        return tri_buf.reshape(height, width), bary.reshape(height, width, 3), zbuf.reshape(height, width)
    # barycentric coordinates w1, w2 and the depth are affine in (x, y): per-triangle coefficients
    inv = 1.0 / area2[idx]
    a1, b1 = e2[idx, 1] * inv, -e2[idx, 0] * inv
    a2, b2 = -e1[idx, 1] * inv, e1[idx, 0] * inv
    c1 = -(a1 * x0[idx] + b1 * y0[idx])
    c2 = -(a2 * x0[idx] + b2 * y0[idx])
    dz1, dz2 = z[idx, 1] - z[idx, 0], z[idx, 2] - z[idx, 0]
    # the per-pixel work is in float32 (coefficients are exact enough; triangles are small)
    a1, b1, c1, a2, b2, c2, dz1, dz2 = (v.astype(np.float32) for v in (a1, b1, c1, a2, b2, c2, dz1, dz2))
    z0 = z[:, 0].astype(np.float32)
    start = np.cumsum(count) - count
    tpos = np.repeat(np.arange(len(idx)), count)         # candidate -> position in idx
    k = np.arange(total, dtype=np.int64) - start[tpos]
    nx_r = nx[tpos]
    col = lo[idx, 0][tpos] + k % nx_r
    row = lo[idx, 1][tpos] + k // nx_r
    px, py = col.astype(np.float32) + 0.5, row.astype(np.float32) + 0.5
    w1 = a1[tpos] * px + b1[tpos] * py + c1[tpos]
    w2 = a2[tpos] * px + b2[tpos] * py + c2[tpos]
    w0 = 1.0 - w1 - w2
    eps = np.float32(-1e-6)
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    tpos = tpos[inside]
    w1, w2, w0 = w1[inside], w2[inside], w0[inside]
    t_in = idx[tpos]
    zz = z0[t_in] + w1 * dz1[tpos] + w2 * dz2[tpos]
    pix = row[inside] * width + col[inside]
    np.maximum.at(zbuf, pix, zz)
    win = zz >= zbuf[pix]
    tri_buf[pix[win]] = t_in[win]
    bary[pix[win]] = np.stack([w0[win], w1[win], w2[win]], axis=1)
    return tri_buf.reshape(height, width), bary.reshape(height, width, 3), zbuf.reshape(height, width)


# ----------------------------------------------------------------------------------------------
# appearance

def vertex_albedo(model: FaceModel, person: Identity) -> np.ndarray:
    """(V, 3) per-vertex RGB albedo in [0, 1]: skin, cheeks, brows, hair, lips, eyes, nostrils."""
    f = model.features
    skin = np.broadcast_to(person.skin, (model.n_vertices, 3)).astype(np.float32)
    col = skin.copy()
    rosy = (f["cheek"] * 0.35 * person.rosiness + f["nose"] * 0.2 * person.rosiness)[:, None]
    col = col * (1 - rosy) + (person.skin * np.array([1.02, 0.78, 0.76], np.float32)) * rosy
    beard = (f["beard"] * person.beard * 0.55)[:, None]
    col = col * (1 - beard) + (person.hair * 0.7 + person.skin * 0.3) * beard
    rng = np.random.default_rng(person.vertex_noise_seed)
    col = col * rng.normal(1.0, 0.025, (model.n_vertices, 1)).astype(np.float32)
    hair = (1.0 - np.clip((person.hairline_mm - f["above_brow"]) / 4.0, 0, 1))
    side_hair = np.clip((f["side"] - 64.0) / 6.0, 0, 1) * np.clip((f["above_brow"] + 12.0) / 6.0, 0, 1)
    hair = np.maximum(hair, side_hair * (person.hairline_mm < 55))[:, None]
    col = col * (1 - hair) + person.hair * rng.normal(1.0, 0.08, (model.n_vertices, 1)) * hair
    brow_colour = person.hair * 0.75 + 0.03
    brow = (f["brow"] * person.brow_density)[:, None]
    col = col * (1 - brow) + brow_colour * brow
    lip = f["lip"][:, None]
    col = col * (1 - lip) + person.lip * lip
    nostril = (f["nostril"] * 0.8)[:, None]
    col = col * (1 - nostril) + np.array([0.12, 0.06, 0.05], np.float32) * nostril
    eye = f["eye"][:, None]
    r = f["iris_radius"]
    sclera = np.array([0.86, 0.83, 0.80], np.float32)
    iris_w = (1 - np.clip((r - 4.6) / 1.0, 0, 1))[:, None]
    pupil_w = (1 - np.clip((r - 1.6) / 0.8, 0, 1))[:, None]
    eye_col = sclera * (1 - iris_w) + person.iris * iris_w
    eye_col = eye_col * (1 - pupil_w) + np.array([0.03, 0.03, 0.03], np.float32) * pupil_w
    col = col * (1 - eye) + eye_col * eye
    lid = (f["eyelid"] * 0.55)[:, None]
    col = col * (1 - lid) + np.array([0.10, 0.07, 0.06], np.float32) * lid
    return np.clip(col, 0, 1).astype(np.float32)


_ALBEDO_CACHE: dict = {}


def _cached_albedo(model: FaceModel, person: Identity) -> np.ndarray:
    """vertex_albedo memoised per identity (training sets show each person several times)."""
    key = (id(model), person.identity, person.vertex_noise_seed)
    if key not in _ALBEDO_CACHE:
        if len(_ALBEDO_CACHE) > 256:
            _ALBEDO_CACHE.clear()
        _ALBEDO_CACHE[key] = vertex_albedo(model, person)
    return _ALBEDO_CACHE[key]


def shade_vertices(albedo: np.ndarray, normals_cam: np.ndarray, scene: Scene) -> np.ndarray:
    """Lambert (ambient + directional) plus a Blinn-Phong highlight, per vertex, camera frame."""
    n_dot_l = np.clip(normals_cam @ scene.light_direction, 0.0, None)[:, None]
    half = scene.light_direction + np.array([0.0, 0.0, 1.0], np.float32)
    half = half / np.linalg.norm(half)
    spec = scene.specular * np.clip(normals_cam @ half, 0.0, None)[:, None] ** 24
    return albedo * (scene.ambient + scene.diffuse * n_dot_l) + spec


# ----------------------------------------------------------------------------------------------
# backgrounds, occluders, degradations

# scikit-image's bundled pictures with no person in them (astronaut and camera show faces, the
# coins show heads)
_BACKGROUND_IMAGES = ("coffee", "chelsea", "rocket", "moon", "page", "text", "brick", "grass",
                      "gravel", "hubble_deep_field", "immunohistochemistry", "retina", "clock",
                      "colorwheel", "stereo_motorcycle", "cell")


@lru_cache(maxsize=None)
def _background_image(name: str) -> np.ndarray | None:
    """One bundled scikit-image picture as RGB uint8, at most 512 px on a side (None if missing)."""
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception:        # a picture missing from this scikit-image build is just skipped
        return None
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) * (255.0 / max(float(img.max()), 1.0))).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    factor = 512.0 / max(img.shape[:2])
    if factor < 1:
        img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return img


def background_images() -> tuple[np.ndarray, ...]:
    """The non-face pictures bundled with scikit-image that load offline (RGB uint8)."""
    return tuple(img for img in map(_background_image, _BACKGROUND_IMAGES) if img is not None)


def _noise_field(rng, size: int, octaves: int = 4) -> np.ndarray:
    """(size, size) fractal value noise in about [-1, 1]."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for o in range(octaves):
        cells = 2 + 2 ** (o + 1)
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        amp *= 0.5
    return out / 1.5


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: a crop of a bundled picture or a procedural texture."""
    kind = rng.choice(["image", "noise", "stripes", "clutter"], p=[0.45, 0.25, 0.1, 0.2])
    if kind == "image":
        img = _background_image(_BACKGROUND_IMAGES[rng.integers(len(_BACKGROUND_IMAGES))])
        if img is not None:
            h, w = img.shape[:2]
            side = int(rng.uniform(0.35, 1.0) * min(h, w))
            y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = cv2.resize(img[y0:y0 + side, x0:x0 + side], (size, size),
                              interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
            bg = crop.astype(np.float32) / 255.0
            if rng.random() < 0.5:
                bg = bg[:, ::-1]
            return np.clip(bg * rng.uniform(0.6, 1.2) * rng.normal(1.0, 0.08, 3), 0, 1)
        kind = "noise"
    base = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    if kind == "noise":
        other = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        t = (_noise_field(rng, size)[..., None] * rng.uniform(0.3, 1.0) + 1) / 2
        bg = base * (1 - t) + other * t
    elif kind == "stripes":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(3, 20)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        other = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        t = ((wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2)[..., None]
        bg = base * (1 - t) + other * t
    else:  # clutter: a wall with random furniture-like shapes
        bg = np.broadcast_to(base, (size, size, 3)).copy()
        for _ in range(int(rng.integers(3, 12))):
            colour = tuple(float(c) for c in rng.uniform(0.05, 0.95, 3))
            p = rng.uniform(-0.2, 1.2, 2) * size
            q = p + rng.uniform(0.05, 0.6, 2) * size
            if rng.random() < 0.6:
                cv2.rectangle(bg, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, -1)
            else:
                cv2.circle(bg, (int(p[0]), int(p[1])), int(rng.uniform(0.03, 0.3) * size), colour, -1)
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 2.0))
    shade = (np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), size, dtype=np.float32))
    bg = bg * (shade[:, None, None] if rng.random() < 0.5 else shade[None, :, None])
    return np.clip(bg, 0, 1).astype(np.float32)


def draw_occluders(image: np.ndarray, rng: np.random.Generator, box: np.ndarray,
                   return_mask: bool = False):
    """Paint 1-2 random objects (disc, bar, polygon, textured patch) over part of the face box.

    ``return_mask``: also return the objects' coverage (H, W) float32 in [0, 1] (anti-aliased), to
    tell which landmarks they hide."""
    size = image.shape[0]
    coverage = np.zeros(image.shape[:2], np.float32)
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 4.0), max(y2 - y1, 4.0)
    for _ in range(int(rng.integers(1, 3))):
        mask = np.zeros(image.shape[:2], np.float32)
        cx, cy = x1 + rng.uniform(0, 1) * w, y1 + rng.uniform(0, 1) * h
        r = rng.uniform(0.15, 0.35) * max(w, h)
        shape = rng.choice(["disc", "bar", "polygon"])
        if shape == "disc":
            cv2.ellipse(mask, (int(cx * 4), int(cy * 4)), (int(r * 4), int(r * rng.uniform(0.5, 1) * 4)),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA, shift=2)
        else:
            n = 4 if shape == "bar" else int(rng.integers(5, 9))
            if shape == "bar":
                a = rng.uniform(0, np.pi)
                d = np.array([np.cos(a), np.sin(a)])
                nrm = np.array([-d[1], d[0]])
                L, T = rng.uniform(1.0, 2.5) * r, rng.uniform(0.15, 0.4) * r
                pts = np.array([[cx, cy]]) + np.array([d * L + nrm * T, d * L - nrm * T,
                                                        -d * L - nrm * T, -d * L + nrm * T])
            else:
                ang = np.sort(rng.uniform(0, 2 * np.pi, n))
                rad = r * rng.uniform(0.5, 1.0, n)
                pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
            cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
        if rng.random() < 0.5:
            fill = make_background(rng, size)
        else:
            fill = np.broadcast_to(rng.uniform(0.02, 0.98, 3).astype(np.float32), image.shape).copy()
            fill *= (1 + 0.15 * _noise_field(rng, size, 3))[..., None]
        m = mask[..., None]
        image = image * (1 - m) + np.clip(fill, 0, 1) * m
        coverage = np.maximum(coverage, mask)
    return (image, coverage) if return_mask else image


def points_under(coverage: np.ndarray, points: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Which points (N, >=2) lie on a pixel the occluder ``coverage`` (H, W) covers by more than
    ``threshold``; points outside the image are not covered."""
    h, w = coverage.shape
    cols = np.floor(np.asarray(points)[:, 0]).astype(np.int64)
    rows = np.floor(np.asarray(points)[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    covered = np.zeros(len(cols), bool)
    covered[inside] = coverage[rows[inside], cols[inside]] > threshold
    return covered


def degrade(image: np.ndarray, rng: np.random.Generator, config: RenderConfig) -> np.ndarray:
    """Colour jitter (brightness, contrast, saturation, white balance), blur and sensor noise."""
    cj = config.colour_jitter
    if cj > 0:
        image = image * rng.uniform(1 - cj, 1 + cj) * rng.normal(1.0, cj / 3, 3).astype(np.float32)
        mean = float(image.mean())
        image = (image - mean) * rng.uniform(1 - cj, 1 + cj) + mean
        grey = image @ np.full((3, 1), 1 / 3, np.float32)
        image = grey + (image - grey) * rng.uniform(1 - 2 * cj, 1 + cj)
    if rng.random() < config.blur_probability and config.max_blur_sigma > 0:
        sigma = rng.uniform(0.3, config.max_blur_sigma) * config.size / 256
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), max(sigma, 0.1))
    if rng.random() < config.noise_probability and config.max_noise_std > 0:
        image = image + rng.normal(0, rng.uniform(0.5, config.max_noise_std) / 255.0,
                                   image.shape).astype(np.float32)
    return image


# ----------------------------------------------------------------------------------------------
# the sample

def _project(model: FaceModel, vertices: np.ndarray, scene: Scene):
    """Camera-frame vertices, the image scale (px per mm) and the image-plane translation."""
    rot = rotation_matrix(scene.yaw, scene.pitch, scene.roll).astype(np.float32)
    cam = vertices @ rot.T
    scale = scene.face_height_px / _MODEL_FACE_HEIGHT_MM
    lm = cam[model.landmark_vertices]
    mid = (lm[:, :2].min(0) + lm[:, :2].max(0)) / 2
    tx = scene.centre[0] - scale * mid[0]
    ty = scene.centre[1] + scale * mid[1]
    return rot, cam, scale, tx, ty


def _jaw_on_silhouette(model: FaceModel, cam_unrolled_x: np.ndarray, visible: np.ndarray,
                       yaw: float) -> np.ndarray:
    """Vertex index of each "2D" jaw point (thesis Fig. 1.4).

    On the half of the face that turns away from the camera the jaw point slides to the occluding
    contour: the outermost visible vertex of its iso-height line. On the half that turns towards
    the camera the jaw line itself stays the outline, so the point stays the 3D landmark.
    """
    lines = model.jaw_lines.copy()
    side = np.sign(model.mean[model.landmark_vertices[:17], 0])
    turning_away = side * yaw > 0
    lines[~turning_away, 1:] = -1
    valid = lines >= 0
    safe = np.where(valid, lines, 0)
    side = side[:, None]
    outward = np.where(valid & visible[safe], side * cam_unrolled_x[safe], -np.inf)
    best = np.argmax(outward, axis=1)
    any_visible = np.isfinite(outward).any(axis=1)
    # no visible vertex on the line (hidden side of a profile): the outermost vertex of the line
    fallback = np.argmax(np.where(valid, side * cam_unrolled_x[safe], -np.inf), axis=1)
    best = np.where(any_visible, best, fallback)
    chosen = lines[np.arange(17), best]
    chosen[8] = model.landmark_vertices[8]
    return chosen


def _fill_holes(layer: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the pixels enclosed by the face but missed by the mesh (the rebuilt triangulation has
    a few gaps, e.g. in the nostrils) with the mean colour of their covered neighbours."""
    outside = (~covered).astype(np.uint8)
    reach = np.zeros((covered.shape[0] + 2, covered.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, reach, (0, 0), 2)          # the layer has an empty 1-px margin
    holes = outside == 1
    if not holes.any():
        return layer, covered
    weight = covered.astype(np.float32)
    filled = layer.copy()
    todo = holes.copy()
    for k in (5, 11, 23, 47):
        num = cv2.blur(layer * weight[..., None], (k, k))
        den = cv2.blur(weight, (k, k))
        ok = todo & (den > 1e-3)
        filled[ok] = num[ok] / den[ok, None]
        todo &= ~ok
        if not todo.any():
            break
    return filled, covered | (holes & ~todo)


def _soften_edge(layer: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheap anti-aliasing without supersampling: a half-pixel soft alpha at the silhouette, with
    the face colour carried one pixel outwards so the soft rim does not darken.

    Returns the layer premultiplied by its alpha, and the alpha."""
    mask = covered.astype(np.float32)
    count = cv2.blur(mask, (3, 3))
    grown = cv2.blur(layer * mask[..., None], (3, 3)) / np.maximum(count, 1e-6)[..., None]
    colour = np.where(covered[..., None], layer, grown)
    count = (count > 0).astype(np.float32)
    alpha = np.minimum(cv2.GaussianBlur(mask, (3, 3), 0.6) * 1.25, count)
    alpha = np.where(covered, np.maximum(alpha, 0.5), alpha)
    return colour * alpha[..., None], alpha


def render_sample(model: FaceModel, person: Identity, scene: Scene, config: RenderConfig = RenderConfig(),
                  source: str = "synthetic", return_mask: bool = False) -> dict:
    """Render one annotated face: the project's sample dict (image, landmarks_2d, landmarks_3d,
    visibility, box, pose, identity, source), all in pixel coordinates of the returned image.

    ``return_mask``: also return ``face_mask`` (H, W) float32, the face's coverage before
    occluders (for checks and face-parsing masks).
    """
    size, ss = int(config.size), int(config.supersample)
    rng = np.random.default_rng(scene.seed)
    verts = model.vertices(person.shape, scene.expression)
    rot, cam, scale, tx, ty = _project(model, verts, scene)
    # image coordinates at the supersampled resolution, depth in output-image px (nearer = larger)
    x = (scale * cam[:, 0] + tx)
    y = (-scale * cam[:, 1] + ty)
    z = scale * cam[:, 2]
    z_ref = float(z[model.landmark_vertices].mean())
    z = z - z_ref
    normals = model.vertex_normals(cam)
    colours = shade_vertices(_cached_albedo(model, person), normals, scene)

    # the face layer: rasterised on its own bounding box (which may leave the image) at ss x
    x0 = int(math.floor(x.min())) - 1
    y0 = int(math.floor(y.min())) - 1
    w = int(math.ceil(x.max())) + 2 - x0
    h = int(math.ceil(y.max())) + 2 - y0
    pts = np.stack([(x - x0) * ss, (y - y0) * ss], axis=1)
    tri = model.triangles
    # culling by the smooth vertex normals rather than the winding: a triangle is dropped only when
    # all three of its vertices face away, so the few triangles the unwrap folded still render and
    # the open mesh's inner side (nostrils, ears) shows where it should instead of a hole
    faces_camera = normals[:, 2] > -0.05
    front = np.flatnonzero(faces_camera[tri].any(axis=1))
    tri_buf, bary, zbuf = rasterize(pts, z * ss, tri[front], h * ss, w * ss)
    covered = tri_buf >= 0
    t_full = front[np.where(covered, tri_buf, 0)]
    layer = np.einsum("hwk,hwkc->hwc", bary, colours[tri[t_full]])
    mouth = model.mouth_triangles[t_full] & covered
    if mouth.any():
        mouth_colour = np.array([0.22, 0.07, 0.07], np.float32) * (scene.ambient + 0.3 * scene.diffuse)
        layer[mouth] = mouth_colour
    layer, covered = _fill_holes(layer, covered)
    alpha = covered.astype(np.float32)
    if ss > 1:
        layer = cv2.resize(layer * alpha[..., None], (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    else:
        layer, alpha = _soften_edge(layer, covered)

    # visibility of a vertex: not behind the z-buffer at its (supersampled) pixel
    tol = 0.025 * scene.face_height_px
    zbuf_out = zbuf / ss

    def visible_of(vertex_ids: np.ndarray) -> np.ndarray:
        # compare with the farthest surface among the 3x3 pixels around the point: on a steep
        # slope (the jaw seen frontally) the point's own surface is nearer at the pixel centre
        cols = np.floor(pts[vertex_ids, 0]).astype(int)[:, None] + np.array([-1, 0, 1] * 3)
        rows = np.floor(pts[vertex_ids, 1]).astype(int)[:, None] + np.repeat([-1, 0, 1], 3)
        cols = np.clip(cols, 0, w * ss - 1)
        rows = np.clip(rows, 0, h * ss - 1)
        return z[vertex_ids] >= zbuf_out[rows, cols].min(axis=1) - tol

    lm_ids = model.landmark_vertices
    visibility = visible_of(lm_ids)
    line_ids = np.where(model.jaw_lines >= 0, model.jaw_lines, 0)
    line_visible = np.zeros(model.n_vertices, bool)
    line_visible[line_ids.ravel()] = visible_of(line_ids.ravel())
    # the silhouette does not depend on roll (in-plane): search in the unrolled camera frame
    unrolled_x = verts @ rotation_matrix(scene.yaw, scene.pitch, 0.0)[0].astype(np.float32)
    jaw_ids = _jaw_on_silhouette(model, unrolled_x, line_visible, scene.yaw)

    landmarks_3d = np.stack([x[lm_ids], y[lm_ids], z[lm_ids]], axis=1).astype(np.float32)
    landmarks_2d = landmarks_3d[:, :2].copy()
    landmarks_2d[:17] = np.stack([x[jaw_ids], y[jaw_ids]], axis=1)
    box = box_from_landmarks(landmarks_2d).astype(np.float32)

    # composite over the background
    image = make_background(rng, size)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.5) * size / 256)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + w, size), min(y0 + h, size)
    if ix1 > ix0 and iy1 > iy0:
        sub_l = layer[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        sub_a = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, None]
        image[iy0:iy1, ix0:ix1] = image[iy0:iy1, ix0:ix1] * (1 - sub_a) + sub_l
    if return_mask:
        face_mask = np.zeros((size, size), np.float32)
        if ix1 > ix0 and iy1 > iy0:
            face_mask[iy0:iy1, ix0:ix1] = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    if rng.random() < config.occluder_probability:
        image, coverage = draw_occluders(image, rng, box, return_mask=True)
        if config.occluders_hide_points:
            # a landmark under a drawn object is not visible (AFLW-PIFA's labels, chapter 3)
            visibility = visibility & ~points_under(coverage, landmarks_3d)
    image = degrade(image, rng, config)
    out = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if config.grey:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    sample = {
        "image": out,
        "landmarks_2d": landmarks_2d.astype(np.float32),
        "landmarks_3d": landmarks_3d,
        "visibility": visibility.astype(bool),
        "box": box,
        "pose": np.array([scene.yaw, scene.pitch, scene.roll], np.float32),
        "identity": int(person.identity),
        "source": source,
    }
    if return_mask:
        sample["face_mask"] = face_mask
    return sample


def face_model_for(config: RenderConfig) -> FaceModel:
    """The face model at a level of detail fit for the configured face size: triangles of about
    two pixels on the largest faces (a finer mesh only costs time; the landmarks are exact)."""
    px_per_mm = config.face_height[1] * config.size * config.supersample / _MODEL_FACE_HEIGHT_MM
    coarse = float(np.clip(round(3.0 / px_per_mm * 5) / 5, 2.6, 5.0))
    return load_face_model(coarse_mm=coarse, fine_mm=round(0.42 * coarse, 2))


def render_random_sample(seed, config: RenderConfig = RenderConfig(), identity: int | None = None,
                         yaw: float | None = None, namespace: int = 0, model: FaceModel | None = None,
                         source: str = "synthetic", return_mask: bool = False) -> dict:
    """One sample as a pure function of ``seed`` (an int or a sequence of ints, e.g. (seed, index)).

    ``identity`` None draws one from the seed. ``yaw`` fixes the yaw.
    """
    model = model or face_model_for(config)
    rng = np.random.default_rng(seed)
    if identity is None:
        identity = int(rng.integers(2**31))
    person = sample_identity(model, identity, config, namespace)
    scene = sample_scene(model, rng, config, yaw=yaw)
    return render_sample(model, person, scene, config, source=source, return_mask=return_mask)


def benchmark_render(n: int = 50, size: int = 256, seed: int = 0) -> float:
    """Images per second of :func:`render_random_sample` at ``size`` px in this process (one core).

    The face model is loaded (and cached) before timing starts.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    config = RenderConfig(size=size)
    model = face_model_for(config)
    background_images()                                     # decode the pictures once
    render_random_sample((seed, n), config, model=model)   # warm-up (not timed)
    start = time.perf_counter()
    for i in range(n):
        render_random_sample((seed, i), config, model=model)
    return n / (time.perf_counter() - start)
