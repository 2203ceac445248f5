"""``fa-lib check-data`` and the check ``fa-lib reproduce --data-root`` runs first: a data root assembled
from the format fixtures, an empty one and a malformed one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fa_lib.cli import main
from fa_lib.data_check import DATASETS, chapter_plan, check_data, unusable_chapters
from fa_lib.reproduce import reproduce

FIX = Path(__file__).resolve().parent / "fixtures"
READER = {"points_key": "pts", "visibility_key": "vis"}


@pytest.fixture
def data_root(tmp_path):
    """Every dataset a chapter reads, a few faces each, in its official layout."""
    root = tmp_path / "data"
    for name in ("300W_LP", "AFLW2000", "widerface", "aflw", "CelebA"):
        shutil.copytree(FIX / name, root / name)
    shutil.copytree(FIX / "LS3D-W" / "Menpo-3D", root / "LS3D-W" / "balanced" / "Menpo-3D")
    for split in ("train", "test"):
        (root / "aflw_pifa" / split).mkdir(parents=True)
        for k in range(2):
            for ext in (".jpg", ".mat"):
                shutil.copy(FIX / "aflw_pifa" / f"face_1{ext}", root / "aflw_pifa" / split / f"face_{k}{ext}")
    (root / "aflw_pifa" / "reader.json").write_text(json.dumps(READER))
    shutil.copytree(FIX / "300w", root / "300W")  # Table 4.1's 2D sets: 300-W test and 300-VW (category A)
    shutil.copytree(FIX / "300VW", root / "300VW")
    (root / "300VW" / "categories.json").write_text(json.dumps({"A": ["001"]}))
    return root


def test_a_complete_root_is_found_and_parsed(data_root):
    reports = {r.name: r for r in check_data(data_root, sample=0)}
    assert set(reports) == {spec.name for spec in DATASETS}
    for name in ("300-W-LP", "LS3D-W balanced", "AFLW2000-3D", "AFLW-PIFA train", "AFLW-PIFA test",
                 "WiderFace validation", "AFLW", "CelebA (training split)"):
        assert reports[name].usable, (name, reports[name].problem, reports[name].errors)
        assert reports[name].count >= 1 and reports[name].checked == reports[name].count
    assert reports["AFLW-PIFA test"].thesis_count == 1299 and reports["AFLW-PIFA test"].count == 2
    assert not reports["Oxford-IIIT-Pet with 22-point annotations (test)"].found
    plan = chapter_plan(list(reports.values()))
    assert plan["ch3"].startswith("CALE on the real AFLW-PIFA") and "real 300-W-LP" in plan["ch5"]
    assert "Table 4.1 on 300-W test, 300-VW" in plan["ch4"] and "depth network" in plan["ch4"]
    assert "WiderFace" in plan["ch6"] and unusable_chapters(list(reports.values())) == {}
    assert "300-W-LP, AFLW, CelebA, the LS3D-W balanced faces" in plan["ch6"] and "not found" not in plan["ch6"]
    assert reports["AFLW"].thesis_count == 25993 and reports["AFLW"].count == 3  # one face has 5 points unmarked


def test_chapter_6_names_the_optional_sets_it_lacks_and_stops_on_a_broken_one(data_root):
    shutil.rmtree(data_root / "CelebA")
    reports = check_data(data_root, sample=0)
    assert "not found: CelebA" in chapter_plan(reports)["ch6"] and unusable_chapters(reports) == {}
    (data_root / "aflw" / "data" / "aflw.sqlite").write_text("not a database")
    blocked = unusable_chapters(check_data(data_root, sample=0))
    assert set(blocked) == {"ch6"} and "AFLW unusable" in blocked["ch6"]


def test_an_empty_root_says_what_is_missing_and_which_chapter_cannot_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    reports = check_data(tmp_path / "empty")
    assert not any(r.found for r in reports)
    assert "not found" in reports[0].problem and "300w_lp" in reports[0].problem
    blocked = unusable_chapters(reports)
    assert set(blocked) == {"ch4", "ch5", "ch6"} and "300-W-LP" in blocked["ch5"] and "LS3D-W balanced" in blocked["ch5"]
    assert "300-W-LP" in blocked["ch4"] and "LS3D-W balanced" in blocked["ch6"]
    assert unusable_chapters(reports, ["ch3"]) == {}
    assert main(["check-data", "--data-root", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "[MISSING] 300-W-LP" in out and "ch5: cannot run" in out and "ch3: the synthetic" in out
    assert main(["check-data", "--data-root", str(tmp_path / "nowhere")]) == 2


def test_a_malformed_root_reports_the_files_that_fail(data_root, capsys):
    bad = data_root / "LS3D-W" / "balanced" / "Menpo-3D" / "face_2.t7"
    shutil.copy(FIX / "bad" / "truncated.t7", bad)
    shutil.copy(FIX / "LS3D-W" / "Menpo-3D" / "face_1.jpg", bad.with_suffix(".jpg"))
    (data_root / "aflw_pifa" / "reader.json").unlink()
    reports = {r.name: r for r in check_data(data_root, sample=0)}
    ls3dw = reports["LS3D-W balanced"]
    assert ls3dw.found and ls3dw.count == 2 and len(ls3dw.errors) == 1 and "face_2.t7" in ls3dw.errors[0]
    assert reports["AFLW-PIFA test"].found and "reader.json" in reports["AFLW-PIFA test"].problem
    assert "ch5" in unusable_chapters(list(reports.values()))
    assert main(["check-data", "--data-root", str(data_root), "--json", "--sample", "0"]) == 1
    record = json.loads(capsys.readouterr().out)
    row = next(r for r in record["datasets"] if r["dataset"] == "LS3D-W balanced")
    assert row["parsed"] == "1/2" and "face_2.t7" in row["problem"]


def test_reproduce_stops_before_training_when_a_chapter_cannot_use_the_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="ch5: cannot run.*check-data"):
        reproduce("smoke", chapters=["ch5"], data_root=str(tmp_path / "empty"), progress=False,
                  results_dir=tmp_path / "results", executed_dir=tmp_path / "executed")


@pytest.mark.notebook
def test_chapters_3_5_and_6_run_on_a_fixture_data_root_through_the_real_readers(data_root, smoke_project, tmp_path,
                                                                              monkeypatch):
    """The real-data path end to end: the chapter-3, -5 and -6 notebooks at the smoke scale with
    ``--data-root`` on the fixture root; which results came from which fixture dataset (chapter 6: pairs
    made from the real 300-W-LP, AFLW, CelebA and LS3D-W faces, the FANs trained on the 300-W-LP ones)."""
    monkeypatch.setenv("FA_LIB_RUNS", str(tmp_path / "runs"))
    runs = reproduce("smoke", chapters=["ch3", "ch5", "ch6"], data_root=str(data_root), root=smoke_project,
                     progress=False, force=True, device="cpu", results_dir=tmp_path / "results",
                     executed_dir=tmp_path / "executed")
    assert [r.status for r in runs] == ["ok", "ok", "ok"], [r.message for r in runs]
    ch5 = json.loads((tmp_path / "results" / "tables" / "table_5.10.json").read_text())
    assert ch5["train_set"].startswith("real 300w_lp train") and ch5["test_set"].startswith("real ls3dw balanced")
    pifa = json.loads((tmp_path / "results" / "tables" / "table_5.11.json").read_text())
    assert "real aflw_pifa test" in pifa["test_set"] and "(2 faces)" in pifa["test_set"]
    table = json.loads((tmp_path / "results" / "tables" / "table_3.3.json").read_text())
    assert table["data"]["real"] is True and "real aflw_pifa test" in table["data"]["test"]
    assert "(2 faces)" in table["data"]["test"]
    pets = json.loads((tmp_path / "results" / "tables" / "table_3.6.json").read_text())
    assert pets["verdicts"][0]["outcome"] == "not measurable"  # the fixture tree has no 22-point annotations
    tiny = json.loads((tmp_path / "results" / "figures" / "fig_6_real.json").read_text())
    assert tiny["real_faces"].startswith("WiderFace validation")  # Figs. 6.1, 6.5, 6.7 on WiderFace's tiny faces
    sizes = json.loads((tmp_path / "results" / "figures" / "fig_6_9.json").read_text())
    assert sizes["sizes_source"].startswith("WiderFace validation boxes")
    superfan = json.loads((tmp_path / "results" / "tables" / "table_6.2.json").read_text())
    assert superfan["dataset"].startswith("real 300w_lp train + aflw all + celeba train under")
    assert "-> real ls3dw balanced" in superfan["dataset"]
    assert superfan["data"]["train_landmark_targets"].startswith("real 300w_lp train under")  # the FANs' pairs


@pytest.mark.notebook
def test_chapter_4_runs_on_a_fixture_data_root_through_the_real_readers(data_root, smoke_project, tmp_path,
                                                                      monkeypatch):
    """Chapter 4 with ``--data-root``: the FANs train on the real 300-W-LP, Table 4.1 reads the real 2D
    sets (300-W test, 300-VW category A, in the thesis's rows 300-W and 300-VW-A; Menpo is missing and named), Tables 4.2-4.4 the real LS3D-W
    balanced with its |yaw| fitted to the landmarks, Fig. 4.6 AFLW2000-3D converted by the tool guided by
    2D-FAN; what 300-W-LP cannot train (the depth network) and what LS3D-W cannot score (2D-FAN) is not run,
    with the reason, and nothing is written for it."""
    monkeypatch.setenv("FA_LIB_RUNS", str(tmp_path / "runs"))
    runs = reproduce("smoke", chapters=["ch4"], data_root=str(data_root), root=smoke_project, progress=False,
                     force=True, device="cpu", results_dir=tmp_path / "results", executed_dir=tmp_path / "executed")
    assert [r.status for r in runs] == ["ok"], [r.message for r in runs]
    tables = tmp_path / "results" / "tables"
    t41 = json.loads((tables / "table_4.1.json").read_text())
    assert "real pts_folder all under" in t41["dataset"] and "real 300vw videos 001" in t41["dataset"]
    table = pd.read_csv(tables / "table_4.1.csv")
    ours = table[table["reproduced"].notna()]
    assert set(ours["row"]) == {"300-W", "300-VW-A"} and set(ours["column"]) == {"2D-FAN", "mean shape (baseline)"}
    assert table[(table["row"] == "300-W") & (table["column"] == "2D-FAN")]["paper"].notna().all()  # side by side
    t42 = json.loads((tables / "table_4.2.json").read_text())
    assert t42["dataset"].startswith("real ls3dw balanced") and "fitted" in t42["dataset"]
    assert t42["data"]["train"].startswith("real 300w_lp train")
    figures = tmp_path / "results" / "figures"
    assert not (figures / "fig_4_12.json").exists() and not (figures / "fig_4_8.json").exists()
    assert (figures / "fig_4_9.json").exists() and (figures / "fig_4_10.json").exists()
    fig6 = json.loads((tables / "table_4.fig6.json").read_text())  # the thesis's protocol on AFLW2000-3D
    assert fig6["dataset"].startswith("real aflw2000_3d test") and (figures / "fig_4_6.json").exists()
    curves = set(pd.read_csv(tables / "table_4.fig6.csv")["row"])
    assert {"convert-ls3dw, 2D-FAN guide (no .pts)", "no conversion (2D-FAN's points as 3D)"} <= curves
    page = (tmp_path / "executed" / "ch4_fan.ipynb").read_text()
    assert "not used by this chapter" not in page
    assert "300-W-LP's files" in page and "Menpo: not found" in page

