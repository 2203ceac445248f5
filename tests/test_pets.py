"""The 22-point Oxford-IIIT-Pet face reader (fa_lib.data.pets) on the tests/fixtures/oxford_pets tree."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fa_lib.data import formats
from fa_lib.data.pets import PET_POINTS, PetLandmarks, pet_landmark_dataset

FIX = Path(__file__).resolve().parent / "fixtures"
PETS = FIX / "oxford_pets"


def _copy(tmp_path: Path, *, keep_pts: bool = True) -> Path:
    """A writable copy of the fixture tree, with or without its .pts files."""
    ignore = None if keep_pts else shutil.ignore_patterns("*.pts")
    return Path(shutil.copytree(PETS, tmp_path / "pets", ignore=ignore))


def test_trainval_samples_points_and_species():
    ds = pet_landmark_dataset(PETS)
    assert isinstance(ds, PetLandmarks) and PET_POINTS == 22
    assert ds.name == "oxford-pets-22pt" and ds.root == PETS and ds.split == "trainval"
    assert len(ds) == 2
    listing = formats.read_pet_list(PETS / "annotations" / "trainval.txt")
    expected = dict(zip(listing["image"], listing["species_name"]))
    assert list(ds.species) == ["cat", "dog"]
    for k in range(len(ds)):
        s = ds[k]
        name = s["source"].split(":")[-1]
        assert s["source"] == f"oxford_pets:{expected[name]}:{name}"
        assert s["species"] == expected[name] == ds.species[k]
        assert s["image"].shape == (48, 40, 3) and s["image"].dtype == np.uint8
        pts = s["landmarks_2d"]
        assert pts.shape == (22, 2) and pts.dtype == np.float32
        assert s["visibility"].shape == (22,) and s["visibility"].all()
        _, head_box = formats.read_pet_head_box(PETS / "annotations" / "xmls" / f"{name}.xml")
        np.testing.assert_array_equal(s["box"], head_box)
        x1, y1, x2, y2 = head_box
        assert (pts[:, 0] >= x1).all() and (pts[:, 0] <= x2).all()
        assert (pts[:, 1] >= y1).all() and (pts[:, 1] <= y2).all()
    # the fixture's first point: 15 % into the Abyssinian head box [2, 4, 20, 30] (pixel edges)
    np.testing.assert_allclose(ds[0]["landmarks_2d"][0], [2 + 0.15 * 18, 4 + 0.15 * 26], atol=1e-5)
    with pytest.raises(IndexError):
        ds[2]


def test_test_split_and_missing_pts_skipped(tmp_path):
    # the fixture's only test image (Bengal_1) has neither a head box nor a .pts
    with pytest.raises(FileNotFoundError, match="no 22-point .pts annotations"):
        pet_landmark_dataset(PETS, "test")
    root = _copy(tmp_path)
    (root / "images" / "american_bulldog_10.pts").unlink()
    ds = pet_landmark_dataset(root)
    assert len(ds) == 1 and list(ds.species) == ["cat"]
    assert ds[0]["source"] == "oxford_pets:cat:Abyssinian_100"
    # with a head box and points, the test image is read too
    shutil.copy(root / "annotations" / "xmls" / "Abyssinian_100.xml",
                root / "annotations" / "xmls" / "Bengal_1.xml")
    shutil.copy(root / "images" / "Abyssinian_100.pts", root / "images" / "Bengal_1.pts")
    test = pet_landmark_dataset(root, "test")
    assert len(test) == 1 and test.split == "test" and list(test.species) == ["cat"]
    assert test[0]["landmarks_2d"].shape == (22, 2)


def test_pts_without_head_box_is_skipped(tmp_path):
    root = _copy(tmp_path)
    shutil.copy(root / "images" / "Abyssinian_100.pts", root / "images" / "Bengal_1.pts")
    with pytest.raises(FileNotFoundError, match="has a head box xml"):
        pet_landmark_dataset(root, "test")


def test_no_pts_at_all_is_a_helpful_error(tmp_path):
    root = _copy(tmp_path, keep_pts=False)
    with pytest.raises(FileNotFoundError) as err:
        pet_landmark_dataset(root)
    message = str(err.value)
    assert str(root / "images") in message
    assert "not public" in message and "fa_lib.data.pets" in message


def test_wrong_point_count_names_the_file(tmp_path):
    root = _copy(tmp_path)
    bad = root / "images" / "american_bulldog_10.pts"
    points = formats.read_pts(bad)[:21]
    formats.write_pts(bad, points)
    ds = pet_landmark_dataset(root)  # indexing does not read the points
    ds[0]
    with pytest.raises(ValueError, match="american_bulldog_10.pts.*expected 22 points"):
        ds[1]


def test_bad_split_and_missing_tree(tmp_path):
    with pytest.raises(ValueError, match="trainval, test"):
        pet_landmark_dataset(PETS, "val")
    with pytest.raises(FileNotFoundError, match="data_root does not exist"):
        pet_landmark_dataset(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no Oxford-IIIT-Pet tree"):
        pet_landmark_dataset(tmp_path)


def test_nested_oxford_pets_folder(tmp_path):
    shutil.copytree(PETS, tmp_path / "oxford_pets")
    ds = pet_landmark_dataset(tmp_path)
    assert ds.root == tmp_path / "oxford_pets" and len(ds) == 2


def test_cale_inputs_on_a_pet_sample():
    from fa_lib.data.pipeline import CaleInputs

    item = CaleInputs(32, channels=3)(pet_landmark_dataset(PETS)[1], rng=0)
    assert tuple(item["image"].shape) == (3, 32, 32)
    assert tuple(item["discs"].shape) == (22, 32, 32)
    assert tuple(item["heatmaps"].shape) == (22, 32, 32)
    assert float(item["discs"].sum()) > 0
