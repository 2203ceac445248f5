"""Render the "paper vs reproduced" tables of the book from ``results/`` (run before every book build).

For every thesis chapter 3-6 this writes ``book/_generated/ch<N>_tables.md``, a MyST snippet that the
chapter page includes (``{include} _generated/ch4_tables.md``). The snippet holds one table per thesis
table of the chapter (the 29 tables of ``fa_lib/thesis_tables.csv``), in the thesis's order, with

- the caption (the provenance's ``caption`` if the reproduction gave one, else the thesis caption);
- the thesis's value and the reproduced value of every cell side by side, read from
  ``results/tables/table_<id>.csv`` (columns ``row, column, paper, reproduced``, written by
  :mod:`fa_lib.results`); rows the thesis does not have are shown with an empty paper value;
- a provenance line from ``table_<id>.json`` (profile, dataset and size, seed, commit, device, wall
  time, training budget) and, unless the profile is ``full``, a warning that the numbers come from the
  embedded synthetic benchmark at reduced scale;
- "not reproduced yet" where no CSV exists or a cell has no reproduced value.

Result tables the thesis does not have (ids such as ``4.1.3_noise``) follow as "additional tables" with
their values and provenance only, then the chapter's figures (``results/figures/fig_<chapter>[._]*.png``
with their JSON). ``book/_generated/data_results.md`` (included by the data page) holds the tables and
figures whose id starts with ``data``, ``book/_generated/status.md`` (included by the introduction)
counts what each chapter reproduces, and ``book/_generated/builders.md`` (also in the introduction) lists
every table and figure the project regenerates with the function that builds it (the registry of
:mod:`fa_lib.experiments.registry`; ``fa-lib where <id>`` prints the same). No number is ever produced here: every value printed is read from
the thesis tables or from results/.

Usage, from the repository root: ``python -m fa_lib.bookgen [--results results] [--out book/_generated]
[--require-executed]`` (the last option fails early, with the command to run, when an executed notebook
that _toc.yml lists is missing).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fa_lib.compare import COMPARE_FILE, FINDINGS_FILE
from fa_lib.experiments import registry
from fa_lib.experiments.verdict import Verdict
from fa_lib.tableshape import readable as _readable, thesis_shape

PACKAGE_DIR = Path(__file__).resolve().parent
THESIS_TABLES_CSV = PACKAGE_DIR / "thesis_tables.csv"
CHAPTERS = {3: "CALE: convolutional aggregation of local evidence",
            4: "FAN and the LS3D-W dataset",
            5: "Hierarchical binary networks",
            6: "Super-FAN: low-resolution face alignment"}
REQUIRED_COLUMNS = ("row", "column", "paper", "reproduced")
NOT_REPRODUCED = "*not reproduced yet*"

#: Captions of the thesis tables, as printed in the thesis (used when the provenance gives none).
THESIS_CAPTIONS = {
    "3.3": "Performance analysis of CALE on AFLW-PIFA using NME (%). Results are reported on both 21 and 34 "
           "points. Results marked with (vis) are calculated on visible points only, while the rest are "
           "calculated on both occluded and visible landmarks.",
    "3.4": "NME-based (%) comparison on AFLW-PIFA on 21 points (visible landmarks only). The results for "
           "CFSS, ERT and SDM are taken from [130].",
    "3.5": "NME-based (%) comparison on AFLW-PIFA evaluated on 34 points (visible landmarks only). The "
           "results for PIFA, RCPR and PAWF are taken from [54].",
    "3.6": "NME-based (%) performance on Cats&Dogs on 22 points.",
    "4.1": "AUC (calculated for a threshold of 7%) on all major 2D face alignment datasets. MDM, CFSS and "
           "TCDCN were evaluated using ground truth bounding boxes and the openly available code.",
    "4.2": "AUC (calculated for a threshold of 7%) on the LS3D-W Balanced for different yaw angles.",
    "4.3": "AUC on the LS3D-W Balanced for different levels of initialization noise. The network was "
           "trained with a noise level of up to 20% (the noise is drawn from a uniform distribution that "
           "perturbs the bounding box shape).",
    "4.4": "AUC on the LS3D-W Balanced for various network sizes. Between 12-24M parameters, performance "
           "remains almost the same.",
    "5.1": "AUC@7% on LS3D-W-Balanced dataset for real-valued and binary bottleneck blocks within the HG "
           "network.",
    "5.2": "AUC-based comparison of different blocks on LS3D-W-Balanced dataset. # params refers to the "
           "number of parameters of the whole network.",
    "5.3": "AUC-based performance on LS3D-W-Balanced dataset for binary blocks: the # parameters of the "
           "original bottleneck are increased to match the # parameters of the proposed block. This firstly "
           "gives rise to the Wider block and its variant without the 1×1 Convolutions.",
    "5.4": "AUC-based performance on LS3D-W-Balanced dataset for binary blocks: the # parameters of the "
           "proposed block are decreased to match the # parameters of the bottleneck.",
    "5.5": "AUC-based performance on LS3D-W-Balanced dataset for real-valued blocks: Our block is compared "
           "with a wider version of the original bottleneck so that both blocks have similar # parameters.",
    "5.6": "The effect of using augmentation when training our binary network in terms of AUC-based "
           "performance on LS3D-W-Balanced dataset.",
    "5.7": "The effect of using different losses (Sigmoid vs L2) when training our binary network in terms "
           "of AUC-based performance on LS3D-W-Balanced dataset.",
    "5.8": "The effect of using different pooling methods when training our binary network in terms of "
           "AUC-based performance on LS3D-W-Balanced dataset.",
    "5.9": "The effect of using ReLUs when training our binary network in terms of AUC-based performance on "
           "LS3D-W-Balanced dataset.",
    "5.10": "NME-based (%) comparison on AFLW test set. The evaluation is done on the test set used in [78].",
    "5.11": "NME-based (%) comparison on AFLW-PIFA evaluated on visible landmarks only. The results for "
            "PIFA, RCPR and PAWF are taken from [54].",
    "5.12": "NME-based (%) based comparison on AFLW-PIFA evaluated on all 34 points, both visible and "
            "occluded.",
    "5.13": "NME-based (%) based comparison on AFLW2000-3D evaluated on all 68 points, both visible and "
            "occluded. The results for RCPR, ESR and SDM are taken from [132].",
    "5.14": "Comparison between HG and Improved HG on the LS3D-W dataset. Both networks are built with our "
            "proposed binarized block.",
    "5.15": "Accuracy of stacked networks on LS3D-W dataset. All networks are built with our proposed "
            "binarized block.",
    "5.16": "Results on 300-W (Indoor&Outdoor). The pixel acc., mean acc. and mean IU are computed as in [66].",
    "6.1": "PSNR- and SSIM-based super-resolution performance on LS3D-W balanced dataset across pose (higher "
           "is better). The results are not indicative of visual quality. See Fig. 6.4.",
    "6.2": "AUC across pose (calculated for a threshold of 10%; see [11]) on our LS3D-W balanced test set. "
           "The results, in this case, are indicative of visual quality. See Fig. 6.4.",
    "6.3": "PSNR and SSIM when training our generator with L2 and L1 pixel-losses.",
    "6.4": "PSNR and SSIM for “no-skip” and “with skip” versions. The “no-skip” version indicates the "
           "absence of the long skip connection (the network depicted in Fig. 6.3a), while the “with skip” "
           "version adds two new long skip connections, similarly to [38].",
    "6.5": "AUC across pose (on our LS3D-W balanced test set) for L2 and L1 heatmap losses.",
}


def chapter_of(item_id: str) -> int | None:
    """Thesis chapter of a table or figure id (``"4.2"``, ``"4_1_3_ced"`` -> 4); None for other ids."""
    match = re.match(r"^(\d+)[._]", item_id)
    return int(match.group(1)) if match else None


def section_of(item_id: str) -> int | str | None:
    """Where a result goes in the book: its thesis chapter (3-6), ``"data"`` for ids starting with
    ``data`` (the data page), None for anything else (e.g. chapter 1 figures shown by a notebook)."""
    if re.match(r"^data([._]|$)", item_id):
        return "data"
    chapter = chapter_of(item_id)
    return chapter if chapter in CHAPTERS else None


def load_thesis_tables(path: Path = THESIS_TABLES_CSV) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"thesis tables file {path} is missing")
    # values stay strings: they are printed exactly as the thesis prints them
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _escape(text: Any) -> str:
    """Make a label safe inside a Markdown table cell."""
    text = "" if text is None else str(text)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("[", "\\[").replace("*", "\\*").replace("_", "\\_")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def format_value(value: Any) -> str:
    """Print a reproduced value without inventing precision: numbers to 4 significant digits at most."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
    else:
        number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


