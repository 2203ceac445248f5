"""Chapter 3 at the smoke scale: CALE trained in its stages through the run cache, every builder of
the chapter, the pets path of Table 3.6 on the fixture tree, and CALE's rows in chapter 5."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fa_lib.data.pets import pet_landmark_dataset
from fa_lib.data.synthetic import pifa_standin
from fa_lib.experiments.ch3 import Chapter3
from fa_lib.experiments.ch3.figures import evidence_frames
from fa_lib.experiments.ch3.tables import mean_shape_predictions
from fa_lib.experiments.ch5 import Chapter5
from fa_lib.experiments.registry import builders, find
from fa_lib.models.cale import CaleAligner
from fa_lib.profiles import with_knobs

FIX = Path(__file__).resolve().parent / "fixtures"
PETS = FIX / "oxford_pets"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ch3_runs")


@pytest.fixture(scope="module")
def ch3(runs_root, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("FA_LIB_RESULTS", str(tmp_path_factory.mktemp("ch3_results")))
    return Chapter3("smoke", runs_root=runs_root, log=None)


def test_every_chapter_3_builder_is_registered():
    ids = {(b.kind, b.thesis_id) for b in builders(3)}
    assert {("table", "3.3"), ("table", "3.4"), ("table", "3.5"), ("table", "3.6"), ("figure", "3.4"),
            ("figure", "3.5"), ("figure", "3.6"), ("figure", "3.7"), ("figure", "3.learning_curves")} <= ids
    assert find("table 3.3").qualname.endswith("table_3_3")


def test_stages_are_trained_in_order_and_cached(ch3, runs_root):
    run = ch3.run(0)
    stages = [h["stage"] for h in run.history]
    assert stages == sorted(stages, key=["detector-32s", "detector-8s", "regressor", "joint"].index)
    assert set(stages) == {"detector-32s", "detector-8s", "regressor", "joint"}
    assert run.detector_steps == 2 and run.cale_steps == 2
    assert all("val_nme" in h for h in run.history)  # every stage validated on the held-out faces
    n = len(ch3.data.test)
    assert run.cale.points.shape == (n, 34, 2) and run.detector.points.shape == (n, 34, 2)
    assert ((run.cale.confidence >= 0) & (run.cale.confidence <= 1)).all()
    again = Chapter3("smoke", runs_root=runs_root, log=None).run(0)
    assert again.cached
    np.testing.assert_allclose(again.cale.points, run.cale.points, atol=1e-4)
    # the detector run is keyed on its own; CALE's key names the detector's
    assert ch3.cale_record(0)["detector"] != ch3.cale_record(1)["detector"]
    assert ch3.detector_record(0)["stages"] != ch3.cale_record(0)["stages"]


def test_cale_aligner_from_a_run_folder_gives_the_chapter_s_points(ch3):
    run = ch3.run(0)
    aligner = CaleAligner.from_run(run.folder)
    gt, _, boxes = ch3.ground_truth()
    for i in range(2):
        points, visibility = aligner(ch3.data.test[i]["image"], boxes[i])
        assert points.shape == (1, 34, 2) and visibility.shape == (1, 34)
        np.testing.assert_allclose(points[0], run.cale.points[i], atol=0.05)
        np.testing.assert_allclose(visibility[0], run.cale.confidence[i], atol=1e-4)
    empty = aligner(ch3.data.test[0]["image"], np.zeros((0, 4)))
    assert empty[0].shape == (0, 34, 2)
    with pytest.raises(FileNotFoundError, match="not a finished CALE run"):
        CaleAligner.from_run(run.folder.parent)


def test_tables_and_figures_of_the_chapter(ch3):
    t33 = ch3.build("table 3.3")
    cells = t33.table.dropna(subset=["reproduced"])
    assert {"CNN detector", "CALE"} <= set(cells["row"])
    assert {"21 points (vis.)", "21 points", "34 points (vis.)", "34 points"} <= set(cells["column"])
    assert len(t33.verdicts) == 5 and all(v.outcome for v in t33.verdicts)
    t35 = ch3.build("table 3.5")
    rows = set(t35.table.dropna(subset=["reproduced"])["row"])
    assert {"CALE", "Mean shape in the box", "3D-FAN, bundled, 68 -> 34 points"} <= rows
    assert t35.verdicts[0].outcome == "not measurable"  # PAWF & co. are the thesis's numbers
    assert any("contradict" in n for n in t35.notes)  # 4.97 (all points) > PAWF's 4.72 (visible)
    assert any("agree" in n for n in ch3.build("table 3.4").notes)
    t36 = ch3.build("table 3.6")  # no data_root: the thesis's values alone
    assert t36.table["reproduced"].isna().all() and t36.verdicts[0].outcome == "not measurable"
    assert "not public" in t36.verdicts[0].note
    for fig in ("figure 3.6", "figure 3.7"):
        f = ch3.build(fig)
        assert f.figure is None and f.verdicts[0].outcome == "not measurable"
    for fig in ("figure 3.4", "figure 3.5", "figure 3.learning_curves"):
        r = ch3.build(fig)
        assert r.figure is not None and r.path.is_file()
    frames, faces, points, cases = evidence_frames(ch3, faces=2, points=[0, 5])
    assert len(frames) == 2 and len(frames[0]) == 2 and len(cases) == 4 and len(faces) == 2 and len(points) == 2


def test_mean_shape_baseline_lies_in_the_face_box(ch3):
    gt, _, box = ch3.ground_truth()
    pred = mean_shape_predictions(ch3)
    assert pred.shape == gt.shape
    inside = (pred[..., 0] >= box[:, None, 0] - 1) & (pred[..., 0] <= box[:, None, 2] + 1)
    assert inside.mean() > 0.9


def test_pets_train_and_test_per_species(ch3, tmp_path):
    pets = pet_landmark_dataset(PETS, "trainval")
    result = ch3.pet_runs({"trainval": pets, "test": pets})
    assert len(result["runs"]) == 1
    errors = result["errors"][0]
    assert len(errors["Cats"]) == 1 and len(errors["Dogs"]) == 1
    run = result["runs"][0]
    assert run.model.n_points == 22 and run.model.regressor.image_channels == 3
    assert result["context"].run_prefix == "cale-pets"


def test_table_3_6_with_annotated_pets_under_data_root(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FA_LIB_RESULTS", str(tmp_path / "results"))
    root = tmp_path / "data"
    shutil.copytree(PETS, root / "oxford_pets")
    # the fixture's test split has no annotated image: list the annotated ones as test faces too
    listing = (root / "oxford_pets" / "annotations" / "trainval.txt").read_text()
    (root / "oxford_pets" / "annotations" / "test.txt").write_text(listing)
    ctx = Chapter3("smoke", runs_root=runs_root, log=None)
    ctx.data_root = root  # the human faces stay synthetic; only the pets are read from data_root
    r = ctx.build("table 3.6")
    reproduced = r.table.dropna(subset=["reproduced"])
    assert set(reproduced["row"]) == {"Cats", "Dogs"}
    assert r.verdicts[0].outcome != "not measurable"
    for fig in ("figure 3.6", "figure 3.7"):
        f = ctx.build(fig)
        assert f.figure is not None and f.path.is_file()


@pytest.fixture
def keep_torch_threads():
    """Chapter5 sets the process's torch threads (the profile's ``threads``): restore them."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_chapter_5_fills_its_cale_rows_from_the_run_cache(ch3, runs_root, tmp_path, monkeypatch, keep_torch_threads):
    ch3.run(0)  # chapter 3 ran first (same profile, same run cache)
    monkeypatch.setenv("FA_LIB_RESULTS", str(tmp_path))
    profile = with_knobs("smoke", "ch5", seeds=(0,))
    ch5 = Chapter5(profile, runs_root=runs_root, log=None)
    _, cale_runs = ch5.cale()
    assert len(cale_runs) == 1
    r = ch5.build("table 5.12")
    cale = r.table[(r.table["row"] == "CALE") & (r.table["column"] == "AFLW-PIFA all 34")]
    assert cale["reproduced"].notna().all() and cale["paper"].notna().all()
    assert r.verdicts[0].outcome != "not measurable"
    other_faces = Chapter5(profile, runs_root=runs_root, log=None)
    other_faces.data.pifa = pifa_standin("smoke", count=4, root=tmp_path / "sets")  # not chapter 3's test faces
    assert other_faces.cale()[1] == []
    empty = Chapter5(profile, runs_root=tmp_path / "empty_runs", log=None)
    assert empty.cale()[1] == []
    assert empty.build("table 5.11").verdicts[0].outcome == "not measurable"


