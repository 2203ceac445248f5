"""The reproduction runner behind ``fa-lib reproduce``: executes the chapter notebooks with papermill.

For each selected notebook of ``notebooks/`` (parameters cell first) the runner

1. computes a cache key from the notebook's source, the library's source and the parameters, and skips
   the notebook when an executed copy with that key exists (an unchanged chapter is not re-run);
2. executes it with papermill into ``book/_executed/<name>.ipynb`` (git-ignored) with the parameters
   ``profile, device, data_root, seed``, the kernel writing its tables and figures into a private
   staging folder (``FA_LIB_RESULTS``);
3. on success moves the staged files into ``results/tables`` and ``results/figures`` (each move is an
   atomic rename), so a notebook that fails half-way never touches the results of any chapter; on
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

from fa_lib.profiles import PROFILE_NAMES, get_profile

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout that holds ``notebooks/`` and ``_toc.yml`` (searched upwards from ``start``)."""
    if start is not None and (Path(start) / "notebooks").is_dir():
        return Path(start).resolve()
    candidates = [Path(start or os.getcwd()).resolve(), PACKAGE_DIR.parent]
    for base in candidates:
        for d in [base, *base.parents]:
            if (d / "notebooks").is_dir() and (d / "fa_lib").is_dir():
                return d
    raise FileNotFoundError("cannot find the project checkout (a folder with notebooks/ and fa_lib/); "
                            "run from inside it or pass --root")


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
    nbs = sorted((root / "notebooks").glob("*.ipynb"))
    return [p for p in nbs if not p.name.startswith((".", "_"))]


def select_notebooks(notebooks: Sequence[Path], chapters: Iterable[str] | None) -> list[Path]:
    """Pick notebooks by name: ``ch4`` matches ``ch4_fan.ipynb``; ``4`` also matches it."""
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


def library_fingerprint() -> str:
    """Hash of every source file of fa_lib (Python, C) and the thesis tables it carries."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix in {".py", ".c", ".h", ".csv"} and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(PACKAGE_DIR)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(notebook: Path, parameters: dict, lib_hash: str) -> str:
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(lib_hash.encode())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return h.hexdigest()


def resolve_device(device: str) -> str:
    device = (device or "auto").lower()
    if device not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return device


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
            dest = results / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.moving")
            shutil.copy2(path, tmp)
            os.replace(tmp, dest)
            moved.append(str(rel))
    return moved


def run_notebook(source: Path, executed: Path, parameters: dict, results: Path, root: Path,
                 staging_root: Path, log_output: bool = False) -> list[str]:
    """Execute one notebook; return the result files it produced (relative to ``results``)."""
    import papermill as pm

    staging = staging_root / source.stem
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    executed.parent.mkdir(parents=True, exist_ok=True)
    tmp_executed = executed.with_name(f".{executed.name}.running.ipynb")
    from fa_lib.results import PUBLISHED_ENV

    # the notebook writes into the staging folder; it reads results made elsewhere from `results`
    env = {"FA_LIB_RESULTS": str(staging), PUBLISHED_ENV: str(Path(results).resolve())}
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(source), str(tmp_executed), parameters=parameters, cwd=str(root),
                            kernel_name="python3", progress_bar=False, log_output=log_output)
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    os.replace(tmp_executed, executed)
    moved = _move_staged(staging, results)
    shutil.rmtree(staging, ignore_errors=True)
    return moved


def reproduce(profile: str = "quick", chapters: Sequence[str] | None = None, device: str = "auto",
              data_root: str | None = None, seed: int = 0, root: str | os.PathLike | None = None,
              force: bool = False, progress: bool = True, log_output: bool = False,
              results_dir: str | os.PathLike | None = None,
              executed_dir: str | os.PathLike | None = None) -> list[NotebookRun]:
    """Execute the selected chapter notebooks and collect their results (see module docstring).

    ``results_dir`` and ``executed_dir`` default to ``<root>/results`` and ``<root>/book/_executed``;
    the test-suite points them at a temporary copy so that a smoke run never overwrites the committed
    quick-profile results.
    """
    get_profile(profile)  # validates the name early with a clear message
    if data_root is not None and not Path(data_root).is_dir():
        raise FileNotFoundError(f"--data-root {data_root!r} is not a folder")
    root = project_root(root)
    notebooks = select_notebooks(discover_notebooks(root), chapters)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {root / 'notebooks'}")
    dev = resolve_device(device)
    parameters = {"profile": profile, "device": dev, "data_root": data_root, "seed": int(seed)}
    results = Path(results_dir) if results_dir is not None else root / "results"
    executed_dir = Path(executed_dir) if executed_dir is not None else root / "book" / "_executed"
    cache_dir = root / ".cache" / "reproduce"
    staging_root = root / ".cache" / "staging"
    lib_hash = library_fingerprint()

    from tqdm.auto import tqdm

    runs: list[NotebookRun] = []
    bar = tqdm(notebooks, desc=f"reproduce ({profile})", unit="notebook", disable=not progress,
               file=sys.stderr)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        run = NotebookRun(name=nb.stem, source=nb, executed=executed_dir / nb.name)
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
            run.outputs = run_notebook(nb, run.executed, parameters, results, root, staging_root,
                                       log_output=log_output)
            run.status = "ok"
            cache_dir.mkdir(parents=True, exist_ok=True)
            stamp_tmp = stamp.with_name(f".{stamp.name}.tmp")
            stamp_tmp.write_text(json.dumps({"key": key, "parameters": parameters,
                                             "outputs": run.outputs}, indent=2))
            os.replace(stamp_tmp, stamp)
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


__all__ = ["reproduce", "summary", "discover_notebooks", "select_notebooks", "project_root",
           "PROFILE_NAMES"]
