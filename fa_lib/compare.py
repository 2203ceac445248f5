"""Does a re-run agree with the committed results? ``fa-lib reproduce --compare``.

Training on another machine rounds differently and the difference compounds, so a re-run never gives
the committed numbers bit for bit. What a reviewer needs is whether each difference is within the
noise the book already reports. For every table both result trees have (``tables/table_<id>.csv``),
every cell of ours is compared:

- ``committed``, ``rerun``, ``difference`` (rerun minus committed);
- ``spread``: the standard error of that difference when the table gives the cell's spread over
  seeds (a ``<column> std`` column and a ``runs`` column beside it: se = std / sqrt(runs) on each side,
  combined as sqrt(se_a^2 + se_b^2));
- ``verdict``: *identical*, *agrees* (within 2 standard errors), *differs*, or *no spread known*
  (the table has no seed spread for that cell: the difference is reported, not judged).

Per table, each finding of the thesis (the ``verdicts`` of the provenance, matched by claim) is
compared too: is its outcome (holds / reversed / within noise / ...) the same in both runs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from fa_lib.atomic import atomic_write_text

COMPARE_FILE = "compare.csv"
FINDINGS_FILE = "compare_findings.csv"
CELL_COLUMNS = ["table", "row", "column", "committed", "rerun", "difference", "spread", "verdict"]
FINDING_COLUMNS = ["table", "claim", "committed", "rerun", "same"]


def _tables(root: Path) -> dict[str, Path]:
    return {p.stem[len("table_"):]: p for p in sorted((Path(root) / "tables").glob("table_*.csv"))}


def _values(path: Path) -> dict[tuple[str, str], float]:
    frame = pd.read_csv(path, dtype={"row": str, "column": str})
    out = {}
    for r in frame.itertuples():
        value = pd.to_numeric(pd.Series([r.reproduced]), errors="coerce").iloc[0]
        if pd.notna(value):
            out[(str(r.row), str(r.column))] = float(value)
    return out


def _standard_error(values: dict[tuple[str, str], float], row: str, column: str) -> float | None:
    std, runs = values.get((row, f"{column} std")), values.get((row, "runs"))
    if std is None or runs is None or runs < 1:
        return None
    return std / math.sqrt(runs)


def _verdicts(path: Path) -> dict[str, str]:
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        return {}
    try:
        records = json.loads(json_path.read_text(encoding="utf-8")).get("verdicts") or []
    except ValueError:
        return {}
    return {str(v.get("claim")): str(v.get("outcome")) for v in records if isinstance(v, dict)}


def compare_results(committed: str | Path, rerun: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, findings) of every table both trees have (see the module docstring)."""
    old, new = _tables(Path(committed)), _tables(Path(rerun))
    cells, findings = [], []
    for table in sorted(set(old) & set(new)):
        a, b = _values(old[table]), _values(new[table])
        for (row, column), value in a.items():
            if (row, column) not in b or column.endswith(" std") or column == "runs":
                continue
            other = b[(row, column)]
            se_a, se_b = _standard_error(a, row, column), _standard_error(b, row, column)
            spread = math.hypot(se_a, se_b) if se_a is not None and se_b is not None else None
            difference = other - value
            if difference == 0:
                verdict = "identical"
            elif spread is None or spread == 0:
                verdict = "no spread known"
            else:
                verdict = "agrees" if abs(difference) <= 2 * spread else "differs"
            cells.append({"table": table, "row": row, "column": column, "committed": value, "rerun": other,
                          "difference": difference, "spread": spread, "verdict": verdict})
        va, vb = _verdicts(old[table]), _verdicts(new[table])
        for claim in va:
            if claim in vb:
                findings.append({"table": table, "claim": claim, "committed": va[claim], "rerun": vb[claim],
                                 "same": va[claim] == vb[claim]})
    return pd.DataFrame(cells, columns=CELL_COLUMNS), pd.DataFrame(findings, columns=FINDING_COLUMNS)


def write_comparison(committed: str | Path, rerun: str | Path, out_dir: str | Path | None = None) -> tuple[Path, str]:
    """Compare, write ``compare.csv`` and ``compare_findings.csv`` into ``out_dir`` (default: the re-run's
    tree) and return (the cells file, a short summary for the screen)."""
    cells, findings = compare_results(committed, rerun)
    out = Path(out_dir) if out_dir is not None else Path(rerun)
    atomic_write_text(out / COMPARE_FILE, cells.to_csv(index=False))
    atomic_write_text(out / FINDINGS_FILE, findings.to_csv(index=False))
    return out / COMPARE_FILE, summarise(cells, findings, committed, rerun)


def summarise(cells: pd.DataFrame, findings: pd.DataFrame, committed: str | Path = "committed",
              rerun: str | Path = "re-run") -> str:
    """A few lines: how many cells agree, differ or cannot be judged; how many findings changed."""
    if cells.empty:
        return f"compare: no table is in both {committed} and {rerun}"
    counts = cells["verdict"].value_counts()
    lines = [f"compare {rerun} with {committed}: {len(cells)} cells of {cells['table'].nunique()} tables: "
             + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("identical", "agrees", "differs", "no spread known"))]
    differ = cells[cells["verdict"] == "differs"]
    for r in differ.head(8).itertuples():
        lines.append(f"  differs: table {r.table}, {r.row} / {r.column}: {r.committed:.4g} -> {r.rerun:.4g} "
                     f"(2 standard errors: {2 * r.spread:.3g})")
    if len(differ) > 8:
        lines.append(f"  ... and {len(differ) - 8} more (see {COMPARE_FILE})")
    if len(findings):
        changed = findings[~findings["same"]]
        lines.append(f"findings of the thesis: {len(findings) - len(changed)} of {len(findings)} judged the same")
        for r in changed.itertuples():
            lines.append(f"  changed: table {r.table}: {r.claim}: {r.committed} -> {r.rerun}")
    return "\n".join(lines)
