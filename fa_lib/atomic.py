"""Atomic file writes: a crash or a kill at any moment leaves the old file or the new one, never half.

Every writer goes through a temporary file in the destination's folder (same file system), flushed
and fsync'ed, then ``os.replace``. This is the only place in ``fa_lib`` that does it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_torch_save",
           "atomic_replace_dir"]


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` has to set a
    new one to read the old, which another thread could see)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary temporary file, then move it onto ``path``. The file gets the
    permissions a plain ``open(path, "w")`` would give it (``mkstemp`` alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (torch is imported only when this is called)."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_replace_dir(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move a fully written folder ``staging`` onto ``dest`` (an existing ``dest`` is removed first;
    ``staging`` must be on the same file system)."""
    staging, dest = Path(staging), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest
