"""Papermill smoke run of every chapter notebook (smoke profile) and a check of the results schema."""
import json
from pathlib import Path

import pandas as pd
import pytest

from fa_lib.results import TABLE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROVENANCE_KEYS = {"profile", "dataset", "seed", "git_commit", "library_versions", "device"}


def test_source_notebooks_are_clean_and_parametrised():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and "parameters" in code[0].get("metadata", {}).get("tags", []), \
            f"{path.name}: the first code cell must be tagged 'parameters'"
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
        assert not dirty, f"{path.name}: committed with outputs in code cells {dirty}"


@pytest.mark.notebook
@pytest.mark.parametrize("name", [p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_smoke_profile(smoke_reproduction, name):
    runs, results = smoke_reproduction
    run = runs[name]
    assert run.status == "ok", run.message
    assert run.outputs, f"{name} wrote no tables or figures"
    for rel in run.outputs:
        path = results / rel
        if path.suffix == ".csv":
            df = pd.read_csv(path)
            assert list(df.columns) == TABLE_COLUMNS, f"{rel}: columns {list(df.columns)}"
            assert df["reproduced"].notna().any(), f"{rel}: no reproduced value"
            prov = json.loads(path.with_suffix(".json").read_text())
            assert PROVENANCE_KEYS <= set(prov), f"{rel}: provenance lacks {PROVENANCE_KEYS - set(prov)}"
            assert prov["profile"] == "smoke"
        elif path.suffix == ".png":
            assert path.with_suffix(".json").exists(), f"{rel}: figure without provenance"
