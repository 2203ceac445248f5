"""Landmark predictors: the interface every predictor of the project implements, and dlib's peer.

Later chapters put our models beside an independent, widely used detector on real photographs
(:func:`fa_lib.evaluate.evaluate_on_real_faces`). The peer is dlib's HOG face detector followed by
its 68-point ensemble-of-regression-trees shape predictor (Kazemi & Sullivan, CVPR 2014; trained on
iBUG 300-W; the thesis compares with ERT in Table 3.4). Its model file is licensed for research use
only and is not shipped with this project.

Install (prebuilt wheels; building ``dlib`` from source takes ~10 min)::

    pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0

or use Debian's ``libdlib-data`` for the model file (``/usr/share/dlib/``).
"""
from __future__ import annotations

import abc
import importlib.util
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

DLIB_INSTALL_HINT = "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0"
DLIB_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
DLIB_MODEL_ENV = "FA_LIB_DLIB_MODEL"


class Prediction(NamedTuple):
    """Landmarks of every face found in (or given for) one image.

    ``landmarks``: list of float32 (68, 2) arrays in image pixels (project convention: the centre
    of pixel (row i, col j) is (j + 0.5, i + 0.5)); ``boxes``: float32 (K, 4) [x1, y1, x2, y2], the
    box each face was predicted from, in the same order.
    """

    landmarks: list[np.ndarray]
    boxes: np.ndarray


def as_uint8_image(image) -> np.ndarray:
    """Validate an image for a predictor: uint8 (H, W) grey or (H, W, 3) RGB, C-contiguous."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) grey or (H, W, 3) RGB, got shape {array.shape}")
    return np.ascontiguousarray(array)


def as_boxes(boxes) -> np.ndarray:
    """(K, 4) float32 [x1, y1, x2, y2] with x2 > x1, y2 > y1 (a single (4,) box is accepted)."""
    array = np.asarray(boxes, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (K, 4) [x1, y1, x2, y2], got shape {array.shape}")
    if len(array) and ((array[:, 2] <= array[:, 0]).any() or (array[:, 3] <= array[:, 1]).any()):
        raise ValueError("every box must have x2 > x1 and y2 > y1")
    return array


class LandmarkPredictor(abc.ABC):
    """What every 68-point landmark predictor of the project offers (dlib peer, FaceAligner, ...).

    ``predict(image)`` finds the faces itself; ``predict(image, boxes)`` predicts one face per given
    box (e.g. the ground-truth box, as the thesis evaluates, section 4.1.3).
    """

    #: short human-readable name used in result tables
    name: str = "predictor"

    @abc.abstractmethod
    def detect(self, image) -> np.ndarray:
        """Face boxes (K, 4) float32 [x1, y1, x2, y2] found in ``image`` (K may be 0)."""

    @abc.abstractmethod
    def predict_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        """One (68, 2) float32 landmark array per box (validated uint8 image, (K, 4) boxes)."""

    def predict(self, image, boxes: Sequence | np.ndarray | None = None) -> Prediction:
        """Landmarks of the faces in ``image``: detected when ``boxes`` is None, else one per box."""
        image = as_uint8_image(image)
        boxes = self.detect(image) if boxes is None else boxes
        boxes = as_boxes(boxes)
        landmarks = self.predict_in_boxes(image, boxes) if len(boxes) else []
        return Prediction([np.asarray(p, dtype=np.float32) for p in landmarks], boxes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def find_dlib_model(model_path: str | os.PathLike | None = None) -> Path:
    """Locate ``shape_predictor_68_face_landmarks.dat``.

    Order: the explicit ``model_path``; ``$FA_LIB_DLIB_MODEL``; the ``face_recognition_models``
    package (found without importing it: its ``__init__`` needs setuptools' pkg_resources); Debian
    ``libdlib-data`` (``/usr/share/dlib``). Raises ``FileNotFoundError`` saying how to install it.
    """
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"dlib shape-predictor model not found: {path}")
        return path
    candidates = []
    if os.environ.get(DLIB_MODEL_ENV):
        candidates.append(Path(os.environ[DLIB_MODEL_ENV]))
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "models"
                          / DLIB_MODEL_NAME)
    candidates.append(Path("/usr/share/dlib") / DLIB_MODEL_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"dlib's 68-point model ({DLIB_MODEL_NAME}) was not found (looked in "
                            f"{', '.join(str(c) for c in candidates)}); install it with "
                            f"'{DLIB_INSTALL_HINT}' or 'apt-get install libdlib-data', or set "
                            f"${DLIB_MODEL_ENV}")


def _import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise ImportError(f"the dlib peer needs dlib: {DLIB_INSTALL_HINT}") from err
    return dlib


class DlibPeer(LandmarkPredictor):
    """dlib's HOG face detector + 68-point ERT shape predictor.

    ERT is fed the HOG detector's box (the box it was trained with), never the tight landmark box,
    unless boxes are passed explicitly. dlib rectangles and parts are integer pixel indices
    (inclusive corners); boxes become [left, top, right + 1, bottom + 1] pixel edges and parts
    pixel centres (+0.5). ``upsample`` is the number of times the HOG detector doubles the image
    (1 finds faces down to about 40 px).
    """

    name = "dlib HOG + ERT"

    def __init__(self, model_path: str | os.PathLike | None = None, upsample: int = 1):
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        dlib = _import_dlib()
        self.model_path = find_dlib_model(model_path)
        self.upsample = int(upsample)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape_predictor = dlib.shape_predictor(str(self.model_path))

    def detect(self, image) -> np.ndarray:
        image = as_uint8_image(image)
        rects = self._detector(image, self.upsample)
        return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects],
                        dtype=np.float32).reshape(-1, 4)

    def predict_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        out = []
        for x1, y1, x2, y2 in boxes:
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)),
                                        int(round(x2)) - 1, int(round(y2)) - 1)
            shape = self._shape_predictor(image, rect)
            if shape.num_parts != 68:
                raise ValueError(f"{self.model_path} predicts {shape.num_parts} points, not 68")
            out.append(np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()],
                                dtype=np.float32))
        return out
