"""The papermill runner: MyST Markdown sources converted by jupytext, results collected atomically,
failures isolated, unchanged notebooks cached."""
import ast
import json
from pathlib import Path

import jupytext
import nbformat as nbf
import pytest

from fa_lib.reproduce import (notebook_problems, read_source_notebook, reproduce, select_notebooks,
                              source_to_ipynb)

PACKAGE = Path(__file__).resolve().parents[1] / "fa_lib"

WRITE_TABLE = """import pandas as pd
from fa_lib.results import write_table
write_table({tid!r}, pd.DataFrame([{{"row": "r", "column": "c", "reproduced": seed + 1}}]),
            profile=profile, dataset="unit", dataset_size=1, seed=seed)"""


def _notebook(path, *cells, parameters=True):
    """Write a notebook source as the project keeps them: jupytext MyST Markdown, parameters cell first."""
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("# A chapter")]
    if parameters:
        nb.cells.append(nbf.v4.new_code_cell('profile = "quick"\ndevice = "auto"\ndata_root = None\nseed = 0',
                                             metadata={"tags": ["parameters"]}))
    nb.cells += [nbf.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, path, fmt="md:myst")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "ch_good.md", WRITE_TABLE.format(tid="good"))
    _notebook(tmp_path / "notebooks" / "ch_bad.md", WRITE_TABLE.format(tid="bad"),
              "raise RuntimeError('deliberate failure')")
    return tmp_path


@pytest.mark.notebook
def test_failure_is_isolated_and_named(project):
    results = project / "results-smoke"  # only the quick profile writes to results/ by default
    (results / "tables").mkdir(parents=True)
    (results / "tables" / "table_bad.csv").write_text("previous run\n")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=False)}
    assert runs["ch_good"].status == "ok" and runs["ch_bad"].status == "failed"
    assert "ch_bad.md" in runs["ch_bad"].message
    assert "cell" in runs["ch_bad"].message and "deliberate failure" in runs["ch_bad"].message
    # the good chapter's table arrived with its provenance; the bad one's old result is untouched
    good = (results / "tables" / "table_good.csv").read_text()
    assert "r,c,,1" in good
    assert json.loads((results / "tables" / "table_good.json").read_text())["profile"] == "smoke"
    assert (results / "tables" / "table_bad.csv").read_text() == "previous run\n"
    assert (project / "book" / "_executed-smoke" / "ch_good.ipynb").exists()
    assert not (project / "book" / "_executed-smoke" / "ch_bad.ipynb").exists()
    assert not (project / "results").exists() and not (project / "book" / "_executed").exists()


@pytest.mark.notebook
def test_unchanged_notebook_is_cached_and_parameters_invalidate(project):
    (project / "notebooks" / "ch_bad.md").unlink()
    first = reproduce("smoke", root=project, progress=False)
    assert [r.status for r in first] == ["ok"]
    again = reproduce("smoke", root=project, progress=False)
    assert [r.status for r in again] == ["cached"]
    other_seed = reproduce("smoke", root=project, progress=False, seed=3)
    assert [r.status for r in other_seed] == ["ok"]
    assert "r,c,,4" in (project / "results-smoke" / "tables" / "table_good.csv").read_text()


def test_selection_and_bad_arguments(project, tmp_path):
    nbs = sorted((project / "notebooks").glob("*.md"))
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
    (project / "notebooks" / "ch_bad.md").unlink()
    _notebook(project / "notebooks" / "ch_reader.md",
              "from fa_lib.results import find_result, results_dir\n"
              "found = find_result('tables/bench_xnor.csv')\n"
              "assert found is not None and found.read_text() == 'made by the benchmark\\n', found\n"
              "assert find_result('tables/nothing.csv') is None\n"
              "assert 'staging' in str(results_dir())")
    (project / "results" / "tables").mkdir(parents=True)
    (project / "results" / "tables" / "bench_xnor.csv").write_text("made by the benchmark\n")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=False, results_dir=project / "results")}
    assert runs["ch_reader"].status == "ok", runs["ch_reader"].message


