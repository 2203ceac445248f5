"""The notebook sources (jupytext MyST Markdown, ``notebooks/*.md``) and a papermill smoke run of every
one through ``fa-lib reproduce`` (smoke profile), with a check of the results schema."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import jupytext
import pandas as pd
import pytest
from jupytext.formats import guess_format

from fa_lib.reproduce import discover_notebooks, notebook_problems, read_source_notebook
from fa_lib.results import TABLE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.md"))
PROVENANCE_KEYS = {"profile", "dataset", "seed", "git_commit", "library_versions", "device"}


def test_source_notebooks_are_myst_parametrised_and_clean():
    """Every notebooks/*.md is a jupytext MyST notebook with exactly one `parameters` cell, the first
    code cell, and no outputs; reproduce discovers exactly these files."""
    assert NOTEBOOKS, "no notebooks found"
    assert discover_notebooks(ROOT) == NOTEBOOKS
    for path in NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        assert guess_format(text, ".md")[0] == "myst", f"{path.name}: not in jupytext's MyST format"
        nb = jupytext.reads(text, fmt="md:myst")
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "myst", path.name
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel"
        code = [c for c in nb.cells if c.cell_type == "code"]
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', expected one"
        assert code and code[0] is tagged[0], f"{path.name}: the first code cell must be tagged 'parameters'"
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
        assert not dirty, f"{path.name}: outputs in code cells {dirty}"
        assert notebook_problems(read_source_notebook(path)) == [], path.name


def test_no_ipynb_committed_under_notebooks():
    """The .md files are the only notebook sources: no .ipynb is tracked under notebooks/."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked, "git tracks no file under notebooks/"
    assert not [f for f in tracked if f.endswith(".ipynb")], f"notebooks committed as .ipynb: {tracked}"


@pytest.mark.notebook
@pytest.mark.parametrize("name", [p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_smoke_profile(smoke_reproduction, name):
    runs, results = smoke_reproduction
    run = runs[name]
    assert run.status == "ok", run.message
    assert run.source.name == f"{name}.md" and run.executed.name == f"{name}.ipynb"
    assert run.executed.is_file(), f"{name}: no executed notebook at {run.executed}"
    assert run.outputs, f"{name} wrote no tables or figures"
    for rel in run.outputs:
        path = results / rel
        if path.suffix == ".csv":
            df = pd.read_csv(path)
            assert list(df.columns) == TABLE_COLUMNS, f"{rel}: columns {list(df.columns)}"
            prov = json.loads(path.with_suffix(".json").read_text())
            # only a table that says why it is not reproduced (e.g. data that is not public) may be empty
            verdicts = prov.get("verdicts", [])
            said_why = verdicts and all(v["outcome"] == "not measurable" and v["note"].startswith("not reproduced")
                                        for v in verdicts)
            assert df["reproduced"].notna().any() or said_why, f"{rel}: no reproduced value"
            assert PROVENANCE_KEYS <= set(prov), f"{rel}: provenance lacks {PROVENANCE_KEYS - set(prov)}"
            assert prov["profile"] == "smoke"
        elif path.suffix == ".png":
            assert path.with_suffix(".json").exists(), f"{rel}: figure without provenance"
    # every figure shown in the notebook is an image, not the text repr of a matplotlib Figure
    nb = json.loads(run.executed.read_text(encoding="utf-8"))
    images = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = "".join(data.get("text/plain", "")) + "".join(output.get("text", ""))
            # a figure's text repr is only the fallback of a bundle that carries its image
            assert "<Figure size" not in text or "image/png" in data, f"{name}: a figure shown as text: {text[:80]!r}"
            images += "image/png" in data
    assert images, f"{name}: no figure shown as an image"
    # no table shows NaN, no output is a raw Python dict
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            html = "".join(output.get("data", {}).get("text/html", ""))
            assert not re.search(r"<td>\s*NaN\s*</td>", html), f"{name}: a NaN cell in {''.join(cell['source'])[:60]!r}"
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/markdown", ""))
            assert not re.search(r"\{'[A-Za-z_]+': ", text), f"{name}: a raw dict: {text[:80]!r}"
    # the book's pages show results and narrative, the code one click away
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all("hide-input" in c["metadata"].get("tags", []) for c in code), f"{name}: code shown"
    # the provenance machine record names the CPU
    for rel in run.outputs:
        if (results / rel).suffix == ".json":
            machine = json.loads((results / rel).read_text())["machine"]
            assert machine.get("cpu") and "cpu_count" in machine, f"{rel}: machine record {machine}"
            break
