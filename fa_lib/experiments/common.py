"""What every chapter's experiments share: yaw bins, thresholds, the thesis's numbers, and writers
that put a result into ``results/`` with the chapter context's provenance."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fa_lib import metrics
from fa_lib.results import paper_table

#: the |yaw| bins of the LS3D-W Balanced tables (4.2-4.4, 5.10, 5.13), labelled as in the thesis
YAW_BIN_LABELS = ("[0-30]", "[30-60]", "[60-90]")
#: AUC@7%: the area under the CED up to 7% NME (section 4.1.3), the measure of most tables
AUC_THRESHOLD = 0.07


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """Up to ``count`` distinct indices spread evenly over ``range(total)`` (first and last included): the
    faces a check reads from a large set."""
    if total < 1 or count < 1:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64))


def yaw_bin_label(index: int) -> str:
    return YAW_BIN_LABELS[index]


def auc_by_bin(errors: np.ndarray, bins: np.ndarray, threshold: float = AUC_THRESHOLD) -> dict[str, float]:
    """AUC@``threshold`` (%) per |yaw| bin (keys :data:`YAW_BIN_LABELS`) and over all images (``all``)."""
    errors, bins = np.asarray(errors), np.asarray(bins)
    out = {label: 100.0 * metrics.auc_at(errors[bins == b], threshold) if np.any(bins == b) else float("nan")
           for b, label in enumerate(YAW_BIN_LABELS)}
    out["all"] = 100.0 * metrics.auc_at(errors, threshold)
    return out


def nme_by_bin(errors: np.ndarray, bins: np.ndarray) -> dict[str, float]:
    """Mean NME (%) per |yaw| bin and over all images."""
    errors, bins = np.asarray(errors), np.asarray(bins)
    out = {label: 100.0 * float(np.mean(errors[bins == b])) if np.any(bins == b) else float("nan")
           for b, label in enumerate(YAW_BIN_LABELS)}
    out["all"] = 100.0 * float(np.mean(errors))
    return out


@functools.lru_cache(maxsize=None)
def _paper(table_id: str) -> pd.DataFrame:
    return paper_table(table_id)


def paper_value(table_id: str, row: str, column: str) -> float:
    """The thesis's number in cell (row, column) of Table ``table_id``; ``KeyError`` naming the cell
    when the thesis has no such cell."""
    t = _paper(str(table_id))
    hit = t[(t["row"] == row) & (t["column"] == column)]
    if hit.empty:
        raise KeyError(f"thesis table {table_id} has no cell ({row!r}, {column!r})")
    return float(hit["paper"].iloc[0])


def paper_mean_over_bins(table_id: str, row: str) -> float:
    """The thesis's value of ``row`` averaged over its three |yaw| bins (Tables 4.2-4.4)."""
    return float(np.mean([paper_value(table_id, row, b) for b in YAW_BIN_LABELS]))


def long_table(values: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """``{row: {column: value}}`` -> the long frame (row, column, reproduced) that results take."""
    return pd.DataFrame([{"row": r, "column": c, "reproduced": float(v)}
                         for r, cols in values.items() for c, v in cols.items()])


def cell(df: pd.DataFrame, row: str, column: str, value: str = "reproduced") -> float:
    """One cell of a long table."""
    hit = df[(df["row"] == row) & (df["column"] == column)]
    if hit.empty:
        raise KeyError(f"no cell ({row!r}, {column!r})")
    return float(hit[value].iloc[0])


def jsonable(value: Any) -> Any:
    """Tuples, numpy scalars and paths in a provenance record, as JSON-friendly values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def learning_curves(histories: Mapping[str, list[Mapping[str, Any]]], metric: str = "val_nme",
                    scale: float = 100.0) -> pd.DataFrame:
    """One row per (network, validation point) of the trainers' histories: ``step``, ``train_s``
    (cumulative training seconds, validation excluded) and ``value`` (``metric`` times ``scale``;
    the validation NME in %, by default). Networks without the metric are left out."""
    rows = []
    for name, history in histories.items():
        seconds = 0.0
        for record in history:
            seconds += float(record.get("epoch_time_s", 0.0))
            if record.get(metric) is not None:
                rows.append({"network": name, "step": int(record["step"]), "train_s": round(seconds, 1),
                             "value": scale * float(record[metric])})
    return pd.DataFrame(rows, columns=["network", "step", "train_s", "value"])


def curve_summary(curves: pd.DataFrame, tolerance: float = 0.05) -> pd.DataFrame:
    """Per network: steps trained, first and last validation value, the best one, and where the
    curve flattened: the first step whose value is within ``tolerance`` (relative) of the final value
    (a curve that only reaches it at its last point was still falling)."""
    rows = []
    for name, part in curves.groupby("network", sort=False):
        part = part.sort_values("step")
        final = float(part["value"].iloc[-1])
        close = part[part["value"] <= final * (1 + tolerance)]
        flat = int(close["step"].iloc[0])
        rows.append({"network": name, "steps": int(part["step"].iloc[-1]),
                     "train time (s)": float(part["train_s"].iloc[-1]), "first value": float(part["value"].iloc[0]),
                     "final value": final, "best value": float(part["value"].min()),
                     f"within {tolerance:.0%} of final from step": flat,
                     "still falling at the end": bool(flat == int(part["step"].iloc[-1]) and len(part) > 1)})
    return pd.DataFrame(rows)


def reader_tables() -> None:
    """In a notebook: show every DataFrame with an empty cell as "—" instead of "NaN" (a missing
    value is not a number of ours; the book's pages must never show NaN). No-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def html(frame: pd.DataFrame) -> str:
        return frame.to_html(na_rep="—", max_rows=pd.get_option("display.max_rows"),
                             max_cols=pd.get_option("display.max_columns"))

    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, html)
