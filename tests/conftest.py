"""Shared fixtures: one smoke-profile reproduction of every notebook in a temporary copy of the
project, reused by the notebook tests and the book/browser tests (never touches the committed
results/)."""
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_SOURCES = ["_config.yml", "_toc.yml", "book", "notebooks"]


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory):
    """A temporary copy of the book sources (pages, notebooks, config) to reproduce and build in."""
    root = tmp_path_factory.mktemp("smoke_project")
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns(
                "_executed", "_generated", "_build", "vendor", ".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, root / name)
    if (ROOT / "node_modules").is_dir():
        os.symlink(ROOT / "node_modules", root / "node_modules")
    return root


@pytest.fixture(scope="session")
def smoke_reproduction(smoke_project):
    """Execute every notebook with the smoke profile; returns ({name: run}, results folder)."""
    from fa_lib.experiments.runs import ROOT_ENV
    from fa_lib.reproduce import reproduce

    # trained networks go to a cache of this test session, never to the checkout's checkpoints/
    previous = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(smoke_project / "runs")
    try:
        # the book test renders this run: into the folders the book reads
        runs = reproduce("smoke", root=smoke_project, progress=False, force=True, device="cpu",
                         results_dir=smoke_project / "results", executed_dir=smoke_project / "book" / "_executed")
    finally:
        if previous is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = previous
    return {r.name: r for r in runs}, smoke_project / "results"


@pytest.fixture(scope="module")
def amx_tile_kernel_everywhere():
    """Small maps normally leave the "amx" kernel path for the AVX-512 one (xnor.set_amx_min_pixels); the
    kernels' exactness tests use small maps, so they force the tile kernel itself on every shape."""
    from fa_lib.kernels import xnor

    if "amx" not in xnor.available_isas():
        yield
        return
    previous = xnor.set_amx_min_pixels(0)
    yield
    xnor.set_amx_min_pixels(previous)


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A MonkeyPatch for module-scoped fixtures (e.g. a chapter context writing into a temporary results folder)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