@dataclass
class ReproducedTable:
    """One ``results/tables/table_<id>.csv`` with its provenance (``None`` when the JSON is missing)."""
    table_id: str
    cells: pd.DataFrame
    provenance: dict | None
    csv_path: Path


def read_reproduced(table_id: str, tables_dir: Path) -> ReproducedTable | None:
    """Read one reproduced table, or None when its CSV does not exist."""
    csv_path = Path(tables_dir) / f"table_{table_id}.csv"
    if not csv_path.is_file():
        return None
    cells = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing}; expected {list(REQUIRED_COLUMNS)}")
    json_path = csv_path.with_suffix(".json")
    provenance = None
    if json_path.is_file():
        try:
            provenance = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{json_path}: not valid JSON ({exc})") from exc
    return ReproducedTable(table_id, cells, provenance, csv_path)


def reproduced_table_ids(tables_dir: Path) -> list[str]:
    ids = [p.stem[len("table_"):] for p in Path(tables_dir).glob("table_*.csv")]
    return sorted(ids, key=registry.id_sort_key)


def _short_date(text: Any) -> str:
    return str(text)[:10]


def _machine_words(provenance: dict) -> str | None:
    """"cpu (AMD EPYC, 2 cores)" from the device and the machine record (older records: device only)."""
    device = provenance.get("device")
    machine = provenance.get("machine") if isinstance(provenance.get("machine"), dict) else {}
    cpu, cores = machine.get("cpu"), machine.get("cpu_count")
    inside = ", ".join(str(p) for p in (cpu, f"{cores} cores" if cores else None) if p)
    if device and inside:
        return f"{device} ({inside})"
    return device or inside or None