@pytest.mark.notebook
def test_myst_source_is_converted_and_parameters_injected_after_its_cell(project):
    """A notebooks/<name>.md source runs through jupytext -> papermill into book/_executed/<name>.ipynb,
    the injected parameters right after the `parameters` cell, with no temporary file left behind."""
    (project / "notebooks" / "ch_bad.md").unlink()
    runs = reproduce("smoke", root=project, progress=False, seed=5, device="cpu",
                     executed_dir=project / "book" / "_executed")
    assert [(r.name, r.status) for r in runs] == [("ch_good", "ok")], runs[0].message
    executed = project / "book" / "_executed" / "ch_good.ipynb"
    assert runs[0].executed == executed and runs[0].source.suffix == ".md"
    nb = nbf.read(executed, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    first = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[first + 1]
    injected = nb.cells[first + 1].source
    assert 'profile = "smoke"' in injected and "seed = 5" in injected and 'device = "cpu"' in injected
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source == "# A chapter"
    assert any(c.get("outputs") is not None and c.execution_count for c in nb.cells if c.cell_type == "code")
    assert "jupytext" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["papermill"]["input_path"].endswith("notebooks/ch_good.md")
    assert nb.metadata["papermill"]["output_path"] == str(executed)
    assert [p.name for p in executed.parent.iterdir()] == ["ch_good.ipynb"]
    assert not list((project / ".cache" / "staging").iterdir())


@pytest.mark.notebook
def test_editing_the_md_source_invalidates_the_cache(project):
    (project / "notebooks" / "ch_bad.md").unlink()
    assert [r.status for r in reproduce("smoke", root=project, progress=False)] == ["ok"]
    assert [r.status for r in reproduce("smoke", root=project, progress=False)] == ["cached"]
    source = project / "notebooks" / "ch_good.md"
    source.write_text(source.read_text() + "\nA new paragraph of narrative.\n")
    assert [r.status for r in reproduce("smoke", root=project, progress=False)] == ["ok"]


def test_source_checks_name_what_is_wrong(tmp_path):
    good = tmp_path / "good.md"
    _notebook(good, "x = 1")
    nb = read_source_notebook(good)
    assert notebook_problems(nb) == [] and "jupytext" not in nb.metadata
    converted = source_to_ipynb(good, tmp_path / "out" / "good.ipynb")
    assert [c.cell_type for c in nbf.read(converted, as_version=4).cells] == ["markdown", "code", "code"]

    untagged = tmp_path / "untagged.md"
    _notebook(untagged, "x = 1", parameters=False)
    assert any("0 cells are tagged 'parameters'" in p for p in notebook_problems(read_source_notebook(untagged)))
    late = read_source_notebook(good)
    late.cells[1], late.cells[2] = late.cells[2], late.cells[1]
    assert any("not the first code cell" in p for p in notebook_problems(late))
    twice = read_source_notebook(good)
    twice.cells[2].metadata["tags"] = ["parameters"]
    assert any("2 cells are tagged" in p for p in notebook_problems(twice))
    with_outputs = read_source_notebook(good)
    with_outputs.cells[2].outputs = [nbf.v4.new_output("stream", text="1\n")]
    assert any("carry outputs" in p for p in notebook_problems(with_outputs))
    with pytest.raises(ValueError, match="untagged.md: 0 cells are tagged"):
        source_to_ipynb(untagged, tmp_path / "out" / "untagged.ipynb")

    plain = tmp_path / "plain.md"  # a Markdown file with a code block, not a MyST notebook
    plain.write_text("# Notes\n\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match="not a jupytext MyST notebook"):
        read_source_notebook(plain)


def test_a_broken_source_fails_alone_and_is_named(project):
    (project / "notebooks" / "ch_bad.md").unlink()
    (project / "notebooks" / "ch_plain.md").write_text("# Notes\n\n```python\nx = 1\n```\n")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=False, chapters=["ch_plain"])}
    assert runs["ch_plain"].status == "failed"
    assert "notebooks/ch_plain.md could not run" in runs["ch_plain"].message
    assert "not a jupytext MyST notebook" in runs["ch_plain"].message
    assert not (project / "book" / "_executed" / "ch_plain.ipynb").exists()


def test_device_errors_are_clear(project):
    with pytest.raises(ValueError, match="--device 'tpu'.*must be 'auto', 'cpu' or 'cuda'"):
        reproduce("smoke", root=project, device="tpu", progress=False)


def _imports(module: Path) -> set[str]:
    """Every module a source file imports, at any level (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_import_cycle_between_reproduce_and_results():
    assert "fa_lib.reproduce" not in _imports(PACKAGE / "results.py")
    assert "fa_lib.results" not in _imports(PACKAGE / "reproduce.py")
    assert _imports(PACKAGE / "paths.py") <= {"__future__", "os", "pathlib"}
    import fa_lib.atomic
    import fa_lib.paths
    import fa_lib.reproduce
    import fa_lib.results

    # one implementation of each: atomic writes (re-exported by results), the project root
    assert fa_lib.results.atomic_write_bytes is fa_lib.atomic.atomic_write_bytes
    assert fa_lib.results.atomic_write_text is fa_lib.atomic.atomic_write_text
    assert fa_lib.results.project_root is fa_lib.reproduce.project_root is fa_lib.paths.project_root


@pytest.mark.notebook
def test_a_running_notebook_reports_progress_and_no_kernel_noise(project, capfd):
    """The kernel gets $FA_LIB_PROGRESS (its trainers report there; the file is gone afterwards) and
    the kernel's own log (its TCP-transport warning) does not reach the reader."""
    (project / "notebooks" / "ch_bad.md").unlink()
    _notebook(project / "notebooks" / "ch_progress.md",
              "import os\nfrom fa_lib.progress import PROGRESS_ENV, TrainingReporter\n"
              "assert os.environ[PROGRESS_ENV].endswith('.ch_progress.progress.jsonl')\n"
              "TrainingReporter('net', 3).update(3, 0.5, done=True)\n"
              "assert 'net' in open(os.environ[PROGRESS_ENV]).read()")
    runs = {r.name: r for r in reproduce("smoke", root=project, progress=True, chapters=["ch_progress"])}
    assert runs["ch_progress"].status == "ok", runs["ch_progress"].message
    assert not list((project / ".cache" / "staging").glob("*.progress.jsonl"))
    assert "Kernel is running over TCP" not in capfd.readouterr().err
