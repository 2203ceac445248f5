"""The papermill runner: results collected atomically, failures isolated, unchanged notebooks cached."""
import json

import nbformat as nbf
import pytest

from fa_lib.reproduce import reproduce, select_notebooks

WRITE_TABLE = """import pandas as pd
from fa_lib.results import write_table
write_table({tid!r}, pd.DataFrame([{{"row": "r", "column": "c", "reproduced": seed + 1}}]),
            profile=profile, dataset="unit", dataset_size=1, seed=seed)"""


def _notebook(path, *cells):
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_code_cell('profile = "quick"\ndevice = "auto"\ndata_root = None\nseed = 0',
                                     metadata={"tags": ["parameters"]})]
    nb.cells += [nbf.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "ch_good.ipynb", WRITE_TABLE.format(tid="good"))
    _notebook(tmp_path / "notebooks" / "ch_bad.ipynb", WRITE_TABLE.format(tid="bad"),
              "raise RuntimeError('deliberate failure')")
    return tmp_path


@pytest.mark.notebook
def test_failure_is_isolated_and_named(project):
    results = project / "results"
    (results / "tables").mkdir(parents=True)
    (results / "tables" / "table_bad.csv").write_text("previous run\n")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=False)}
    assert runs["ch_good"].status == "ok" and runs["ch_bad"].status == "failed"
    assert "ch_bad.ipynb" in runs["ch_bad"].message
    assert "cell" in runs["ch_bad"].message and "deliberate failure" in runs["ch_bad"].message
    # the good chapter's table arrived with its provenance; the bad one's old result is untouched
    good = (results / "tables" / "table_good.csv").read_text()
    assert "r,c,,1" in good
    assert json.loads((results / "tables" / "table_good.json").read_text())["profile"] == "smoke"
    assert (results / "tables" / "table_bad.csv").read_text() == "previous run\n"
    assert (project / "book" / "_executed" / "ch_good.ipynb").exists()
    assert not (project / "book" / "_executed" / "ch_bad.ipynb").exists()


@pytest.mark.notebook
def test_unchanged_notebook_is_cached_and_parameters_invalidate(project):
    (project / "notebooks" / "ch_bad.ipynb").unlink()
    first = reproduce("smoke", root=project, progress=False)
    assert [r.status for r in first] == ["ok"]
    again = reproduce("smoke", root=project, progress=False)
    assert [r.status for r in again] == ["cached"]
    other_seed = reproduce("smoke", root=project, progress=False, seed=3)
    assert [r.status for r in other_seed] == ["ok"]
    assert "r,c,,4" in (project / "results" / "tables" / "table_good.csv").read_text()


def test_selection_and_bad_arguments(project, tmp_path):
    nbs = sorted((project / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in select_notebooks(nbs, ["ch_good"])] == ["ch_good"]
    with pytest.raises(ValueError, match="available"):
        select_notebooks(nbs, ["nope"])
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce("huge", root=project, progress=False)
    with pytest.raises(FileNotFoundError, match="data-root"):
        reproduce("smoke", root=project, data_root=str(tmp_path / "missing"), progress=False)


@pytest.mark.notebook
def test_notebook_reads_results_made_elsewhere_from_the_published_tree(project):
    """A running notebook writes into a staging folder ($FA_LIB_RESULTS); what other commands wrote
    (e.g. `fa-lib bench xnor`) is found through $FA_LIB_RESULTS_PUBLISHED (fa_lib.results.find_result)."""
    (project / "notebooks" / "ch_bad.ipynb").unlink()
    _notebook(project / "notebooks" / "ch_reader.ipynb",
              "from fa_lib.results import find_result, results_dir\n"
              "found = find_result('tables/bench_xnor.csv')\n"
              "assert found is not None and found.read_text() == 'made by the benchmark\\n', found\n"
              "assert find_result('tables/nothing.csv') is None\n"
              "assert 'staging' in str(results_dir())")
    (project / "results" / "tables").mkdir(parents=True)
    (project / "results" / "tables" / "bench_xnor.csv").write_text("made by the benchmark\n")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=False)}
    assert runs["ch_reader"].status == "ok", runs["ch_reader"].message