def provenance_line(provenance: dict | None) -> str:
    """One short line saying how the numbers were obtained: profile, data and size, seed, device and
    CPU, wall time, commit, date (only the fields that are present; the training budget and the
    rest go to :func:`provenance_details`)."""
    if provenance is None:
        return "Provenance file missing: how these numbers were obtained is unknown."
    parts = []
    if provenance.get("profile"):
        parts.append(f"profile **{provenance['profile']}**")
    dataset = provenance.get("dataset")
    if dataset:
        size = provenance.get("dataset_size")
        parts.append(_escape(dataset) + (f" ({size} samples)" if size not in (None, "") else ""))
    if provenance.get("seed") is not None:
        parts.append(f"seed {provenance['seed']}")
    machine = _machine_words(provenance)
    if machine:
        parts.append(_escape(machine))
    if provenance.get("wall_time_s") is not None:
        parts.append(f"wall time {_readable(provenance['wall_time_s'])} s")
    if provenance.get("git_commit"):
        parts.append(f"commit `{str(provenance['git_commit'])[:12]}`")
    if provenance.get("created"):
        parts.append(_short_date(provenance["created"]))
    return "Reproduced with " + " · ".join(parts) + "." if parts else "Provenance file is empty."


def _setting_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting_value(v) for v in value) if value else "—"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_setting_value(v)}" for k, v in value.items())
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _readable(value)
    return str(value)


def provenance_details(provenance: dict | None) -> str:
    """A collapsed block (sphinx-design dropdown) with the training budget and the machine as small
    tables; empty when the provenance has neither."""
    if not provenance:
        return ""
    sections = []
    budget = provenance.get("training_budget")
    if isinstance(budget, dict) and budget and all(isinstance(v, dict) for v in budget.values()):
        # one budget per network: settings as rows, networks as columns
        keys = list(dict.fromkeys(k for v in budget.values() for k in v))
        head = "| setting | " + " | ".join(_escape(n) for n in budget) + " |"
        rows = "\n".join(f"| {_escape(k)} | " + " | ".join(
            _escape(_setting_value(v.get(k))) for v in budget.values()) + " |" for k in keys)
        sections.append("**Training budget**\n\n" + head + "\n|:--|" + ":--|" * len(budget) + "\n" + rows)
    elif isinstance(budget, dict) and budget:
        rows = "\n".join(f"| {_escape(k)} | {_escape(_setting_value(v))} |" for k, v in budget.items())
        sections.append("**Training budget**\n\n| setting | value |\n|:--|:--|\n" + rows)
    elif budget not in (None, "", {}):
        sections.append(f"**Training budget**: {_escape(budget)}")
    machine = provenance.get("machine")
    if isinstance(machine, dict) and machine:
        rows = "\n".join(f"| {_escape(k)} | {_escape(_setting_value(v))} |" for k, v in machine.items())
        sections.append("**Machine**\n\n| | |\n|:--|:--|\n" + rows)
    versions = provenance.get("library_versions")
    if isinstance(versions, dict) and versions:
        sections.append("**Libraries**: " + _escape(", ".join(f"{k} {v}" for k, v in versions.items())))
    if not sections:
        return ""
    return ":::{dropdown} Training budget and machine\n" + "\n\n".join(sections) + "\n:::"


