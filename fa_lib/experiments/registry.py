"""Every table and figure of the thesis that the project regenerates, keyed by its thesis id.

A builder is registered with :func:`thesis_table` or :func:`thesis_figure` (in the spirit of timm's
model registry). It takes the chapter's context (:class:`fa_lib.experiments.context.ChapterContext`)
and returns a :class:`ThesisResult`: the long table written to ``results/``, a display table, the
figure, and one structured :class:`~fa_lib.experiments.verdict.Verdict` per finding it checks.
``fa-lib where 4.3`` prints where a table is built and which trained networks it uses.
"""
from __future__ import annotations

import importlib
import re
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

import fa_lib.experiments as package
from fa_lib.experiments.verdict import Verdict
from fa_lib.tableshape import thesis_shape

KINDS = ("table", "figure")


@dataclass
class ThesisResult:
    """What a registered builder returns.

    ``table``: the long frame written to ``results/tables/table_<id>.csv`` (``row, column, paper,
    reproduced``), None for a figure; ``figure``: the matplotlib figure, if any; ``verdicts``: one
    per finding of the thesis the result checks; ``path``: what was written; ``runs``: the trained
    networks used (label -> list of runs), for provenance and for the narrative; ``notes``: extra
    Markdown lines shown under the verdicts; ``data``: anything else a notebook or a later builder
    needs (per-image errors, summaries)."""

    thesis_id: str
    kind: str = "table"
    table: pd.DataFrame | None = None
    figure: Any = None
    verdicts: list[Verdict] = field(default_factory=list)
    path: Path | None = None
    runs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> pd.DataFrame:
        """The table in the thesis's shape, as the book shows it (:func:`fa_lib.tableshape.thesis_shape`):
        the thesis's rows and columns, each cell ``ours / thesis`` at the thesis's precision, then the
        columns and rows only we have (marked "(ours)"); text cells, never NaN."""
        if self.table is None:
            raise ValueError(f"{self.kind} {self.thesis_id} has no table")
        t = self.table
        has_paper = t["paper"].notna() & (t["paper"].astype(str).str.strip() != "")
        thesis_cells = t[has_paper].rename(columns={"paper": "value"})[["row", "column", "value"]]
        shaped = thesis_shape(thesis_cells, t[["row", "column", "reproduced"]])
        frame = shaped.frame.rename(columns={c: f"{c} (ours)" for c in shaped.extra_columns
                                             if not shaped.ours_only})
        if shaped.extra_rows and not shaped.ours_only:
            frame = frame.rename(index={r: f"{r} (ours)" for r in shaped.extra_rows})
        return frame

    def verdict_markdown(self) -> str:
        """Markdown list: one line per verdict, then the notes."""
        lines = [f"- {v.sentence()}" for v in self.verdicts] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) if lines else "- (no finding of the thesis to check here)"

    def holds(self) -> list[bool | None]:
        return [v.holds for v in self.verdicts]

    @property
    def ran(self) -> bool:
        """False for a result its data could not give (``data["not_run"]`` says why; nothing written)."""
        return "not_run" not in self.data


