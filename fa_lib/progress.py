"""Progress of a running notebook, shown by ``fa-lib reproduce`` under its notebook bar.

A chapter notebook can train for most of an hour; the reader of the terminal should see where it is.
Two sources, both read by :class:`NotebookProgress` in the ``fa-lib reproduce`` process:

- the **section**: papermill saves the notebook as each cell starts, marking that cell "running"; the
  heading of the Markdown cell above it names the section (:func:`current_section`);
- **training**: every :class:`fa_lib.train.Trainer` inside the kernel (and inside the processes a
  chapter forks to train several networks at once) appends a JSON line with its network's name, step,
  budget, loss and elapsed time to the file named by ``$FA_LIB_PROGRESS`` every few seconds
  (:class:`TrainingReporter`; nothing is written when the variable is unset). The newest line of each
  network gives its step bar and the time it has left.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

PROGRESS_ENV = "FA_LIB_PROGRESS"


class TrainingReporter:
    """Appends ``{"name", "step", "total", "loss", "elapsed_s", "done"}`` lines to ``$FA_LIB_PROGRESS``
    at most every ``every_s`` seconds (and at the end); does nothing when it is unset."""

    def __init__(self, name: str, total: int, every_s: float = 2.0):
        self.path = os.environ.get(PROGRESS_ENV)
        self.name, self.total, self.every_s = str(name), int(total), float(every_s)
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, step: int, loss: float | None, done: bool = False) -> None:
        if not self.path:
            return
        now = time.perf_counter()
        if not done and now - self.last < self.every_s:
            return
        self.last = now
        line = json.dumps({"name": self.name, "step": int(step), "total": self.total,
                           "loss": None if loss is None else float(loss),
                           "elapsed_s": round(now - self.started, 2), "done": bool(done), "pid": os.getpid()})
        try:  # one short append per line: lines of several processes do not interleave
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            self.path = None  # progress is a courtesy: never fail a training for it


def current_section(notebook: str | os.PathLike) -> str | None:
    """The heading above the cell papermill marks as running in ``notebook`` (its saved ``.ipynb``), or
    None when no cell is running or the file cannot be read (papermill may be rewriting it)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    heading = None
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        if cell.get("cell_type") == "code" and status == "running":
            return heading
    return None


def read_training(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The newest line of each network in a progress file (name -> record)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return latest
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line being written
            continue
        latest[record.get("name", "?")] = record
    return latest


def describe_training(records: dict[str, dict[str, Any]]) -> str:
    """One line for the networks training now: name, step / budget, loss and the time left of each."""
    active = [r for r in records.values() if not r.get("done")]
    parts = []
    for r in sorted(active, key=lambda r: -r["elapsed_s"]):
        step, total = max(int(r["step"]), 0), max(int(r["total"]), 1)
        left = r["elapsed_s"] / step * (total - step) if step else None
        loss = f", loss {r['loss']:.4g}" if r.get("loss") is not None else ""
        eta = f", ~{_duration(left)} left" if left is not None else ""
        parts.append(f"{r['name']} {step}/{total}{loss}{eta}")
    return " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class NotebookProgress:
    """While a notebook runs: a line under the notebook bar with its section and what is training.
    ``with NotebookProgress(running_ipynb, progress_file, enabled): ...``"""

    def __init__(self, notebook: str | os.PathLike, progress_file: str | os.PathLike, enabled: bool = True,
                 interval_s: float = 1.0):
        self.notebook, self.progress_file = Path(notebook), Path(progress_file)
        self.enabled, self.interval_s = enabled, float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None

    def status(self) -> str:
        section = current_section(self.notebook)
        training = describe_training(read_training(self.progress_file))
        return " — ".join(p for p in (section, training) if p)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            text = self.status()
            if self._bar is not None and text:
                self._bar.set_description_str(text[:200], refresh=True)

    def __enter__(self) -> "NotebookProgress":
        self.progress_file.parent.mkdir(parents=True, exist_ok=True)
        self.progress_file.write_text("", encoding="utf-8")
        if self.enabled:
            import sys

            from tqdm.auto import tqdm

            self._bar = tqdm(total=0, bar_format="  {desc}", position=1, leave=False, file=sys.stderr)
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._bar is not None:
            self._bar.close()
        self.progress_file.unlink(missing_ok=True)
