"""The book: table snippets from results/ (fa_lib.bookgen), configuration, vendored widget JavaScript,
and a real headless-browser test of the built book (tests/browser/book.test.mjs).

The browser test builds the book from the session's smoke-profile reproduction (conftest.py) unless
``FA_BOOK_HTML`` names an already built book (``_build/html`` after ``make book``). Explorer pages come
from tests/browser/explorers.json (``BOOK_TEST_EXPLORERS`` overrides it with the same JSON) plus every
built page whose saved widget state contains an explorer. With ``CI=true`` missing prerequisites (node,
/usr/bin/chromium, node_modules) make it fail; elsewhere it is skipped with the reason.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fa_lib import bookgen

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("BOOK_TEST_CHROMIUM", "/usr/bin/chromium"))
NODE_TEST = ROOT / "tests" / "browser" / "book.test.mjs"
EXPLORERS_JSON = ROOT / "tests" / "browser" / "explorers.json"
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# --------------------------------------------------------------------------------------- bookgen

def _write_result(tables: Path, table_id: str, cells: list[tuple], provenance: dict | None) -> None:
    tables.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(cells, columns=["row", "column", "paper", "reproduced"])
    df.to_csv(tables / f"table_{table_id}.csv", index=False)
    if provenance is not None:
        (tables / f"table_{table_id}.json").write_text(json.dumps(provenance))


@pytest.fixture
def fake_results(tmp_path):
    tables = tmp_path / "results" / "tables"
    # Table 4.2 of the thesis has three cells (3D-FAN at three yaw ranges); two are "reproduced"
    _write_result(tables, "4.2", [("3D-FAN", "[0-30]", "73.5", 61.234567),
                                  ("3D-FAN", "[30-60]", "74.6", 58.5),
                                  ("3D-FAN", "[60-90]", "68.8", None)],
                  {"profile": "quick", "dataset": "synthetic yaw-balanced", "dataset_size": 600, "seed": 3,
                   "git_commit": "0123456789abcdef", "wall_time_s": 12.5, "device": "cpu"})
    # a table the thesis does not have (extra analysis of chapter 4), with its own caption
    _write_result(tables, "4.1.3_normalisation", [("yaw 0", "NME box", "", 2.0)],
                  {"profile": "smoke", "caption": "Box vs eye normalisation across yaw."})
    return tmp_path / "results"


def test_introduction_lists_every_builder(fake_results, tmp_path):
    from fa_lib.experiments import registry

    out = tmp_path / "generated"
    bookgen.generate(fake_results, out)
    listing = (out / "builders.md").read_text()
    for b in registry.builders():
        assert f"| {b.kind.capitalize()} {b.thesis_id} |" in listing
        assert f"`{b.qualname}`" in listing
    assert "{include} _generated/builders.md" in (ROOT / "book" / "intro.md").read_text()


def test_bookgen_puts_paper_and_reproduced_side_by_side(fake_results, tmp_path):
    out = tmp_path / "generated"
    written = bookgen.generate(fake_results, out)
    assert {p.name for p in written} == {"ch3_tables.md", "ch4_tables.md", "ch5_tables.md",
                                         "ch6_tables.md", "data_results.md", "status.md", "builders.md", "comparison.md"}
    ch4 = (out / "ch4_tables.md").read_text()
    table_42 = ch4.split("### Table 4.2")[1].split("### Table")[0]
    # the thesis's shape: its row and its three columns, each cell ours / thesis at the thesis's precision
    assert "| | \\[0-30] | \\[30-60] | \\[60-90] |" in table_42
    assert "| 3D-FAN | 61.2 / 73.5 | 58.5 / 74.6 | — / 68.8 |" in table_42  # empty cell: said, not invented
    assert "2 of 3 thesis cells" in table_42
    assert "profile **quick**" in table_42 and "seed 3" in table_42 and "600 samples" in table_42
    assert "commit `0123456789ab`" in table_42 and "{'" not in table_42    # a readable line, no raw dict
    assert "synthetic benchmark" in table_42                          # quick profile -> warning
    # tables without results: thesis values only, clearly marked
    table_43 = ch4.split("### Table 4.3")[1].split("### Table")[0]
    assert "**Not reproduced yet**" in table_43 and "| noise 0% | — / 74.5 | — / 75.2 | — / 69.8 |" in table_43
    assert table_43.count("— / ") == 12
    # extra table: present in its chapter with the caption of its provenance, said not to be a thesis table
    extra = ch4.split("### Additional table 4.1.3\\_normalisation")[1]
    assert "Box vs eye normalisation across yaw." in extra and "Not a thesis table" in extra
    assert "| | NME box |" in extra and "| yaw 0 | 2 |" in extra and "**smoke** profile" in extra
    status = (out / "status.md").read_text()
    assert "| 4. FAN and the LS3D-W dataset | 4 | 4.2 | quick |" in status
    assert "| 3. CALE: convolutional aggregation of local evidence | 4 | none yet | — |" in status


def test_bookgen_data_section_and_figures(fake_results, tmp_path):
    from matplotlib.figure import Figure
    from fa_lib.results import write_figure

    _write_result(fake_results / "tables", "data_synthetic", [("train", "faces", "", 2000)], {"profile": "quick"})
    for fig_id in ("data_montage", "4_1_3_ced", "1_2"):
        fig = Figure(figsize=(1, 1))
        write_figure(fig, fig_id, profile="smoke", dataset="d", seed=0, caption=f"caption of {fig_id}",
                     results_root=fake_results)
    out = tmp_path / "generated"
    bookgen.generate(fake_results, out)
    data = (out / "data_results.md").read_text()
    assert "### Additional table data\\_synthetic" in data and "| | faces |" in data and "| train | 2000 |" in data
    assert "caption of data\\_montage" in data and "fig_data_montage.png" in data
    ch4 = (out / "ch4_tables.md").read_text()
    assert ":::{figure} results/figures/fig_4_1_3_ced.png" in ch4  # relative to the including page's folder
    assert "data\\_synthetic" not in ch4
    assert not any("fig_1_2" in p.read_text() for p in out.glob("*.md"))  # no chapter page for chapter 1
    assert "No data summary" in bookgen.render_data_section(tmp_path / "nothing", out)


def test_bookgen_never_prints_a_number_it_did_not_read(fake_results, tmp_path):
    out = tmp_path / "generated"
    bookgen.generate(fake_results, out)
    thesis_values = set(bookgen.load_thesis_tables()["value"])
    ours = {"61.2", "58.5", "2"}  # 61.234567 at the thesis cell's precision, 58.5, 2.0
    for path in out.glob("ch*_tables.md"):
        for line in path.read_text().splitlines():
            if line.startswith("| "):
                cells = [c.strip() for c in line.strip("|").split("|")]
                for cell in cells[1:]:
                    mine, _, paper = cell.partition(" / ")
                    if paper:
                        assert paper in thesis_values, f"{path.name}: thesis value {paper!r} comes from nowhere"
                    if re.fullmatch(r"-?\d+(\.\d+)?", mine):
                        assert mine in ours, f"{path.name}: {mine!r} comes from nowhere: {line}"


def test_bookgen_without_results_says_nothing_is_reproduced(tmp_path):
    bookgen.generate(tmp_path / "no_results", tmp_path / "out")
    for chapter in (3, 4, 5, 6):
        text = (tmp_path / "out" / f"ch{chapter}_tables.md").read_text()
        assert "Reproduced with" not in text and "**Reproduced**" not in text
        n_tables = text.count("### Table")
        assert n_tables and text.count("**Not reproduced yet**") == n_tables
    assert (tmp_path / "out" / "status.md").read_text().count("none yet") == 4


def test_bookgen_rejects_a_malformed_table(tmp_path):
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    (tables / "table_4.2.csv").write_text("row,column,value\na,b,1\n")
    with pytest.raises(ValueError, match="table_4.2.csv.*missing columns"):
        bookgen.generate(tmp_path / "results", tmp_path / "out")


def test_bookgen_command_line(fake_results, tmp_path):
    out = tmp_path / "cli_out"
    proc = subprocess.run([sys.executable, "-m", "fa_lib.bookgen", "--results", str(fake_results),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (out / "ch4_tables.md").is_file()


def test_tables_show_verdicts_extra_rows_and_a_collapsed_budget(tmp_path):
    from fa_lib.experiments.verdict import judge, not_measurable

    tables = tmp_path / "results" / "tables"
    verdicts = [judge("3D-FAN beats the mean shape", "3D-FAN", [60.0, 61.0], "mean shape", [1.0, 1.2], paper_gap=70),
                judge("noise hurts", "noise 0%", [60.0, 60.1], "noise 30%", [60.2, 60.0], paper_gap=10),
                not_measurable("the 60-90 bin is slightly worse", "no face under 7%")]
    _write_result(tables, "4.2", [("3D-FAN", "[0-30]", "73.5", 61.26), ("3D-FAN", "NME (%)", "", 3.14159),
                                  ("mean shape", "[0-30]", "", 0.0123)],
                  {"profile": "quick", "dataset": "synthetic", "seed": 0, "device": "cpu",
                   "machine": {"cpu": "AMD EPYC", "cpu_count": 2, "isa": ["avx512f"]},
                   "training_budget": {"3D-FAN": {"iterations": 9000, "lr": 0.001}},
                   "verdicts": [v.to_dict() for v in verdicts]})
    text = bookgen.render_chapter(4, bookgen.load_thesis_tables(), tmp_path / "results", tmp_path / "out")
    table = text.split("### Table 4.2")[1].split("### Table")[0]
    assert "{bdg-success}`holds` 3D-FAN beats the mean shape" in table
    assert "{bdg-secondary}`within noise` noise hurts" in table
    assert "{bdg-warning}`not measurable at this scale` the 60-90 bin" in table
    assert "| | \\[0-30] | \\[30-60] | \\[60-90] | NME (%) *(ours)* |" in table
    assert "| 3D-FAN | 61.3 / 73.5 | — / 74.6 | — / 68.8 | 3.14 |" in table
    rows = table.splitlines()
    separator = rows.index("| ***ours only (not in the thesis):*** | | | | |")
    assert rows[separator + 1].startswith("| mean shape | 0.0 |")           # thesis precision: 1 decimal
    assert "cpu (AMD EPYC, 2 cores)" in table
    block = table.split(":::{dropdown} Training budget and machine")[1].split(":::")[0]
    assert "| setting | 3D-FAN |" in block and "| iterations | 9000 |" in block and "| cpu | AMD EPYC |" in block


def test_format_value():
    assert bookgen.format_value("61.234567") == "61.23"
    assert bookgen.format_value(0.000123456) == "0.0001235"
    assert bookgen.format_value(3.0) == "3"
    assert bookgen.format_value("") == "" and bookgen.format_value(float("nan")) == ""
    assert bookgen.format_value("n/a") == "n/a"


def test_every_thesis_table_has_a_caption():
    ids = set(bookgen.load_thesis_tables()["table"])
    assert ids == set(bookgen.THESIS_CAPTIONS)


# ------------------------------------------------------------------------- configuration and pages

def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def test_config_builds_offline_from_executed_notebooks():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    # the MyST notebook sources (notebooks/*.md) are not pages: only their executed copies are
    assert "notebooks" in cfg["exclude_patterns"]
    assert not [e for e in _toc_files() if e.startswith("notebooks/")]
    sphinx = cfg["sphinx"]["config"]
    scripts = list(sphinx["nb_ipywidgets_js"]) + [sphinx["mathjax_path"]] + sphinx["html_js_files"]
    assert not [s for s in scripts if "://" in s or s.startswith("//")], "a script from another host"
    assert not cfg["launch_buttons"].get("colab_url")
    # the repository URL is one setting, unset until the book is published from a real repository
    assert cfg["repository"]["url"] == "" or cfg["repository"]["url"].startswith("https://github.com/")
    assert (ROOT / "environment.yml").is_file()  # what Binder installs from


def test_toc_pages_exist():
    for entry in _toc_files():
        if entry.startswith("book/_executed/"):
            # an executed page comes from the MyST source of the same name (fa-lib reproduce)
            source = ROOT / "notebooks" / (Path(entry).name + ".md")
            assert source.is_file(), f"_toc.yml lists {entry} but {source} does not exist"
        else:
            assert (ROOT / f"{entry}.md").is_file(), f"_toc.yml lists {entry}, no {entry}.md"


def test_chapter_pages_include_their_generated_tables():
    for chapter, page in [(3, "ch3_cale"), (4, "ch4_fan"), (5, "ch5_binary"), (6, "ch6_superfan")]:
        text = (ROOT / "book" / f"{page}.md").read_text()
        assert f"{{include}} _generated/ch{chapter}_tables.md" in text


def test_launch_links_point_at_source_notebooks():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import page_fixes
    finally:
        sys.path.pop(0)
    from types import SimpleNamespace

    unset = SimpleNamespace(html_theme_options={"repository_url": "", "use_repository_button": True,
                                                "use_issues_button": True, "launch_buttons": {"binderhub_url": "b"}})
    page_fixes.repository_links(None, unset)
    assert unset.html_theme_options["launch_buttons"] == {} and not unset.html_theme_options["use_issues_button"]
    published = SimpleNamespace(html_theme_options={"repository_url": "https://github.com/o/r",
                                                    "launch_buttons": {"binderhub_url": ""}})
    page_fixes.repository_links(None, published)
    options = published.html_theme_options
    assert options["use_repository_button"] and options["use_issues_button"]
    assert options["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert page_fixes.rewrite_url("https://github.com/o/r/blob/main/book/_executed/"
                                  "ch5_binary.ipynb").endswith("/blob/main/notebooks/ch5_binary.md")
    assert page_fixes.rewrite_url("https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book%2F_executed%2Fm.ipynb") \
        == "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks%2Fm.md"
    buttons = [{"type": "group", "buttons": [{"url": "x/book/_executed/a.ipynb"},
                                             {"url": "https://github.com/o/r/issues/new?title=book/_executed/a"}]}]
    page_fixes._rewrite_buttons(buttons)
    assert buttons[0]["buttons"][0]["url"] == "x/notebooks/a.md"
    assert "book/_executed/a" in buttons[0]["buttons"][1]["url"]


# ---------------------------------------------------------------------------- vendored JavaScript

def _vendor_module():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import vendor_widgets
    finally:
        sys.path.pop(0)
    return vendor_widgets


def test_vendor_needs_node_modules(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm ci"):
        _vendor_module().vendor(tmp_path / "node_modules", tmp_path / "vendor")


@pytest.mark.skipif(not (ROOT / "node_modules" / "@jupyter-widgets" / "html-manager").is_dir(),
                    reason="node_modules not installed (npm ci)")
def test_vendor_copies_the_files_the_config_names(tmp_path):
    dest = tmp_path / "vendor"
    versions = _vendor_module().vendor(ROOT / "node_modules", dest)
    assert set(versions) == {"requirejs", "@jupyter-widgets/html-manager", "mathjax"}
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    static = dest.parent  # the config's paths are relative to _static, which holds vendor/
    for rel in [*cfg["nb_ipywidgets_js"], cfg["mathjax_path"]]:
        if rel.startswith("vendor/"):
            assert (static / rel).is_file(), f"_config.yml names {rel}, not vendored"
    # the manager's font files sit beside embed-amd.js (its module path is mapped there)
    assert list((dest / "html-manager").glob("*.woff2"))


# ----------------------------------------------------------------------------------- the browser

def _browser_prerequisites_missing() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Debian package nodejs)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    for package in ("playwright-core", "@jupyter-widgets/html-manager", "requirejs", "mathjax"):
        if not (ROOT / "node_modules" / package).is_dir():
            missing.append(f"node_modules/{package} (npm ci)")
    return missing


def _require_browser() -> None:
    missing = _browser_prerequisites_missing()
    if missing:
        message = "browser test prerequisites missing: " + ", ".join(missing)
        if IN_CI:
            pytest.fail(message + " -- with CI=true the browser test must run, not be skipped")
        pytest.skip(message)


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def build_book(project: Path, results: Path) -> Path:
    """The Makefile's book steps, run inside ``project``: vendor, bookgen, clean build. Returns html/."""
    _run([sys.executable, str(ROOT / "tools" / "vendor_widgets.py"), "--node-modules", str(ROOT / "node_modules"),
          "--dest", str(project / "book" / "_static" / "vendor")], cwd=project)
    _run([sys.executable, "-m", "fa_lib.bookgen", "--results", str(results),
          "--out", str(project / "book" / "_generated")], cwd=project)
    shutil.rmtree(project / "_build", ignore_errors=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    # -W: a warning (a missing include, a broken reference, an unknown output type) fails the build
    _run([str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(project), "--all",
          "--path-output", str(project), "-W", "--keep-going"], cwd=project)
    return project / "_build" / "html"


@pytest.fixture(scope="session")
def built_book(request):
    _require_browser()  # before the (slow) build: skip or fail at once when the browser cannot run
    if os.environ.get("FA_BOOK_HTML"):
        html = Path(os.environ["FA_BOOK_HTML"])
        if not (html / "index.html").is_file():
            pytest.fail(f"FA_BOOK_HTML={html} holds no built book (index.html missing)")
        return html
    project = request.getfixturevalue("smoke_project")
    runs, results = request.getfixturevalue("smoke_reproduction")
    failed = {name: run.message for name, run in runs.items() if run.status != "ok"}
    assert not failed, f"notebooks failed under the smoke profile: {failed}"
    return build_book(project, results)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def served_book(built_book):
    """The built book on http://127.0.0.1:<free port>/ for the duration of the session."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", built_book
    server.shutdown()
    server.server_close()


def _explorer_specs(html: Path) -> list[dict]:
    specs = json.loads(os.environ.get("BOOK_TEST_EXPLORERS") or EXPLORERS_JSON.read_text())
    listed = {s["page"] for s in specs}
    # every page whose saved widget state holds an explorer must render it too
    for page in sorted(html.rglob("*.html")):
        rel = page.relative_to(html).as_posix()
        if rel not in listed and '"fa-explorer"' in page.read_text(errors="ignore"):
            specs.append({"page": rel, "selector": ".fa-explorer", "min": 1})
    return specs


@pytest.mark.browser
def test_book_in_headless_browser(served_book):
    _require_browser()
    base_url, html = served_book
    pages = [f"{entry}.html" for entry in _toc_files()] + ["index.html"]
    explorers = _explorer_specs(html)
    for spec in explorers:
        assert (html / spec["page"]).is_file(), f"explorer page {spec['page']} was not built"
    # launch buttons of notebook pages open the source notebook, not the git-ignored executed copy
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    org_repo = repo["url"].removeprefix("https://github.com/").strip("/")
    for entry in _toc_files():
        if entry.startswith("book/_executed/"):
            page_html = (html / f"{entry}.html").read_text()
            name = Path(entry).name
            assert "colab.research.google.com" not in page_html  # Colab cannot open a MyST notebook
            if org_repo:  # set by the publishing workflow
                assert f"mybinder.org/v2/gh/{org_repo}/{repo['branch']}?urlpath=tree/notebooks/{name}.md" in page_html
            else:  # no repository set: no button links to a guessed one
                assert "mybinder.org/v2" not in page_html and "/issues/new" not in page_html
            assert "blob/main/book/_executed" not in page_html
    shots = html.parent / "screenshots"
    config = {"baseUrl": base_url, "pages": pages, "explorers": explorers, "executablePath": str(CHROMIUM),
              "screenshotDir": str(shots), "screenshotPages": [p for p in pages if "/ch" in p]}
    proc = subprocess.run(["node", str(NODE_TEST)], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "BOOK_TEST_CONFIG": json.dumps(config)})
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"browser test gave no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    assert report["externalRequests"] == [], "requests left 127.0.0.1"
    for result in report["explorers"]:
        assert result["found"] >= 1, f"{result['page']}: no explorer rendered"
        for entry in result["checked"]:
            assert entry["sliders"] >= 1 and entry["hasImage"], f"{result['page']}: {entry}"
            assert entry["moves"] and all(m["changed"] for m in entry["moves"]), f"{result['page']}: {entry}"
    assert report["ok"], "browser test failures:\n" + "\n".join(report["failures"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every chapter page was looked at whole (and checked for figure reprs, NaN cells and raw dicts)
    for page in config["screenshotPages"]:
        assert (shots / (page.replace("/", "_") + ".png")).stat().st_size > 10_000, page


def test_bookgen_requires_executed_notebooks_when_asked(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n"
                                       "      - file: book/_executed/metrics\n      - file: book/data\n")
    assert bookgen.missing_executed_notebooks(tmp_path) == ["book/_executed/metrics.ipynb"]
    proc = subprocess.run([sys.executable, "-m", "fa_lib.bookgen", "--require-executed", "--results",
                           str(tmp_path / "results"), "--out", str(tmp_path / "out")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "fa-lib reproduce" in proc.stderr and not (tmp_path / "out").exists()
    assert "--chapters metrics" in proc.stderr and "notebooks/<name>.md" in proc.stderr
    (tmp_path / "book" / "_executed").mkdir(parents=True)
    (tmp_path / "book" / "_executed" / "metrics.ipynb").write_text("{}")
    assert bookgen.missing_executed_notebooks(tmp_path) == []
    # a notebook nested as a section of a chapter is checked too
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n"
                                       "      - file: book/ch4\n        sections:\n"
                                       "          - file: book/_executed/ch4_fan\n")
    assert bookgen.missing_executed_notebooks(tmp_path) == ["book/_executed/ch4_fan.ipynb"]
    proc = subprocess.run([sys.executable, "-m", "fa_lib.bookgen", "--results", str(tmp_path / "results"),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"rendering the tables and figures of {tmp_path / 'results'}" in proc.stderr


def test_publishing_workflow_builds_and_deploys_the_book():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job.get("steps", [])]
    runs = " ".join(step.get("run", "") for step in steps)
    uses = [step.get("uses", "") for step in steps]
    assert "make main" in runs and "github.repository" in runs and "_config.yml" in runs
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    # its substitution targets exactly the repository URL of _config.yml
    text = (ROOT / "_config.yml").read_text()
    assert len(re.findall(r"(?m)^  url: .*$", text)) == 1 and re.search(r"(?m)^repository:\n  url: ", text)


def test_pages_speak_to_readers_not_about_the_project_process():
    """The book talks about the thesis and the project, never about its work items."""
    process = re.compile(r"\b(the|this|that|an|an earlier|a later) issue\b|\bissue's\b|\bissues? #?\d+\b", re.I)
    sources = [*(ROOT / "book").glob("*.md"), *(ROOT / "notebooks").glob("*.md"),
               *(ROOT / "fa_lib" / "experiments").rglob("narrative.py"), ROOT / "fa_lib" / "bookgen.py"]
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not process.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