def _scale_warning(provenance: dict | None) -> str | None:
    """The label every non-full result carries (smoke and quick results are always labelled as such)."""
    profile = (provenance or {}).get("profile")
    if profile == "full":
        return None
    if profile == "smoke":
        text = ("These numbers come from the **smoke** profile, which only checks that the code runs (tiny "
                "data, tiny models, seconds of training): do not read anything into them.")
    else:
        text = (f"These numbers come from the **{profile or 'unknown'}** profile: the embedded synthetic "
                "benchmark, not the thesis's datasets, with reduced data and, where a network is trained, "
                "reduced models and training. Compare trends (which variant wins, how the error grows with "
                "pose), not absolute values.")
    return ":::{warning}\n" + text + "\n:::"


#: sphinx-design badge colour of each verdict outcome
OUTCOME_BADGES = {"holds": "success", "reversed": "danger", "within noise": "secondary", "single seed": "info",
                  "not measurable": "warning"}


def render_verdicts(provenance: dict | None) -> str:
    """The thesis findings a table checks, each with its coloured outcome (holds / reversed / within
    noise / single seed / not measurable at this scale) and the numbers compared."""
    records = (provenance or {}).get("verdicts") or []
    lines = []
    for record in records:
        try:
            verdict = Verdict.from_dict(record)
        except (TypeError, ValueError):
            continue
        lines.append(f"- {{bdg-{OUTCOME_BADGES[verdict.outcome]}}}`{verdict.label}` {verdict.details()}")
    return "**The thesis's findings, judged on our numbers:**\n\n" + "\n".join(lines) if lines else ""


def shaped_table(thesis_cells: pd.DataFrame, cells: pd.DataFrame | None) -> str:
    """The table in the thesis's shape (:func:`fa_lib.tableshape.thesis_shape`) as Markdown: ours-only
    columns marked *(ours)*, ours-only rows under a separating row."""
    grid = thesis_shape(thesis_cells, cells)
    columns = list(grid.frame.columns)
    names = [_escape(c) + (" *(ours)*" if c in grid.extra_columns and not grid.ours_only else "") for c in columns]
    lines = ["| | " + " | ".join(names) + " |", "|:--|" + "--:|" * len(columns)]
    for row, values in grid.frame.iterrows():
        if row in grid.extra_rows and row == grid.extra_rows[0] and not grid.ours_only:
            lines.append("| ***ours only (not in the thesis):*** |" + " |" * len(columns))
        lines.append(f"| {_escape(row)} | " + " | ".join(_escape(v) for v in values) + " |")
    return "\n".join(lines)


