import json

import pandas as pd
import pytest
from matplotlib.figure import Figure

from fa_lib import results


def test_paper_table_reads_the_thesis_values():
    t = results.paper_table("4.3")
    assert {"row", "column", "paper"} <= set(t.columns)
    assert len(t) == 12
    with pytest.raises(KeyError, match="no table"):
        results.paper_table("9.9")


def test_write_table_puts_paper_beside_reproduced(tmp_path):
    paper = results.paper_table("4.3")
    first = paper.iloc[0]
    df = pd.DataFrame([{"row": first["row"], "column": first["column"], "reproduced": 0.5},
                       {"row": "extra row", "column": "AUC", "reproduced": 0.25}])
    path = results.write_table("4.3", df, profile="smoke", dataset="unit test", dataset_size=3, seed=1,
                               results_root=tmp_path)
    out = pd.read_csv(path)
    assert list(out.columns) == results.TABLE_COLUMNS
    assert len(out) == len(paper) + 1                      # every thesis cell + the extra row
    hit = out[(out["row"] == first["row"]) & (out["column"] == first["column"])].iloc[0]
    assert hit["paper"] == pytest.approx(first["paper"]) and hit["reproduced"] == 0.5
    extra = out[out["row"] == "extra row"].iloc[0]
    assert pd.isna(extra["paper"]) and extra["reproduced"] == 0.25
    prov = json.loads(path.with_suffix(".json").read_text())
    for key in ["profile", "dataset", "dataset_size", "seed", "git_commit", "library_versions", "device",
                "wall_time_s", "training_budget"]:
        assert key in prov
    assert prov["profile"] == "smoke" and prov["table"] == "4.3"


def test_duplicate_cells_are_refused(tmp_path):
    df = pd.DataFrame([{"row": "a", "column": "b", "reproduced": 1}] * 2)
    with pytest.raises(ValueError, match="duplicate"):
        results.write_table("x", df, profile="smoke", dataset="d", dataset_size=1, seed=0,
                            results_root=tmp_path)
    assert not (tmp_path / "tables" / "table_x.csv").exists()


def test_write_figure_and_atomicity(tmp_path, monkeypatch):
    fig = Figure()
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    png = results.write_figure(fig, "1_2", profile="quick", dataset="d", seed=0, results_root=tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(png.with_suffix(".json").read_text())["figure"] == "1_2"

    # a crash while writing leaves the previous file intact and no temporary behind
    target = tmp_path / "t.txt"
    results.atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError):
        results.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_find_result_prefers_this_runs_results_then_the_published_tree(tmp_path, monkeypatch):
    from fa_lib.results import find_result, published_results_dir

    run, published = tmp_path / "staging", tmp_path / "results"
    for root, text in ((run, "this run"), (published, "published")):
        (root / "tables").mkdir(parents=True)
    (published / "tables" / "a.csv").write_text("published")
    monkeypatch.setenv("FA_LIB_RESULTS", str(run))
    monkeypatch.delenv("FA_LIB_RESULTS_PUBLISHED", raising=False)
    assert published_results_dir() == run and find_result("tables/a.csv") is None
    monkeypatch.setenv("FA_LIB_RESULTS_PUBLISHED", str(published))
    assert find_result("tables/a.csv") == published / "tables" / "a.csv"
    (run / "tables" / "a.csv").write_text("this run")
    assert find_result("tables/a.csv") == run / "tables" / "a.csv"
    assert find_result("tables/missing.csv") is None
