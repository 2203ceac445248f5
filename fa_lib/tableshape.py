"""A reproduced table in the thesis's own shape: its rows and columns, each cell ``ours / thesis``.

One function, :func:`thesis_shape`, used by the book's generated chapter pages (:mod:`fa_lib.bookgen`,
Markdown) and by the notebooks (:attr:`fa_lib.experiments.registry.ThesisResult.display`, a DataFrame of
text), so that a table reads the same on both. Our value is printed at the thesis cell's precision (its
number of decimals); a cell the thesis has and we do not reads ``— / thesis``; columns and rows only we
have follow the thesis's, each column of ours at one precision chosen from its magnitude. No number is
produced here: every value printed is one given.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

MISSING = "—"


def decimals(text: Any) -> int | None:
    """Decimal places of a thesis value as printed ("46.2" -> 1, "3" -> 0); None when not a number."""
    text = "" if text is None else str(text).strip()
    if not re.fullmatch(r"[-+]?\d+(\.\d+)?", text):
        return None
    return len(text.split(".")[1]) if "." in text else 0


def number(value: Any) -> float | None:
    """``value`` as a float, None when it is empty, NaN or not a number."""
    if value is None:
        return None
    try:
        out = float(str(value).strip())
    except ValueError:
        return None
    return None if math.isnan(out) else out


def readable(value: Any) -> str:
    """A value with no thesis counterpart at a readable precision (integers as such, 1-2 decimals
    above 1, two significant digits below); text is returned as it is."""
    x = number(value)
    if x is None:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def column_decimals(values: list[Any]) -> int | None:
    """One precision for a column of ours, from its largest magnitude (so it reads evenly: 11.6 and
    8.8, not 11.6 and 8.76); None for integers or text."""
    numbers = [x for x in (number(v) for v in values) if x is not None and not math.isinf(x)]
    if not numbers or all(x == int(x) for x in numbers):
        return None
    top = max(abs(x) for x in numbers)
    return 0 if top >= 100 else 1 if top >= 10 else 2 if top >= 0.1 else 3


def ours_at(value: Any, thesis_text: Any) -> str:
    """Our value at the thesis cell's precision (its number of decimals), else :func:`readable`."""
    x, places = number(value), decimals(thesis_text)
    if x is None:
        return readable(value)
    if places is None or math.isinf(x):
        return readable(x)
    return f"{x:.{places}f}"


@dataclass
class ShapedTable:
    """``frame``: text cells, index = row labels, columns = column labels (the thesis's first);
    ``extra_rows`` / ``extra_columns``: the labels only we have; ``ours_only``: the thesis has no
    cell of this table at all."""

    frame: pd.DataFrame
    extra_rows: list[str]
    extra_columns: list[str]
    ours_only: bool


def thesis_shape(thesis_cells: pd.DataFrame, cells: pd.DataFrame | None) -> ShapedTable:
    """``thesis_cells`` (``row, column, value``: the thesis's cells of one table, in its order) and
    ``cells`` (``row, column, reproduced``: ours; None for none) -> the table in the thesis's shape."""
    thesis_cells = thesis_cells.astype({"row": str, "column": str})
    cells = (pd.DataFrame(columns=["row", "column", "reproduced"]) if cells is None
             else cells.astype({"row": str, "column": str}))
    paper = {(r.row, r.column): str(r.value).strip() for r in thesis_cells.itertuples()
             if str(r.value).strip() not in ("", "nan")}
    ours = {(r.row, r.column): r.reproduced for r in cells.itertuples() if readable(r.reproduced) != ""}
    t_rows, t_cols = list(dict.fromkeys(thesis_cells["row"])), list(dict.fromkeys(thesis_cells["column"]))
    x_rows = [r for r in dict.fromkeys(cells["row"]) if r not in t_rows]
    x_cols = [c for c in dict.fromkeys(cells["column"]) if c not in t_cols]
    columns = t_cols + x_cols
    places = {c: column_decimals([v for (_, col), v in ours.items() if col == c]) for c in columns}

    def cell(row: str, column: str) -> str:
        mine = ours.get((row, column))
        if (row, column) in paper:
            return f"{ours_at(mine, paper[row, column]) if mine is not None else MISSING} / {paper[row, column]}"
        if mine is None:
            return ""
        x = number(mine)
        if x is None or places[column] is None or math.isinf(x):
            return readable(mine)
        return f"{x:.{places[column]}f}"

    rows = t_rows + x_rows
    frame = pd.DataFrame([[cell(r, c) for c in columns] for r in rows], index=pd.Index(rows, name=""),
                         columns=columns, dtype=object)
    return ShapedTable(frame, x_rows, x_cols, ours_only=not t_rows)