@dataclass(frozen=True)
class Builder:
    """A registered builder: which thesis item it makes, where its code is, what it trains."""

    thesis_id: str
    kind: str
    function: Callable[..., ThesisResult]
    trains: tuple[str, ...] = ()

    @property
    def chapter(self) -> int:
        return int(self.thesis_id.split(".")[0])

    @property
    def title(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return doc.splitlines()[0] if doc else self.function.__name__

    @property
    def qualname(self) -> str:
        return f"{self.function.__module__}.{self.function.__qualname__}"

    def source(self) -> str:
        """``path/to/module.py:line`` of the builder (relative to the package's parent)."""
        path = Path(inspect.getsourcefile(self.function) or "?")
        line = inspect.getsourcelines(self.function)[1]
        root = Path(__file__).resolve().parents[2]
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            pass
        return f"{path}:{line}"

    def __call__(self, ctx: Any, **kwargs: Any) -> ThesisResult:
        return self.function(ctx, **kwargs)


_REGISTRY: dict[tuple[str, str], Builder] = {}


def _register(kind: str, thesis_id: str, trains: Sequence[str]) -> Callable:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    thesis_id = str(thesis_id)
    if not thesis_id.split(".")[0].isdigit():
        raise ValueError(f"a thesis id starts with its chapter number, got {thesis_id!r}")

    def decorate(function: Callable[..., ThesisResult]) -> Callable[..., ThesisResult]:
        key = (kind, thesis_id)
        old = _REGISTRY.get(key)
        if old is not None and old.qualname != f"{function.__module__}.{function.__qualname__}":
            raise ValueError(f"{kind} {thesis_id} is already built by {old.qualname}")
        _REGISTRY[key] = Builder(thesis_id, kind, function, tuple(trains))
        function.thesis_id = thesis_id
        function.thesis_kind = kind
        return function

    return decorate


def thesis_table(thesis_id: str, *, trains: Sequence[str] = ()) -> Callable:
    """Register the builder of thesis Table ``thesis_id`` (e.g. ``"4.3"``; the project's own extra
    tables use ``"<chapter>.<name>"``, e.g. ``"4.real"``). ``trains``: the networks it uses, in words."""
    return _register("table", thesis_id, trains)


def thesis_figure(thesis_id: str, *, trains: Sequence[str] = ()) -> Callable:
    """Register the builder of thesis Figure ``thesis_id`` (e.g. ``"5.7"``)."""
    return _register("figure", thesis_id, trains)


def id_sort_key(thesis_id: str) -> tuple:
    """Sort key putting 5.2 before 5.10 (numeric parts compared as numbers, named parts after)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[._]", thesis_id))


def load_all() -> None:
    """Import every chapter package of ``fa_lib.experiments`` so that its builders are registered."""
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and info.name.startswith("ch"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def builders(chapter: int | None = None, kind: str | None = None) -> list[Builder]:
    """Registered builders (all chapters loaded), in thesis order."""
    load_all()
    found = [b for b in _REGISTRY.values()
             if (chapter is None or b.chapter == chapter) and (kind is None or b.kind == kind)]
    return sorted(found, key=lambda b: (b.chapter, b.kind != "table", id_sort_key(b.thesis_id)))


def find(thesis_id: str, kind: str | None = None) -> Builder:
    """The builder of a thesis id. ``"4.3"``, ``"table 4.3"``, ``"fig 5.7"``, ``"figure 5.7"`` all
    work; an id that is both a table and a figure needs the kind. Unknown ids raise ``KeyError``
    listing the chapter's registered ids."""
    text = str(thesis_id).strip().lower()
    for prefix, k in (("table", "table"), ("tab.", "table"), ("figure", "figure"), ("fig.", "figure"),
                      ("fig", "figure")):
        if text.startswith(prefix):
            text, kind = text[len(prefix):].strip(" _"), k
            break
    load_all()
    hits = [b for (k, i), b in _REGISTRY.items() if i.lower() == text and (kind is None or k == kind)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise KeyError(f"{thesis_id!r} is both a table and a figure: say 'table {text}' or 'figure {text}'")
    chapter = text.split(".")[0]
    known = [f"{b.kind} {b.thesis_id}" for b in builders() if str(b.chapter) == chapter]
    raise KeyError(f"no builder for {thesis_id!r}" + (f"; chapter {chapter} has: {', '.join(known)}" if known else
                                                       "; no chapter with that number is implemented"))


def describe(builder: Builder) -> str:
    """The text ``fa-lib where`` prints."""
    lines = [f"{builder.kind} {builder.thesis_id}: {builder.title}",
             f"  built by  {builder.qualname}", f"  source    {builder.source()}"]
    if builder.trains:
        lines.append("  trains    " + "\n            ".join(builder.trains))
    else:
        lines.append("  trains    nothing of its own (evaluates or plots what other builders trained)")
    return "\n".join(lines)
