"""`fa-lib reproduce --compare`: a re-run's tables against the committed ones, cell by cell within their
seed spread, and the thesis's findings judged in both (fa_lib.compare), and its page in the book."""
import json

import pandas as pd
import pytest

from fa_lib import bookgen
from fa_lib.compare import compare_results, write_comparison
from fa_lib.experiments.verdict import judge


def _table(root, table_id, cells, verdicts=()):
    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cells, columns=["row", "column", "paper", "reproduced"]).to_csv(tables / f"table_{table_id}.csv",
                                                                                index=False)
    (tables / f"table_{table_id}.json").write_text(json.dumps({"verdicts": [v.to_dict() for v in verdicts]}))


@pytest.fixture
def trees(tmp_path):
    old, new = tmp_path / "committed", tmp_path / "rerun"
    holds = judge("A beats B", "A", [10.0, 11.0], "B", [1.0, 2.0], paper_gap=5)
    noise = judge("A beats B", "A", [10.0, 11.0], "B", [10.2, 10.9], paper_gap=5)
    # AUC with a spread over 2 seeds: std 1 -> se 0.71 per side, 1.0 combined
    _table(old, "5.2", [("A", "AUC", "50", 10.0), ("A", "AUC std", "", 1.0), ("A", "runs", "", 2),
                        ("B", "AUC", "40", 5.0), ("B", "AUC std", "", 1.0), ("B", "runs", "", 2),
                        ("C", "NME", "", 3.0)], [holds])
    _table(new, "5.2", [("A", "AUC", "50", 11.5), ("A", "AUC std", "", 1.0), ("A", "runs", "", 2),
                        ("B", "AUC", "40", 9.0), ("B", "AUC std", "", 1.0), ("B", "runs", "", 2),
                        ("C", "NME", "", 3.0)], [noise])
    _table(old, "4.9", [("x", "y", "", 1.0)])  # only in the committed tree: not compared
    return old, new


def test_cells_are_judged_against_their_seed_spread(trees):
    old, new = trees
    cells, findings = compare_results(old, new)
    by = {(r.row, r.column): r for r in cells.itertuples()}
    assert set(cells["table"]) == {"5.2"} and ("A", "AUC std") not in by and ("A", "runs") not in by
    assert by[("A", "AUC")].verdict == "agrees" and by[("A", "AUC")].spread == pytest.approx(1.0)
    assert by[("B", "AUC")].verdict == "differs" and by[("B", "AUC")].difference == pytest.approx(4.0)
    assert by[("C", "NME")].verdict == "identical"
    (finding,) = findings.itertuples()
    assert (finding.committed, finding.rerun, finding.same) == ("holds", "within noise", False)


def test_comparison_files_summary_and_book_page(trees, tmp_path):
    old, new = trees
    path, text = write_comparison(old, new)
    assert path == new / "compare.csv" and (new / "compare_findings.csv").is_file()
    assert "3 cells of 1 tables: 1 identical, 1 agrees, 1 differs, 0 no spread known" in text
    assert "differs: table 5.2, B / AUC: 5 -> 9" in text and "changed: table 5.2: A beats B: holds -> within noise" in text
    assert "No re-run has been compared" in bookgen.render_comparison(old)
    (old / "comparison").mkdir()
    for name in ("compare.csv", "compare_findings.csv"):
        (old / "comparison" / name).write_text((new / name).read_text())
    page = bookgen.render_comparison(old)
    assert "| differs | 1 |" in page and "| 5.2 | B | AUC | 5 | 9 |" in page
    assert "judged the same in both runs: 0 of 1" in page


def test_command_line_writes_the_rerun_elsewhere(tmp_path, monkeypatch):
    from fa_lib import cli

    seen = {}

    def fake_reproduce(**kwargs):
        seen.update(kwargs)
        _table(kwargs["results_dir"], "5.2", [("C", "NME", "", 3.0)])
        return []

    committed = tmp_path / "results"
    _table(committed, "5.2", [("C", "NME", "", 3.0)])
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(cli, "reproduce", fake_reproduce)
    monkeypatch.setattr(cli, "summary", lambda runs: "")
    assert cli.main(["reproduce", "--root", str(tmp_path), "--compare", "--chapters", "ch5"]) == 0
    assert seen["results_dir"] == tmp_path / "results-quick-rerun"   # never over the committed results
    assert (tmp_path / "results-quick-rerun" / "compare.csv").is_file()
    assert cli.main(["reproduce", "--root", str(tmp_path), "--compare", "--results-dir", str(committed)]) == 2
