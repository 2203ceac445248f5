"""Where things are: the package, the project checkout, and the environment variables that name the
results folders. The bottom of the import graph (standard library only), so that ``fa_lib.results``
and ``fa_lib.reproduce`` both use it without importing each other.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "NOTEBOOKS_DIR", "RESULTS_ENV", "PUBLISHED_ENV", "project_root"]

#: the ``fa_lib`` package folder
PACKAGE_DIR = Path(__file__).resolve().parent

#: the folder of the checkout that holds the notebook sources (jupytext MyST Markdown)
NOTEBOOKS_DIR = "notebooks"

#: where a running notebook writes its tables and figures (``fa-lib reproduce`` points it at a staging
#: folder); unset, the checkout's ``results/``
RESULTS_ENV = "FA_LIB_RESULTS"

#: the results tree that ``fa-lib reproduce`` publishes into, named while a notebook runs so that it can
#: read results made elsewhere (another notebook, ``fa-lib bench``)
PUBLISHED_ENV = "FA_LIB_RESULTS_PUBLISHED"


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout that holds ``notebooks/`` and ``_toc.yml`` (searched upwards from ``start``)."""
    if start is not None and (Path(start) / NOTEBOOKS_DIR).is_dir():
        return Path(start).resolve()
    candidates = [Path(start or os.getcwd()).resolve(), PACKAGE_DIR.parent]
    for base in candidates:
        for d in [base, *base.parents]:
            if (d / NOTEBOOKS_DIR).is_dir() and (d / "fa_lib").is_dir():
                return d
    raise FileNotFoundError("cannot find the project checkout (a folder with notebooks/ and fa_lib/); "
                            "run from inside it or pass --root")