def render_table(table_id: str, thesis: pd.DataFrame, reproduced: ReproducedTable | None) -> str:
    """MyST for one table: heading, caption, status, the findings' verdicts, the table in the thesis's
    shape (ours / thesis), the provenance line and a collapsed block with the training budget."""
    paper_cells = thesis[thesis["table"] == table_id]
    metric = ", ".join(dict.fromkeys(m for m in paper_cells["metric"] if m))
    provenance = reproduced.provenance if reproduced else None
    caption = (provenance or {}).get("caption") or THESIS_CAPTIONS.get(table_id, "")
    heading = f"### Table {table_id}" + (f" ({metric})" if metric else "")
    out = [f"({'table-' + table_id.replace('.', '-')})=", heading, "", f"*{_escape(caption)}*" if caption else ""]
    if reproduced is None:
        out += ["", f"**Not reproduced yet**: no `results/tables/table_{table_id}.csv`. The thesis's values "
                "(each cell: ours / thesis):", ""]
        out.append(shaped_table(paper_cells, None) if len(paper_cells) else
                   "*(the thesis tables file has no cells for this table)*")
        return "\n".join(out) + "\n"
    if paper_cells.empty:
        return _render_additional_table(table_id, caption, reproduced)
    cells = reproduced.cells
    thesis_keys = {(str(r.row), str(r.column)) for r in paper_cells.itertuples()}
    done = {(str(r.row), str(r.column)) for r in cells.itertuples() if format_value(r.reproduced) != ""}
    n_done = len(done & thesis_keys)
    status = (f"**Reproduced**: {n_done} of {len(thesis_keys)} thesis cells" if done else
              "**Not reproduced yet**: the results file has no reproduced values")
    out += ["", status + " (each cell: ours / thesis; — where we have no number: rows of other authors' "
            f"methods or variants not run; from `results/tables/table_{table_id}.csv`).", ""]
    verdicts = render_verdicts(provenance)
    if verdicts:
        out += [verdicts, ""]
    out += [shaped_table(paper_cells, cells), "", provenance_line(provenance)]
    details = provenance_details(provenance)
    if details:
        out += ["", details]
    warning = _scale_warning(provenance) if done else None
    if warning:
        out += ["", warning]
    return "\n".join(out) + "\n"


def _render_additional_table(table_id: str, caption: str, reproduced: ReproducedTable) -> str:
    """A result table the thesis does not have (an extra analysis): its values in rows and columns,
    its verdicts and provenance."""
    out = [f"({'table-' + table_id.replace('.', '-')})=", f"### Additional table {_escape(table_id)}", "",
           (f"*{_escape(caption)}* " if caption else "") + f"(Not a thesis table; from "
           f"`results/tables/table_{table_id}.csv`.)", ""]
    verdicts = render_verdicts(reproduced.provenance)
    if verdicts:
        out += [verdicts, ""]
    empty = pd.DataFrame(columns=["table", "metric", "row", "column", "value", "note"])
    out += [shaped_table(empty, reproduced.cells), "", provenance_line(reproduced.provenance)]
    details = provenance_details(reproduced.provenance)
    if details:
        out += ["", details]
    warning = _scale_warning(reproduced.provenance)
    if warning:
        out += ["", warning]
    return "\n".join(out) + "\n"


def _render_figures(section: int | str, figures_dir: Path, snippet_dir: Path) -> str:
    figures = sorted((p for p in Path(figures_dir).glob("fig_*.png")
                      if section_of(p.stem[len("fig_"):]) == section), key=lambda p: registry.id_sort_key(p.stem[4:]))
    if not figures:
        return ""
    out = ["### Reproduced figures" if section != "data" else "### Figures", ""]
    for png in figures:
        fig_id = png.stem[len("fig_"):]
        json_path = png.with_suffix(".json")
        provenance = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else None
        caption = (provenance or {}).get("caption") or f"Figure {fig_id}."
        # MyST resolves an included file's image paths against the *including* page, and the pages that
        # include these snippets sit in the snippets' parent folder (book/)
        rel = Path(os.path.relpath(png.resolve(), snippet_dir.resolve().parent)).as_posix()
        out += [f":::{{figure}} {rel}", f":name: fig-{fig_id.replace('.', '-')}", "",
                f"{_escape(caption)} {provenance_line(provenance)}", ":::", ""]
    return "\n".join(out)


def render_chapter(chapter: int, thesis: pd.DataFrame, results_root: Path, snippet_dir: Path) -> str:
    """The whole snippet of one chapter: every thesis table of the chapter, then extra tables, figures."""
    tables_dir = Path(results_root) / "tables"
    thesis_ids = sorted({t for t in thesis["table"] if chapter_of(t) == chapter}, key=registry.id_sort_key)
    extra_ids = [t for t in reproduced_table_ids(tables_dir) if section_of(t) == chapter and t not in thesis_ids]
    parts = ["<!-- generated by `python -m fa_lib.bookgen` from results/: do not edit -->", ""]
    for table_id in thesis_ids + extra_ids:
        parts.append(render_table(table_id, thesis, read_reproduced(table_id, tables_dir)))
    parts.append(_render_figures(chapter, Path(results_root) / "figures", snippet_dir))
    return "\n".join(parts)


