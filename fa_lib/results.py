"""Writing tables, figures and provenance into ``results/``.

``results/tables/table_<thesis id>.csv`` has the columns ``row, column, paper, reproduced``; the row and
column labels are exactly those of the thesis table (``fa_lib/thesis_tables.csv``) so paper and
reproduction sit side by side, and rows the thesis does not have are kept with an empty ``paper``.
``table_<id>.json`` beside it records how the numbers were obtained: profile, dataset and its size,
seed, git commit, library versions, device, wall time and training budget. Figures go to
``results/figures/fig_<id>.png`` with the same kind of JSON. Every write is atomic (``fa_lib.atomic``:
temporary file in the same folder, then ``os.replace``) so a crash never leaves half a table.
"""
from __future__ import annotations

import datetime as _dt
import functools
import io
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from fa_lib.atomic import atomic_write_bytes, atomic_write_text  # re-exported: other modules import them from here
from fa_lib.paths import PACKAGE_DIR, PUBLISHED_ENV, RESULTS_ENV, project_root
from fa_lib.profiles import Profile

THESIS_TABLES_CSV = PACKAGE_DIR / "thesis_tables.csv"
TABLE_COLUMNS = ["row", "column", "paper", "reproduced"]


def published_results_dir() -> Path:
    """Where results made elsewhere (another notebook, ``fa-lib bench``) are read from.

    ``fa-lib reproduce`` points ``$FA_LIB_RESULTS`` of a running notebook at an empty staging folder that
    is moved into the results tree only when the notebook succeeds; it names that tree in
    ``$FA_LIB_RESULTS_PUBLISHED``.  Outside ``reproduce`` this is :func:`results_dir`."""
    env = os.environ.get(PUBLISHED_ENV)
    return Path(env) if env else results_dir()


def find_result(relative: str | os.PathLike) -> Path | None:
    """``relative`` (e.g. ``tables/bench_xnor.csv``) in this run's results, else in the published tree,
    else in the checkout's committed ``results/`` (a smoke run's own tree starts empty)."""
    roots = [results_dir(), published_results_dir()]
    try:
        roots.append(project_root() / "results")
    except FileNotFoundError:
        pass
    for root in roots:
        path = root / relative
        if path.is_file():
            return path
    return None


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """Root of the results tree: the argument, else ``$FA_LIB_RESULTS``, else the checkout's
    ``results/`` (found upwards from the working directory, so a notebook run by hand from
    ``notebooks/`` writes to the same place as ``fa-lib reproduce``), else ``./results``."""
    if override is not None:
        return Path(override)
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    try:
        return project_root() / "results"
    except FileNotFoundError:
        return Path("results")


@functools.lru_cache(maxsize=1)
def thesis_tables() -> pd.DataFrame:
    """Every number of the thesis's 29 tables, long format: table, metric, row, column, value, note."""
    return pd.read_csv(THESIS_TABLES_CSV, dtype={"table": str})


def paper_table(table_id: str) -> pd.DataFrame:
    """The thesis's values for one table (``"4.2"``), columns ``row, column, paper, metric, note``.

    Raises ``KeyError`` for a table id the thesis does not have.
    """
    table_id = str(table_id)
    df = thesis_tables()
    sub = df[df["table"] == table_id]
    if sub.empty:
        known = ", ".join(sorted(df["table"].unique(), key=lambda s: [int(p) for p in s.split(".")]))
        raise KeyError(f"thesis has no table {table_id!r}; known tables: {known}")
    out = sub.rename(columns={"value": "paper"})[["row", "column", "paper", "metric", "note"]]
    return out.reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_DIR,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ["fa-lib", "torch", "numpy", "scipy", "opencv-python-headless", "scikit-image", "pandas",
             "matplotlib"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


#: the instruction-set extensions that decide which kernels and precisions a CPU runs
ISA_FLAGS = ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_bf16", "amx_tile", "amx_bf16")


def machine_info() -> dict[str, Any]:
    """The machine a result was measured on: CPU model, the ISA extensions of :data:`ISA_FLAGS` it
    has, core count and torch's thread count now (a difference between two runs can be traced to it)."""
    info = dict(_cpu_info())
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


@functools.lru_cache(maxsize=1)
def _cpu_info() -> dict[str, Any]:
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine() or None,
            "isa": [f for f in ISA_FLAGS if f in flags], "platform": platform.platform(), "cpu_count": os.cpu_count()}