def test_real_aflw_pifa_under_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FA_LIB_RESULTS", str(tmp_path / "results"))
    pifa = tmp_path / "data" / "aflw_pifa"
    for split in ("train", "test"):
        (pifa / split).mkdir(parents=True)
        for k in range(3):
            for ext in (".jpg", ".mat"):
                shutil.copy(FIX / "aflw_pifa" / f"face_1{ext}", pifa / split / f"face_{k}{ext}")
    with pytest.raises(ValueError, match="reader.json"):
        Chapter3("smoke", data_root=tmp_path / "data", runs_root=False, log=None)
    (pifa / "reader.json").write_text('{"points_key": "pts", "visibility_key": "vis"}')
    ctx = Chapter3("smoke", data_root=tmp_path / "data", runs_root=False, log=None)
    assert ctx.data.real and "real aflw_pifa" in ctx.data.describe()["test"]
    r = ctx.build("table 3.3")
    assert r.table.dropna(subset=["reproduced"])["row"].isin(["CNN detector", "CALE", "CALE gain over the detector"]).all()
    _, vis, _ = ctx.ground_truth()
    assert vis.sum(1).tolist() == [32, 32, 32]  # the fixture's visibility labels reach the metric
    notes = []
    other = Chapter3("smoke", data_root=tmp_path, runs_root=False, log=notes.append)  # no AFLW-PIFA there
    assert not other.data.real and any("synthetic stand-in" in n for n in notes)


def test_imagenet_weights_knob_loads_the_detector_and_keys_the_run(tmp_path):
    ctx = Chapter3("smoke", runs_root=False, log=None)
    model = ctx._build(0)
    state = {f"features.{k}": v.clone().normal_() if v.is_floating_point() else v.clone()
             for k, v in model.detector.features.state_dict().items()}
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    ctx.setup = replace(ctx.setup, vgg16_weights=str(path))
    loaded = ctx._build(0)
    assert torch.equal(loaded.detector.features[0].weight, state["features.0.weight"])
    assert "vgg16_weights" in ctx.detector_record(0)
