"""Readers of the official dataset formats, on fixtures written in those formats (tests/fixtures).

The fixtures come from tests/fixtures/make_fixtures.py; the expected values below are computed by
hand from the numbers it writes (TEMPLATE_68 point k = (10.25 + k % 17, 12.75 + 5 * (k // 17)) in
the file's own, 1-based, convention).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fa_lib.data import formats
from fa_lib.data.real import RealFaceDataset, make_dataset

FIX = Path(__file__).resolve().parent / "fixtures"


def _load_fixture_maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_fixtures = _load_fixture_maker()
TEMPLATE_68 = np.array([[10.25 + k % 17, 12.75 + 5 * (k // 17)] for k in range(68)])
SAMPLE_KEYS = {"image", "landmarks_2d", "landmarks_3d", "visibility", "box", "pose", "identity",
               "source"}


# ------------------------------------------------------------------------------------ .pts
def test_read_pts_converts_one_based_points():
    points = formats.read_pts(FIX / "300w" / "01_Indoor" / "indoor_001.pts", n_points=68)
    assert points.dtype == np.float32 and points.shape == (68, 2)
    assert points[0].tolist() == [9.75, 12.25]          # 10.25 - 0.5, 12.75 - 0.5
    np.testing.assert_allclose(points, TEMPLATE_68 - 0.5, atol=1e-5)


def test_read_pts_wrong_count_names_file():
    with pytest.raises(ValueError, match="wrong_count.pts.*n_points=69"):
        formats.read_pts(FIX / "bad" / "wrong_count.pts")
    with pytest.raises(ValueError, match="profile_001.pts: expected 68 points, file has 39"):
        formats.read_pts(FIX / "300w" / "02_Outdoor" / "profile_001.pts", n_points=68)


def test_read_pts_truncated_and_missing():
    with pytest.raises(ValueError, match="truncated.pts: truncated"):
        formats.read_pts(FIX / "bad" / "truncated.pts")
    with pytest.raises(FileNotFoundError, match="nowhere.pts"):
        formats.read_pts(FIX / "nowhere.pts")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1, max_size=80))
def test_write_then_read_pts_round_trip(tmp_path_factory, pts):
    path = tmp_path_factory.mktemp("pts") / "p.pts"
    points = np.array(pts, dtype=np.float64)
    formats.write_pts(path, points)
    np.testing.assert_allclose(formats.read_pts(path), points, atol=2e-3)


def test_write_pts_is_one_based_text(tmp_path):
    formats.write_pts(tmp_path / "a.pts", [[0.5, 1.5]])
    assert (tmp_path / "a.pts").read_text().splitlines() == [
        "version: 1", "n_points:  1", "{", "1.000000 2.000000", "}"]


# --------------------------------------------------------------------------- 300-W-LP / AFLW
def test_read_300w_lp_mat():
    ann = formats.read_3ddfa_mat(FIX / "300W_LP" / "AFW" / "AFW_1_0.mat")
    np.testing.assert_allclose(ann.landmarks_2d, TEMPLATE_68 - 0.5, atol=1e-5)
    assert ann.landmarks_3d is None and ann.aflw_21 is None
    # Pose_Para [pitch, yaw, roll] = [0.1, -0.5, 0.2] rad -> [yaw, pitch, roll] degrees
    np.testing.assert_allclose(ann.pose, np.degrees([-0.5, 0.1, 0.2]), rtol=1e-6)
    assert ann.shape_para.shape == (199,) and ann.shape_para[10] == pytest.approx(0.01)
    assert ann.exp_para.shape == (29,)
    assert ann.roi.tolist() == [5.0, 8.0, 30.0, 40.0]


def test_read_300w_lp_landmarks_mat():
    p2, p3 = formats.read_300w_lp_landmarks_mat(
        FIX / "300W_LP" / "landmarks" / "AFW" / "AFW_1_0_pts.mat")
    np.testing.assert_allclose(p2, TEMPLATE_68 - 0.5, atol=1e-5)
    np.testing.assert_allclose(p3[:, 0], TEMPLATE_68[:, 0] + 1.5, atol=1e-5)


def test_read_aflw2000_3d_mat_depth_convention():
    ann = formats.read_3ddfa_mat(FIX / "AFLW2000" / "image00002.mat")
    assert ann.landmarks_2d is None and ann.landmarks_3d.shape == (68, 3)
    np.testing.assert_allclose(ann.landmarks_3d[:, :2], TEMPLATE_68 - 0.5, atol=1e-5)
    # stored z = linspace(-10, 30): larger = nearer already; only the mean (10) is removed
    np.testing.assert_allclose(ann.landmarks_3d[:, 2], np.linspace(-20, 20, 68), atol=1e-4)
    assert ann.pose[0] == pytest.approx(45.0)
    assert np.isnan(ann.aflw_21[3]).all() and not np.isnan(ann.aflw_21[2]).any()


def test_mat_errors_name_the_file(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "short.mat", {"pt2d": np.zeros((2, 60)), "Pose_Para": np.zeros((1, 7)),
                                     "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    with pytest.raises(ValueError, match=r"short.mat: pt2d has shape \(2, 60\)"):
        formats.read_3ddfa_mat(tmp_path / "short.mat")
    savemat(tmp_path / "nopose.mat", {"pt2d": np.zeros((2, 68))})
    with pytest.raises(ValueError, match="nopose.mat: no field 'Pose_Para'"):
        formats.read_3ddfa_mat(tmp_path / "nopose.mat")
    (tmp_path / "cut.mat").write_bytes((FIX / "AFLW2000" / "image00002.mat").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.mat"):
        formats.read_3ddfa_mat(tmp_path / "cut.mat")


# ---------------------------------------------------------------------------------- LS3D-W
def test_read_t7_tensor_and_ls3dw_landmarks():
    raw = formats.read_t7(FIX / "LS3D-W" / "Menpo-3D" / "face_1.t7")
    np.testing.assert_allclose(raw, TEMPLATE_68, atol=1e-5)
    points = formats.read_ls3dw_landmarks(FIX / "LS3D-W" / "Menpo-3D" / "face_1.t7")
    np.testing.assert_allclose(points, TEMPLATE_68 - 0.5, atol=1e-5)


def test_read_t7_non_contiguous_tensor(tmp_path):
    # a transposed tensor (strides 1, 68) must come back as the logical 68x2 matrix
    path = tmp_path / "t.t7"
    path.write_bytes(make_fixtures.t7_float_tensor(TEMPLATE_68, column_major=True))
    np.testing.assert_allclose(formats.read_t7(path), TEMPLATE_68, atol=1e-5)
    path.write_bytes(make_fixtures.t7_float_tensor(TEMPLATE_68.T))  # a 2x68 tensor
    np.testing.assert_allclose(formats.read_ls3dw_landmarks(path), TEMPLATE_68 - 0.5, atol=1e-5)


def test_read_t7_truncated_names_file():
    with pytest.raises(ValueError, match="truncated.t7: truncated Torch7 file"):
        formats.read_t7(FIX / "bad" / "truncated.t7")


def test_read_ls3dw_mat_variant(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "a.mat", {"pt3d": np.vstack([TEMPLATE_68.T, np.zeros(68)])})
    np.testing.assert_allclose(formats.read_ls3dw_landmarks(tmp_path / "a.mat"),
                               TEMPLATE_68 - 0.5, atol=1e-5)
    savemat(tmp_path / "b.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match="b.mat: no field 'pt3d'"):
        formats.read_ls3dw_landmarks(tmp_path / "b.mat")


def test_read_aflw_pifa_mat():
    pts, vis = formats.read_aflw_pifa_mat(FIX / "aflw_pifa" / "face_1.mat", points_key="pts",
                                          visibility_key="vis")
    assert pts.shape == (34, 2) and vis.dtype == bool
    np.testing.assert_allclose(pts, TEMPLATE_68[:34] - 0.5, atol=1e-5)
    assert (~vis).nonzero()[0].tolist() == [0, 5]
    with pytest.raises(ValueError, match="face_1.mat: no field 'points'"):
        formats.read_aflw_pifa_mat(FIX / "aflw_pifa" / "face_1.mat", points_key="points",
                                   visibility_key="vis")


# ---------------------------------------------------------------------------------- CelebA
def test_read_celeba_files():
    boxes = formats.read_celeba_bboxes(FIX / "CelebA" / "Anno" / "list_bbox_celeba.txt")
    assert boxes.iloc[0].tolist() == ["000001.jpg", 95.0, 71.0, 321.0, 384.0]
    ids, points = formats.read_celeba_landmarks(FIX / "CelebA" / "Anno" /
                                                "list_landmarks_celeba.txt")
    assert ids == ["000001.jpg", "000002.jpg", "000003.jpg"] and points.shape == (3, 5, 2)
    assert points[0, 0].tolist() == [165.5, 184.5] and points[2, 4].tolist() == [251.5, 140.5]
    assert formats.read_celeba_identities(FIX / "CelebA" / "Anno" / "identity_CelebA.txt") == {
        "000001.jpg": 2880, "000002.jpg": 2937, "000003.jpg": 8692}
    assert formats.read_celeba_partition(FIX / "CelebA" / "Eval" / "list_eval_partition.txt")[
        "000003.jpg"] == 2


def test_celeba_truncated_names_file():
    with pytest.raises(ValueError, match="list_bbox_celeba_truncated.txt: header says 3 images"):
        formats.read_celeba_bboxes(FIX / "bad" / "list_bbox_celeba_truncated.txt")


# -------------------------------------------------------------------------------- WiderFace
def test_read_wider_face_boxes_and_zero_count_quirk():
    images = formats.read_wider_face_boxes(
        FIX / "widerface" / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert [im.file for im in images] == ["0--Parade/0_Parade_marchingband_1_465.jpg",
                                          "0--Parade/0_Parade_Parade_0_452.jpg",
                                          "1--Handshaking/1_Handshaking_Handshaking_1_35.jpg"]
    first, empty, last = images
    assert first.boxes.tolist() == [[3, 4, 13, 16], [20, 5, 26, 12]]
    assert first.attributes["blur"].tolist() == [2, 0]
    assert first.attributes["invalid"].tolist() == [0, 1]      # readme order: ... invalid, occl.
    assert first.attributes["occlusion"].tolist() == [1, 0]
    assert empty.boxes.shape == (0, 4)                           # the all-zero line is no face
    assert last.boxes.tolist() == [[1, 2, 31, 35]] and last.attributes["pose"].tolist() == [1]


def test_wider_truncated_names_file():
    with pytest.raises(ValueError, match="wider_truncated.txt: truncated file.*3 boxes, only 1"):
        formats.read_wider_face_boxes(FIX / "bad" / "wider_truncated.txt")


# ------------------------------------------------------------------------------ Oxford pets
def test_read_pet_files():
    listing = formats.read_pet_list(FIX / "oxford_pets" / "annotations" / "list.txt")
    assert listing["image"].tolist() == ["Abyssinian_100", "american_bulldog_10", "Bengal_1"]
    assert listing["species_name"].tolist() == ["cat", "dog", "cat"]
    species, box = formats.read_pet_head_box(
        FIX / "oxford_pets" / "annotations" / "xmls" / "Abyssinian_100.xml")
    assert species == "cat" and box.tolist() == [2.0, 4.0, 20.0, 30.0]
    trimap = formats.read_pet_trimap(
        FIX / "oxford_pets" / "annotations" / "trimaps" / "Abyssinian_100.png")
    assert trimap.shape == (48, 40) and set(np.unique(trimap)) == {1, 2, 3}


def test_pet_errors(tmp_path):
    (tmp_path / "list.txt").write_text("Abyssinian_1 1 3 1\n")
    with pytest.raises(ValueError, match="list.txt: species must be 1"):
        formats.read_pet_list(tmp_path / "list.txt")
    (tmp_path / "a.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(ValueError, match="a.xml: malformed XML"):
        formats.read_pet_head_box(tmp_path / "a.xml")


# ---------------------------------------------------------------------------------- images
def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        formats.load_image(tmp_path / "missing.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        formats.load_image(tmp_path / "broken.jpg")
    grey = formats.load_image(FIX / "aflw_pifa" / "face_1.jpg", grey=True)
    assert grey.ndim == 2 and grey.dtype == np.uint8


# ---------------------------------------------------------------------- RealFaceDataset
def _check_sample(sample):
    assert set(sample) == SAMPLE_KEYS
    assert sample["image"].dtype == np.uint8
    assert sample["box"].dtype == np.float32 and sample["box"].shape == (4,)
    assert sample["pose"].shape == (3,)
    assert isinstance(sample["identity"], int) and isinstance(sample["source"], str)


def test_dataset_pts_folder_skips_profiles_and_builds_box():
    ds = RealFaceDataset("pts_folder", FIX / "300w")
    assert len(ds) == 2                                      # the 39-point profile is skipped
    sample = ds[0]
    _check_sample(sample)
    assert sample["image"].shape == (48, 40, 3)
    assert sample["box"].tolist() == pytest.approx([9.75, 12.25, 25.75, 27.25])  # k//17 <= 3
    assert len(RealFaceDataset("pts_folder", FIX / "300w", "01_Indoor")) == 1


def test_dataset_missing_image_names_annotation(tmp_path):
    ds = RealFaceDataset("pts_folder", FIX / "bad" / "no_image")
    with pytest.raises(FileNotFoundError, match="no image found for annotation .*face"):
        ds[0]


def test_dataset_300w_lp_and_aflw2000():
    lp = RealFaceDataset("300w_lp", FIX, "train")
    sample = lp[0]
    _check_sample(sample)
    assert sample["landmarks_2d"].shape == (68, 2)
    assert np.isnan(sample["landmarks_3d"][:, 2]).all()
    assert sample["landmarks_3d"][0, 0] == pytest.approx(11.75)
    assert sample["pose"][0] == pytest.approx(np.degrees(-0.5))
    aflw = RealFaceDataset("aflw2000_3d", FIX / "AFLW2000", "test")
    s = aflw[0]
    _check_sample(s)
    assert s["landmarks_2d"] is None and s["landmarks_3d"].shape == (68, 3)


def test_dataset_ls3dw_and_pifa():
    s = RealFaceDataset("ls3dw", FIX, "Menpo-3D")[0]
    _check_sample(s)
    np.testing.assert_allclose(s["landmarks_3d"][:, :2], TEMPLATE_68 - 0.5, atol=1e-5)
    p = RealFaceDataset("aflw_pifa", FIX / "aflw_pifa", points_key="pts", visibility_key="vis")[0]
    assert p["image"].ndim == 2 and p["visibility"].sum() == 32
    with pytest.raises(ValueError, match="points_key"):
        RealFaceDataset("aflw_pifa", FIX / "aflw_pifa")


def test_dataset_300vw_frames_and_video(tmp_path):
    ds = RealFaceDataset("300vw", FIX / "300VW", "all")
    assert len(ds) == 2 and ds[1]["source"] == "300vw:001/000002"
    # the official layout has vid.avi instead of extracted frames
    import cv2

    video_dir = tmp_path / "002"
    shutil.copytree(FIX / "300VW" / "001" / "annot", video_dir / "annot")
    writer = cv2.VideoWriter(str(video_dir / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (40, 48))
    for value in (50, 200):
        writer.write(np.full((48, 40, 3), value, dtype=np.uint8))
    writer.release()
    video = RealFaceDataset("300vw", tmp_path, videos=[2])
    assert abs(int(video[0]["image"].mean()) - 50) < 8 and abs(int(video[1]["image"].mean()) - 200) < 8


# ------------------------------------------------------------------------------------ AFLW
def test_read_aflw_sqlite():
    """AFLW's database: faces in face_id order with their image, FaceRect as a box, the 21 points in
    feature_id order (NaN where not annotated) and FacePose in degrees (NaN where absent)."""
    from fa_lib.data.formats import AFLW_POINT_NAMES, read_aflw_sqlite

    AFLW_FRONTAL_21 = make_fixtures.AFLW_FRONTAL_21
    faces = read_aflw_sqlite(FIX / "aflw" / "data" / "aflw.sqlite")
    assert [f.face_id for f in faces] == [39341, 39342, 39343] and len(AFLW_POINT_NAMES) == 21
    assert [f.file for f in faces] == ["0/image00002.jpg", "2/image00013.jpg", "2/image00013.jpg"]
    assert faces[0].box.tolist() == [7, 9, 33, 36]
    np.testing.assert_allclose(faces[0].points, AFLW_FRONTAL_21)
    missing = ~np.isfinite(faces[1].points).all(1)
    assert np.flatnonzero(missing).tolist() == [0, 6, 7, 12, 17]
    np.testing.assert_allclose(faces[1].points[~missing], AFLW_FRONTAL_21[~missing] + [4, 2])
    assert np.isfinite(faces[2].points).all(1).sum() == 3
    np.testing.assert_allclose(faces[0].pose, np.degrees([0.2, -0.1, 0.05]), rtol=1e-6)  # yaw, pitch, roll
    assert np.isnan(faces[2].pose).all()
    dataset = RealFaceDataset("aflw", FIX, "all")
    sample = dataset[1]
    assert sample["source"] == "aflw:39342" and sample["image"].shape == (48, 40, 3)
    assert sample["visibility"].tolist() == (~missing).tolist() and sample["landmarks_2d"].shape == (21, 2)
    assert len(RealFaceDataset("aflw", FIX / "aflw")) == 3  # the archive's folder itself
    with pytest.raises(ValueError, match="aflw split must be 'all'"):
        RealFaceDataset("aflw", FIX, "train")


def test_aflw_errors_name_the_file(tmp_path):
    from fa_lib.data.formats import read_aflw_sqlite

    with pytest.raises(FileNotFoundError, match="aflw.sqlite not found"):
        RealFaceDataset("aflw", tmp_path, "all")
    bad = tmp_path / "aflw" / "data" / "aflw.sqlite"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a database")
    with pytest.raises(ValueError, match="aflw.sqlite"):
        read_aflw_sqlite(bad)
    bad.unlink()
    import sqlite3

    connection = sqlite3.connect(bad)
    connection.execute("CREATE TABLE Faces (face_id INTEGER, file_id TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(ValueError, match="not AFLW's database layout"):
        RealFaceDataset("aflw", tmp_path, "all")


def test_dataset_celeba_widerface_pets():
    celeba = RealFaceDataset("celeba", FIX / "CelebA", "train")
    assert len(celeba) == 2 and celeba[1]["identity"] == 2937
    assert celeba[0]["box"].tolist() == [95, 71, 321, 384]
    # the 5 points of list_landmarks_celeba.txt (pixel indices -> centres)
    assert celeba[0]["landmarks_2d"].tolist()[:2] == [[165.5, 184.5], [244.5, 176.5]]
    assert len(RealFaceDataset("celeba", FIX, "test")) == 1
    wider = RealFaceDataset("widerface", FIX / "widerface", "val")
    assert len(wider) == 2                                   # one invalid face, one empty image
    assert wider[1]["box"].tolist() == [1, 2, 31, 35]
    assert len(RealFaceDataset("widerface", FIX / "widerface", "val", max_face_size=20)) == 1
    pets = RealFaceDataset("oxford_pets", FIX / "oxford_pets", "trainval")
    assert [s["source"] for s in pets] == ["oxford_pets:cat:Abyssinian_100",
                                           "oxford_pets:dog:american_bulldog_10"]


def test_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown real dataset kind 'nope'"):
        RealFaceDataset("nope", FIX)
    with pytest.raises(FileNotFoundError, match="data_root does not exist"):
        RealFaceDataset("pts_folder", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no ls3dw annotations found"):
        RealFaceDataset("ls3dw", tmp_path)
    with pytest.raises(FileNotFoundError, match="no oxford_pets annotations found"):
        RealFaceDataset("oxford_pets", FIX / "oxford_pets", "test")  # its image has no xml
    with pytest.raises(IndexError):
        RealFaceDataset("pts_folder", FIX / "300w")[5]


def test_make_dataset_real_and_errors():
    ds = make_dataset("300w_lp", "smoke", data_root=FIX)
    assert isinstance(ds, RealFaceDataset) and len(ds) == 1
    assert len(make_dataset("menpo", "smoke", data_root=FIX / "300w")) == 2
    with pytest.raises(ValueError, match="no synthetic stand-in"):
        make_dataset("celeba", "smoke")
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("imagenet", "smoke")
    with pytest.raises(ValueError, match="'lowres_pairs' has no real reader"):
        make_dataset("lowres_pairs", "smoke", data_root=FIX)


def test_make_dataset_without_data_uses_the_synthetic_builder(monkeypatch):
    """data_root=None -> fa_lib.data.synthetic.<builder>(profile, **options)."""
    import types

    import fa_lib.data.real

    calls = []
    fake = types.ModuleType("fa_lib.data.synthetic")
    fake.train_300wlp_standin = lambda profile, **kw: calls.append((profile.name, kw)) or "train"
    fake.test_yaw_balanced = lambda profile, **kw: "balanced"
    monkeypatch.setattr(fa_lib.data.real, "synthetic", fake)
    assert make_dataset("300w_lp", "smoke", seed=3) == "train"
    assert calls == [("smoke", {"seed": 3})]
    assert make_dataset("ls3dw_balanced", "quick") == "balanced"
    with pytest.raises(ValueError, match="has no builder 'pifa_standin'"):
        make_dataset("aflw_pifa", "smoke")


def test_read_t7_corrupt_sizes_are_refused(tmp_path):
    data = bytearray(make_fixtures.t7_float_tensor(TEMPLATE_68))
    # the first size (a long after type, index, "V 1", class name and nDimension) -> 1000 rows
    at = 4 + 4 + (4 + 3) + (4 + len("torch.FloatTensor")) + 4
    data[at:at + 8] = (1000).to_bytes(8, "little")
    (tmp_path / "c.t7").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="c.t7: corrupt Torch7 tensor"):
        formats.read_t7(tmp_path / "c.t7")