def provenance(*, profile: Profile | str, dataset: str, seed: int | None,
               dataset_size: int | None = None, training_budget: Any = None,
               wall_time_s: float | None = None, device: str = "cpu",
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record stored beside every table and figure."""
    prof_name = profile.name if isinstance(profile, Profile) else str(profile)
    record: dict[str, Any] = {
        "profile": prof_name,
        "dataset": dataset,
        "dataset_size": dataset_size,
        "seed": seed,
        "git_commit": git_commit(),
        "library_versions": library_versions(),
        "device": device,
        "machine": machine_info(),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
        "training_budget": training_budget,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(dict(extra))
    return record


def merge_with_paper(table_id: str, reproduced: pd.DataFrame) -> pd.DataFrame:
    """Join reproduced values onto the thesis's rows by (row, column) label.

    Every thesis cell appears (``reproduced`` empty where we have nothing: paper-only baselines such
    as other authors' methods); reproduced cells that the thesis lacks are appended with an empty
    ``paper``. Labels are matched exactly, so a typo shows up as an extra row rather than silently.
    """
    missing = {"row", "column", "reproduced"} - set(reproduced.columns)
    if missing:
        raise ValueError(f"table {table_id}: reproduced frame lacks columns {sorted(missing)}")
    rep = reproduced[["row", "column", "reproduced"]].copy()
    rep["row"] = rep["row"].astype(str)
    rep["column"] = rep["column"].astype(str)
    if rep.duplicated(["row", "column"]).any():
        dups = rep[rep.duplicated(["row", "column"], keep=False)][["row", "column"]].values.tolist()
        raise ValueError(f"table {table_id}: duplicate (row, column) cells {dups}")
    try:
        paper = paper_table(table_id)[["row", "column", "paper"]]
    except KeyError:
        paper = pd.DataFrame(columns=["row", "column", "paper"])
    merged = paper.merge(rep, on=["row", "column"], how="outer", sort=False)
    # keep the thesis's row order, then extra rows in the order given
    order = {k: i for i, k in enumerate(zip(paper["row"], paper["column"]))}
    extra_order = {k: len(order) + i for i, k in enumerate(zip(rep["row"], rep["column"]))}
    merged["_o"] = [order.get(k, extra_order.get(k)) for k in zip(merged["row"], merged["column"])]
    return merged.sort_values("_o").drop(columns="_o").reset_index(drop=True)[TABLE_COLUMNS]


def write_table(table_id: str, df: pd.DataFrame, *, profile: Profile | str, dataset: str,
                dataset_size: int | None, seed: int | None, training_budget: Any = None,
                extra: Mapping[str, Any] | None = None, wall_time_s: float | None = None,
                device: str = "cpu", caption: str | None = None,
                results_root: str | os.PathLike | None = None) -> Path:
    """Write ``results/tables/table_<id>.csv`` (row, column, paper, reproduced) and its ``.json``.

    ``df`` holds the reproduced cells (columns ``row, column, reproduced``); paper values come from the
    thesis tables. Returns the CSV path.
    """
    table_id = str(table_id)
    merged = merge_with_paper(table_id, df)
    root = results_dir(results_root) / "tables"
    stem = "table_" + table_id.replace("/", "_")
    buf = io.StringIO()
    merged.to_csv(buf, index=False, float_format="%.6g")
    csv_path = atomic_write_text(root / f"{stem}.csv", buf.getvalue())
    record = provenance(profile=profile, dataset=dataset, seed=seed, dataset_size=dataset_size,
                        training_budget=training_budget, wall_time_s=wall_time_s, device=device,
                        extra=extra)
    record["table"] = table_id
    if caption:
        record["caption"] = caption
    atomic_write_text(root / f"{stem}.json", json.dumps(record, indent=2, default=str) + "\n")
    return csv_path


def write_figure(fig, fig_id: str, *, profile: Profile | str, dataset: str, seed: int | None,
                 extra: Mapping[str, Any] | None = None, dpi: int = 110, caption: str | None = None,
                 results_root: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure to ``results/figures/fig_<id>.png`` with a ``.json`` provenance."""
    root = results_dir(results_root) / "figures"
    stem = "fig_" + str(fig_id).replace("/", "_")
    buf = io.BytesIO()
    # metadata without dates so that an unchanged figure gives the same bytes
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    png_path = atomic_write_bytes(root / f"{stem}.png", buf.getvalue())
    record = provenance(profile=profile, dataset=dataset, seed=seed, extra=extra)
    record["figure"] = str(fig_id)
    if caption:
        record["caption"] = caption
    atomic_write_text(root / f"{stem}.json", json.dumps(record, indent=2, default=str) + "\n")
    return png_path


def read_table(table_id: str, results_root: str | os.PathLike | None = None) -> pd.DataFrame:
    path = results_dir(results_root) / "tables" / f"table_{table_id}.csv"
    if not path.exists():
        raise FileNotFoundError(f"no reproduced table {table_id}: {path} does not exist "
                                "(run `fa-lib reproduce` for its chapter)")
    return pd.read_csv(path, dtype={"row": str, "column": str})