def render_data_section(results_root: Path, snippet_dir: Path) -> str:
    """Snippet of the data page: every table and figure whose id starts with ``data``."""
    tables_dir = Path(results_root) / "tables"
    parts = ["<!-- generated by `python -m fa_lib.bookgen` from results/: do not edit -->", ""]
    table_ids = [t for t in reproduced_table_ids(tables_dir) if section_of(t) == "data"]
    for table_id in table_ids:
        table = read_reproduced(table_id, tables_dir)
        caption = (table.provenance or {}).get("caption", "")
        parts.append(_render_additional_table(table_id, caption, table))
    figures = _render_figures("data", Path(results_root) / "figures", snippet_dir)
    parts.append(figures)
    if not table_ids and not figures:
        parts.append("*No data summary in `results/` yet: `fa-lib reproduce` writes it.*\n")
    return "\n".join(parts)


def chapter_status(chapter: int, thesis: pd.DataFrame, results_root: Path) -> dict:
    tables_dir = Path(results_root) / "tables"
    thesis_ids = sorted({t for t in thesis["table"] if chapter_of(t) == chapter}, key=registry.id_sort_key)
    done, profiles = [], set()
    for table_id in thesis_ids:
        table = read_reproduced(table_id, tables_dir)
        if table is not None and any(format_value(v) for v in table.cells["reproduced"]):
            done.append(table_id)
            profiles.add(str((table.provenance or {}).get("profile", "unknown")))
    return {"chapter": chapter, "tables": thesis_ids, "reproduced": done, "profiles": sorted(profiles)}


def render_status(thesis: pd.DataFrame, results_root: Path) -> str:
    lines = ["| Chapter | Thesis tables | Reproduced (with values) | Profile |", "|:--|--:|:--|:--|"]
    for chapter, title in CHAPTERS.items():
        s = chapter_status(chapter, thesis, results_root)
        done = ", ".join(s["reproduced"]) if s["reproduced"] else "none yet"
        lines.append(f"| {chapter}. {title} | {len(s['tables'])} | {done} | {', '.join(s['profiles']) or '—'} |")
    return "\n".join(lines) + "\n"


def render_builders() -> str:
    """Every registered table and figure: thesis id, title, builder, what it trains (Markdown)."""
    lines = ["| Thesis item | What it shows | Built by | Trains |", "|:--|:--|:--|:--|"]
    for b in registry.builders():
        trains = "<br>".join(_escape(t) for t in b.trains) or "nothing of its own"
        lines.append(f"| {b.kind.capitalize()} {b.thesis_id} | {_escape(b.title)} | `{b.qualname}` | {trains} |")
    return "\n".join(lines) + "\n"


def generate(results_root: str | Path | None = None, out_dir: str | Path | None = None,
             thesis_csv: str | Path = THESIS_TABLES_CSV) -> list[Path]:
    """Write ``ch<N>_tables.md`` for chapters 3-6, ``data_results.md`` and ``status.md`` into ``out_dir``
    (replaced whole)."""
    root = _project_root()
    results_root = Path(results_root) if results_root is not None else root / "results"
    out_dir = Path(out_dir) if out_dir is not None else root / "book" / "_generated"
    thesis = load_thesis_tables(Path(thesis_csv))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    written = []
    for chapter in CHAPTERS:
        path = out_dir / f"ch{chapter}_tables.md"
        path.write_text(render_chapter(chapter, thesis, results_root, out_dir), encoding="utf-8")
        written.append(path)
    data = out_dir / "data_results.md"
    data.write_text(render_data_section(results_root, out_dir), encoding="utf-8")
    written.append(data)
    status = out_dir / "status.md"
    status.write_text(render_status(thesis, results_root), encoding="utf-8")
    written.append(status)
    builders = out_dir / "builders.md"
    builders.write_text(render_builders(), encoding="utf-8")
    written.append(builders)
    comparison = out_dir / "comparison.md"
    comparison.write_text(render_comparison(results_root), encoding="utf-8")
    written.append(comparison)
    return written


