"""Cached deterministic synthetic datasets (fa_lib.data.synthetic, fa_lib.data.lowres)."""
import json

import numpy as np
import pytest

from fa_lib.data import lowres, synthetic


@pytest.fixture(autouse=True)
def _needs_face_model():
    from fa_lib.data.face_model import locate_bfm_files
    try:
        locate_bfm_files()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = synthetic.train_300wlp_standin("smoke", count=5, root=tmp_path / "a", workers=1)
    b = synthetic.train_300wlp_standin("smoke", count=5, root=tmp_path / "b", workers=2)
    c = synthetic.train_300wlp_standin("smoke", count=5, seed=1, root=tmp_path / "c", workers=1)
    for name in ("image", "landmarks_2d", "landmarks_3d", "visibility", "box", "pose", "identity"):
        assert (a.folder / f"{name}.npy").read_bytes() == (b.folder / f"{name}.npy").read_bytes()
    assert (a.folder / "image.npy").read_bytes() != (c.folder / "image.npy").read_bytes()
    manifest = json.loads((a.folder / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["count"] == 5
    assert manifest["generator_version"] == synthetic.GENERATOR_VERSION
    assert manifest["image_shape"] == [128, 128, 3]
    # people appear in several poses (views_per_identity=4)
    assert list(a.array("identity")) == [0, 0, 0, 0, 1]
    s = a[4]
    assert s["source"] == "synthetic-300wlp-standin" and s["image"].shape == (128, 128, 3)
    # a second call reuses the cache (same folder, nothing re-rendered)
    assert synthetic.train_300wlp_standin("smoke", count=5, root=tmp_path / "a").folder == a.folder


def test_yaw_balanced_is_balanced(tmp_path):
    ds = synthetic.test_yaw_balanced("smoke", count=7, root=tmp_path)
    assert len(ds) == 6
    bins = synthetic.yaw_bin_of(ds.array("pose"))
    assert np.bincount(bins, minlength=3).tolist() == [2, 2, 2]
    assert (np.abs(ds.array("pose")[:, 0]) <= 90).all()
    # test people are not training people
    assert ds.manifest["spec"]["namespace"] != 1


def test_pifa_standin_is_grey_with_34_points(tmp_path):
    ds = synthetic.pifa_standin("smoke", count=3, root=tmp_path)
    s = ds[0]
    assert s["image"].ndim == 2 and s["image"].dtype == np.uint8
    assert s["landmarks_2d"].shape == (34, 2) and s["visibility"].shape == (34,)
    full = synthetic.SyntheticFaces(ds.folder)[0]
    from fa_lib.landmarks import landmarks_68_to_pifa34
    np.testing.assert_allclose(s["landmarks_2d"], landmarks_68_to_pifa34(full["landmarks_3d"])[:, :2])


def test_lowres_pairs(tmp_path):
    clean = lowres.lowres_pairs("smoke", "test", count=3, root=tmp_path)
    s = clean[1]
    assert s["image"].shape == (64, 64, 3) and s["image_lr"].shape == (16, 16, 3)
    height = s["landmarks_2d"][:, 1].max() - s["landmarks_2d"][:, 1].min()
    assert 35 < height < 60                                  # about 50 px faces (thesis 6.1)
    np.testing.assert_array_equal(s["image_lr"], lowres.downsample_bilinear(s["image"]))
    degraded = lowres.lowres_pairs("smoke", "test", count=3, root=tmp_path, degraded=True,
                                   degradation=lowres.Degradation(1.0, (7,), 1.0, (20, 20), 1.0))
    d1, d2 = degraded[1], degraded[1]
    np.testing.assert_array_equal(d1["image_lr"], d2["image_lr"])      # deterministic per index
    np.testing.assert_array_equal(d1["image"], s["image"])             # the target stays clean
    assert np.abs(d1["image_lr"].astype(int) - s["image_lr"]).mean() > 1
    with pytest.raises(ValueError, match="split"):
        lowres.lowres_pairs("smoke", "val")
    with pytest.raises(ValueError, match="odd"):
        lowres.Degradation(blur_kernels=(4,))


def test_missing_folder_and_bad_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="no synthetic set"):
        synthetic.SyntheticFaces(tmp_path)
    ds = synthetic.test_yaw_balanced("smoke", count=3, root=tmp_path)
    with pytest.raises(IndexError):
        ds[3]
