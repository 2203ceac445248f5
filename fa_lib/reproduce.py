"""The reproduction runner behind ``fa-lib reproduce``: executes the chapter notebooks with papermill.

The notebook sources are MyST Markdown files, ``notebooks/<name>.md`` (jupytext's ``myst`` format: the
code cells are ``{code-cell}`` blocks, the first one tagged ``parameters``; no outputs are ever
committed). For each selected notebook the runner

1. computes a cache key from the ``.md`` source, the library's source and the parameters, and skips the
   notebook when an executed copy with that key exists (an unchanged chapter is not re-run);
2. converts the source with jupytext into a temporary ``.ipynb`` (:func:`source_to_ipynb`) and executes
   that with papermill, which injects the parameters ``profile, device, data_root, seed`` in a cell after
   the ``parameters`` cell, the kernel writing its tables and figures into a private staging folder
   (``FA_LIB_RESULTS``); the executed notebook is written to ``book/_executed/<name>.ipynb``
   (git-ignored), the page the book is built from;
3. on success moves the staged files into ``results/tables`` and ``results/figures`` (each move is an
   atomic write), so a notebook that fails half-way never touches the results of any chapter; on
   failure it reports the notebook and the failing cell and goes on with the others.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from fa_lib.atomic import atomic_write, atomic_write_text
from fa_lib.device import resolve_device
from fa_lib.data_check import check_data, unusable_chapters
from fa_lib.paths import NOTEBOOKS_DIR, PACKAGE_DIR, PUBLISHED_ENV, RESULTS_ENV, project_root
from fa_lib.progress import PROGRESS_ENV, NotebookProgress
from fa_lib.profiles import PROFILE_NAMES, get_profile

#: notebook sources are ``notebooks/*.md`` in jupytext's MyST Markdown format
SOURCE_SUFFIX = ".md"
JUPYTEXT_FORMAT = "md:myst"
PARAMETERS_TAG = "parameters"
DEFAULT_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
#: faces per dataset read by the data check that runs before a reproduction with a data root
DATA_CHECK_SAMPLE = 10


@dataclass
class NotebookRun:
    name: str
    source: Path
    executed: Path
    status: str = "pending"          # pending | cached | ok | failed
    seconds: float = 0.0
    message: str = ""
    outputs: list[str] = field(default_factory=list)


def discover_notebooks(root: Path) -> list[Path]:
    """The notebook sources of a checkout: ``notebooks/*.md`` (names starting with ``.`` or ``_``
    excluded). Every one must be a jupytext MyST notebook (:func:`read_source_notebook`)."""
    nbs = sorted((Path(root) / NOTEBOOKS_DIR).glob(f"*{SOURCE_SUFFIX}"))
    return [p for p in nbs if not p.name.startswith((".", "_"))]


def select_notebooks(notebooks: Sequence[Path], chapters: Iterable[str] | None) -> list[Path]:
    """Pick notebooks by name: ``ch4`` matches ``ch4_fan.md``; ``4`` also matches it."""
    if not chapters:
        return list(notebooks)
    wanted = [c.strip().lower() for c in chapters if c.strip()]
    chosen = []
    for nb in notebooks:
        stem = nb.stem.lower()
        if any(stem == w or stem.startswith(w) or stem.startswith(f"ch{w}") for w in wanted):
            chosen.append(nb)
    unknown = [w for w in wanted if not any(
        nb.stem.lower() == w or nb.stem.lower().startswith(w) or nb.stem.lower().startswith(f"ch{w}")
        for nb in notebooks)]
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise ValueError(f"no notebook matches {unknown}; available: {names}")
    return chosen


def read_source_notebook(source: str | os.PathLike):
    """The ``nbformat`` notebook of a MyST Markdown source, as papermill will run it.

    Raises ``ValueError`` when the file is not in jupytext's MyST format (``{code-cell}`` blocks, or a
    jupytext header naming ``format_name: myst``). jupytext's own header metadata is dropped (the
    executed copy is a plain notebook); a notebook whose header names no kernel gets ``python3``.
    """
    import jupytext
    from jupytext.formats import guess_format

    source = Path(source)
    text = source.read_text(encoding="utf-8")
    fmt, _ = guess_format(text, source.suffix)
    if fmt != "myst":
        raise ValueError(f"{source.name} is not a jupytext MyST notebook (jupytext reads it as {fmt!r}); "
                         f"convert it with `jupytext --to myst {source.name}`")
    nb = jupytext.reads(text, fmt=JUPYTEXT_FORMAT)
    nb.metadata.pop("jupytext", None)
    if not nb.metadata.get("kernelspec"):
        nb.metadata["kernelspec"] = dict(DEFAULT_KERNELSPEC)
    return nb


def notebook_problems(nb) -> list[str]:
    """What is wrong with a notebook source for ``fa-lib reproduce`` (empty when nothing): there must be
    exactly one cell tagged ``parameters``, it must be the first code cell, and no cell may carry
    outputs or an execution count."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in (c.metadata.get("tags") or [])]
    if not code:
        problems.append("it has no code cell")
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells are tagged {PARAMETERS_TAG!r} (exactly one must be)")
    elif code and PARAMETERS_TAG not in (code[0].metadata.get("tags") or []):
        problems.append(f"the cell tagged {PARAMETERS_TAG!r} is not the first code cell")
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    if dirty:
        problems.append(f"code cells {dirty} carry outputs")
    return problems


def source_to_ipynb(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Convert a MyST Markdown notebook source into the ``.ipynb`` file ``dest`` (papermill's input).

    Raises ``ValueError`` naming the source when it is not a MyST notebook or breaks a rule of
    :func:`notebook_problems`."""
    import nbformat

    nb = read_source_notebook(source)
    problems = notebook_problems(nb)
    if problems:
        raise ValueError(f"{Path(source).name}: " + "; ".join(problems))
    return atomic_write_text(dest, nbformat.writes(nb))


def library_fingerprint() -> str:
    """Hash of every source file of fa_lib (Python, C) and the thesis tables it carries."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix in {".py", ".c", ".h", ".csv"} and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(PACKAGE_DIR)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(notebook: Path, parameters: dict, lib_hash: str) -> str:
    """Key of one run: the notebook's source file (the ``.md``, byte for byte), the library and the
    parameters."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(lib_hash.encode())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return h.hexdigest()


def device_name(device: str | None) -> str:
    """The device parameter the notebooks get: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``"auto"`` resolved
    by :func:`fa_lib.device.resolve_device`). A bad or unavailable device is a ``ValueError``."""
    try:
        return str(resolve_device(device or "auto"))
    except ValueError as exc:
        raise ValueError(f"--device {device!r}: {exc}") from None


def _failing_cell(exc: BaseException) -> str:
    """Describe the failing cell of a papermill execution error."""
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{where} raised {ename}: {evalue}"


def _move_staged(staging: Path, results: Path) -> list[str]:
    moved = []
    for path in sorted(staging.rglob("*")):
        if path.is_file() and not path.name.endswith(".tmp"):
            rel = path.relative_to(staging)
            with path.open("rb") as src:
                atomic_write(results / rel, lambda fh: shutil.copyfileobj(src, fh))
            moved.append(str(rel))
    return moved


#: cell tags of Jupyter Book that already say how a cell's code is shown
CODE_VISIBILITY_TAGS = {"hide-input", "remove-input", "hide-cell", "remove-cell"}


def hide_code(nb) -> None:
    """Tag every code cell of an executed notebook ``hide-input`` (unless it says otherwise): the book's
    pages show results and narrative with the code one click away; the sources keep their code."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if not CODE_VISIBILITY_TAGS & set(tags):
            cell.metadata["tags"] = tags + ["hide-input"]


def _publish_executed(running: Path, executed: Path, source: Path) -> None:
    """Move papermill's output onto ``executed`` (atomically), recording the ``.md`` source and the final
    path in the notebook's papermill metadata instead of the temporary ones papermill saw."""
    import nbformat

    nb = nbformat.read(running, as_version=4)
    hide_code(nb)
    papermill_meta = nb.metadata.setdefault("papermill", {})
    papermill_meta["input_path"] = str(source)
    papermill_meta["output_path"] = str(executed)
    atomic_write_text(executed, nbformat.writes(nb))
    running.unlink(missing_ok=True)


def run_notebook(source: Path, executed: Path, parameters: dict, results: Path, root: Path,
                 staging_root: Path, log_output: bool = False, progress: bool = False) -> list[str]:
    """Execute one notebook source (``notebooks/<name>.md``) into ``executed`` (an ``.ipynb``); return the
    result files it produced (relative to ``results``). With ``progress``, a line under the notebook bar
    shows the section being run and the networks training (:class:`fa_lib.progress.NotebookProgress`)."""
    import papermill as pm

    # papermill's input: the MyST source converted by jupytext (beside, not inside, the staging folder)
    source_ipynb = source_to_ipynb(source, staging_root / f".{source.stem}.source.ipynb")
    staging = staging_root / source.stem
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    executed.parent.mkdir(parents=True, exist_ok=True)
    # papermill saves the notebook after every cell: a failed run leaves it here for inspection
    running = executed.with_name(f".{executed.name}.running.ipynb")

    # the notebook writes into the staging folder; it reads results made elsewhere from `results`
    progress_file = staging_root / f".{source.stem}.progress.jsonl"
    env = {RESULTS_ENV: str(staging), PUBLISHED_ENV: str(Path(results).resolve()), PROGRESS_ENV: str(progress_file)}
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with NotebookProgress(running, progress_file, enabled=progress and not log_output):
            # the kernel's own log (e.g. its TCP-transport warning) is not for readers: errors only
            pm.execute_notebook(str(source_ipynb), str(running), parameters=parameters, cwd=str(root),
                                kernel_name="python3", progress_bar=False, log_output=log_output,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        source_ipynb.unlink(missing_ok=True)
    _publish_executed(running, executed, source)
    moved = _move_staged(staging, results)
    shutil.rmtree(staging, ignore_errors=True)
    return moved


#: the profile whose results are committed and rendered by the book
BOOK_PROFILE = "quick"


def default_results_dir(root: Path, profile: str) -> Path:
    """``<root>/results`` for the book's profile (quick), ``<root>/results-<profile>`` for any other,
    so a trial run never overwrites the committed results."""
    return root / ("results" if profile == BOOK_PROFILE else f"results-{profile}")


def default_executed_dir(root: Path, profile: str) -> Path:
    """``<root>/book/_executed`` (the book's pages) for quick, ``<root>/book/_executed-<profile>`` else."""
    return root / "book" / ("_executed" if profile == BOOK_PROFILE else f"_executed-{profile}")


def reproduce(profile: str = "quick", chapters: Sequence[str] | None = None, device: str = "auto",
              data_root: str | None = None, seed: int = 0, root: str | os.PathLike | None = None,
              force: bool = False, progress: bool = True, log_output: bool = False,
              results_dir: str | os.PathLike | None = None,
              executed_dir: str | os.PathLike | None = None) -> list[NotebookRun]:
    """Execute the selected chapter notebooks and collect their results (see module docstring).

    ``results_dir`` and ``executed_dir`` default to ``<root>/results`` and ``<root>/book/_executed`` for
    the quick profile (what the book renders) and to ``results-<profile>`` / ``book/_executed-<profile>``
    for the others, so that a trial run never overwrites the committed quick-profile results.
    """
    get_profile(profile)  # validates the name early with a clear message
    if data_root is not None and not Path(data_root).is_dir():
        raise FileNotFoundError(f"--data-root {data_root!r} is not a folder")
    root = project_root(root)
    notebooks = select_notebooks(discover_notebooks(root), chapters)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*{SOURCE_SUFFIX}) in {root / NOTEBOOKS_DIR}")
    if data_root is not None:  # stop before any training when a chapter cannot use the data root
        blocked = unusable_chapters(check_data(data_root, sample=DATA_CHECK_SAMPLE),
                                    [nb.stem.split("_")[0] for nb in notebooks])
        if blocked:
            raise ValueError("the data root cannot run "
                             + "; ".join(f"{chapter}: {why}" for chapter, why in blocked.items())
                             + f" (see `fa-lib check-data --data-root {data_root}`)")
    dev = device_name(device)
    parameters = {"profile": profile, "device": dev, "data_root": data_root, "seed": int(seed)}
    results = Path(results_dir) if results_dir is not None else default_results_dir(root, profile)
    executed_dir = Path(executed_dir) if executed_dir is not None else default_executed_dir(root, profile)
    cache_dir = root / ".cache" / "reproduce"
    staging_root = root / ".cache" / "staging"
    lib_hash = library_fingerprint()

    from tqdm.auto import tqdm

    runs: list[NotebookRun] = []
    bar = tqdm(notebooks, desc=f"reproduce ({profile})", unit="notebook", disable=not progress,
               file=sys.stderr)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        run = NotebookRun(name=nb.stem, source=nb, executed=executed_dir / f"{nb.stem}.ipynb")
        # the destinations are part of the key: a run into another results folder is not this one
        key = cache_key(nb, {**parameters, "results": str(results.resolve()),
                             "executed": str(executed_dir.resolve())}, lib_hash)
        stamp = cache_dir / f"{nb.stem}.json"
        if not force and stamp.exists() and run.executed.exists():
            try:
                cached = json.loads(stamp.read_text())
            except ValueError:
                cached = {}
            if cached.get("key") == key:
                run.status, run.outputs = "cached", cached.get("outputs", [])
                run.message = "unchanged notebook, library and parameters: not re-run"
                runs.append(run)
                continue
        t0 = time.perf_counter()
        try:
            run.outputs = run_notebook(nb, run.executed, parameters, results, root, staging_root, progress=progress,
                                       log_output=log_output)
            run.status = "ok"
            atomic_write_text(stamp, json.dumps({"key": key, "parameters": parameters,
                                                 "outputs": run.outputs}, indent=2))
        except Exception as exc:  # noqa: BLE001 - one failing chapter must not stop the others
            run.status = "failed"
            if type(exc).__name__ == "PapermillExecutionError":
                run.message = f"notebook {nb.relative_to(root)} failed: {_failing_cell(exc)}"
            else:
                run.message = (f"notebook {nb.relative_to(root)} could not run: "
                               f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            stamp.unlink(missing_ok=True)
        run.seconds = time.perf_counter() - t0
        runs.append(run)
    return runs


def summary(runs: Sequence[NotebookRun]) -> str:
    lines = []
    for r in runs:
        lines.append(f"{r.status:>7}  {r.name:<28} {r.seconds:8.1f} s  {len(r.outputs)} result file(s)")
        if r.status == "failed":
            lines.append("         " + r.message.replace("\n", "\n         "))
    return "\n".join(lines)


__all__ = ["reproduce", "summary", "discover_notebooks", "select_notebooks", "read_source_notebook",
           "notebook_problems", "source_to_ipynb", "run_notebook", "device_name", "project_root",
           "PROFILE_NAMES"]