#: where a committed re-run comparison lives (``fa-lib reproduce --compare`` writes it beside the re-run;
#: copy its compare.csv and compare_findings.csv here to show it in the book)
COMPARISON_DIR = "comparison"


def render_comparison(results_root: Path) -> str:
    """The introduction's "what a re-run on another machine gave": counts per verdict, the cells that
    differ and the findings judged differently, from ``results/comparison/compare.csv`` (a line saying
    there is none otherwise)."""
    folder = Path(results_root) / COMPARISON_DIR
    if not (folder / COMPARE_FILE).is_file():
        return ("No re-run has been compared with these results yet: `fa-lib reproduce --compare` re-runs the "
                "notebooks into another folder and writes the comparison there; its `compare.csv` and "
                f"`compare_findings.csv` copied into `results/{COMPARISON_DIR}/` appear here.\n")
    cells = pd.read_csv(folder / COMPARE_FILE, dtype={"row": str, "column": str, "table": str})
    out = ["| verdict | cells |", "|:--|--:|"]
    for verdict, count in cells["verdict"].value_counts().items():
        out.append(f"| {_escape(verdict)} | {count} |")
    differ = cells[cells["verdict"] == "differs"]
    if len(differ):
        out += ["", "Cells that differ by more than two standard errors over seeds:", "",
                "| table | row | column | committed | re-run |", "|:--|:--|:--|--:|--:|"]
        out += [f"| {_escape(r.table)} | {_escape(r.row)} | {_escape(r.column)} | {_readable(r.committed)} | "
                f"{_readable(r.rerun)} |" for r in differ.itertuples()]
    if (folder / FINDINGS_FILE).is_file():
        findings = pd.read_csv(folder / FINDINGS_FILE, dtype={"table": str})
        if len(findings):
            same = findings["same"].astype(str).str.lower() == "true"
            out += ["", f"Findings of the thesis judged the same in both runs: {int(same.sum())} of {len(findings)}."]
            out += [f"- table {_escape(r.table)}: {_escape(r.claim)}: {r.committed} -> {r.rerun}"
                    for r in findings[~same].itertuples()]
    return "\n".join(out) + "\n"


def toc_files(node: Any) -> list[str]:
    """Every ``file`` entry of a ``_toc.yml`` tree (parts, chapters, sections, at any depth)."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            found.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            found += toc_files(node.get(key, []))
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


def missing_executed_notebooks(book_root: str | Path) -> list[str]:
    """Pages of ``_toc.yml`` under book/_executed/ whose executed notebook does not exist yet.

    The book is built from these executed copies (``book/_executed/<name>.ipynb``), never from the
    notebook sources ``notebooks/<name>.md`` (MyST Markdown): ``fa-lib reproduce`` converts each source
    with jupytext, runs it with papermill and writes the copy."""
    import yaml

    toc = yaml.safe_load((Path(book_root) / "_toc.yml").read_text(encoding="utf-8"))
    entries = [toc.get("root", "")] + toc_files(toc)
    return [e + ".ipynb" for e in entries
            if e.startswith("book/_executed/") and not (Path(book_root) / f"{e}.ipynb").is_file()]


def _project_root() -> Path:
    """The book's root (the folder holding _toc.yml): the working directory or above, else the checkout
    this package lives in."""
    for base in [Path.cwd(), *Path.cwd().parents]:
        if (base / "_toc.yml").is_file():
            return base
    return PACKAGE_DIR.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render results/ into the book's table snippets.")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: <repo>/results)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <repo>/book/_generated)")
    parser.add_argument("--require-executed", action="store_true",
                        help="fail unless every notebook page of _toc.yml has its executed copy in book/_executed")
    args = parser.parse_args(argv)
    if args.require_executed:
        missing = missing_executed_notebooks(_project_root())
        if missing:
            chapters = " ".join(Path(m).stem for m in missing)
            print("bookgen: executed notebooks missing: " + ", ".join(missing) + "; run "
                  f"`fa-lib reproduce --profile quick --chapters {chapters}` (or `make main`) to execute "
                  "their sources notebooks/<name>.md before building the book", file=sys.stderr)
            return 1
    results = args.results or _project_root() / "results"
    print(f"bookgen: rendering the tables and figures of {results}", file=sys.stderr)
    try:
        written = generate(args.results, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bookgen: {exc}", file=sys.stderr)
        return 1
    print("bookgen: wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
