"""Sphinx extension of the book: two fixes applied to every HTML page before it is written.

1. Header links of notebook pages point at the *source* notebooks. Notebook pages are built from the
   executed copies in ``book/_executed/`` (git-ignored, written by ``fa-lib reproduce``), so
   sphinx-book-theme's launch button (Binder) would name ``book/_executed/<name>.ipynb``, a path that does
   not exist in the repository. It is rewritten to ``notebooks/<name>.md``, the MyST notebook source a
   reader should open and run (jupytext, installed with the project, opens it as a notebook). Colab
   cannot open a Markdown notebook, so the book offers no Colab button. The "open an issue" link keeps
   naming the page itself.
2. One setting decides the repository links: ``repository.url`` of ``_config.yml``. When it is set,
   the repository and issue buttons and the Binder launch button are turned on; when it is unset (empty,
   as committed) none is shown rather than one pointed at a guessed address (:func:`repository_links`).
   ``_config.yml`` itself keeps them off, since Jupyter Book refuses repository buttons without a URL.
3. Identical ``<script>`` entries are written once. sphinx-thebe (loaded by Jupyter Book 1.0.4 even with
   thebe off) registers its inline configuration script twice, and the second copy re-declares a
   ``const`` and throws a SyntaxError on every page.
"""
from __future__ import annotations

import re

EXECUTED_DIR = "book/_executed/"
SOURCE_DIR = "notebooks/"
SOURCE_SUFFIX = ".md"
# Both spellings appear in theme URLs: plain paths (GitHub) and URL-encoded ones (Binder urlpath).
_EXECUTED = re.compile(r"book(/|%2F)_executed(/|%2F)([\w.-]+?)\.ipynb")


def rewrite_url(url: str) -> str:
    """``.../book/_executed/<name>.ipynb`` -> ``.../notebooks/<name>.md`` (either spelling)."""
    return _EXECUTED.sub(lambda m: f"notebooks{m.group(1)}{m.group(3)}{SOURCE_SUFFIX}", url)


def _rewrite_buttons(buttons: list) -> None:
    for button in buttons:
        if isinstance(button, dict):
            if isinstance(button.get("url"), str) and "/issues/new" not in button["url"]:
                button["url"] = rewrite_url(button["url"])
            _rewrite_buttons(button.get("buttons", []))


def _script_key(script) -> tuple:
    # the same inline script is registered once with filename None and once with "" (an inline body)
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), getattr(script, "priority", None),
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def fix_page(app, pagename, templatename, context, doctree):
    if pagename.startswith(EXECUTED_DIR):
        _rewrite_buttons(context.get("header_buttons", []))
    scripts = context.get("script_files")
    if scripts:
        seen, unique = set(), []
        for script in scripts:
            key = _script_key(script)
            if key not in seen:
                seen.add(key)
                unique.append(script)
        scripts[:] = unique


BINDER_URL = "https://mybinder.org"


def repository_links(app, config) -> None:
    """``config-inited``: the repository, issue and Binder buttons exactly when a repository URL is set."""
    options = config.html_theme_options
    published = bool(str(options.get("repository_url") or "").strip())
    for flag in ("use_repository_button", "use_issues_button"):
        options[flag] = published
    for flag in ("use_edit_page_button", "use_source_button"):
        options[flag] = False
    launch = dict(options.get("launch_buttons") or {})
    if published:
        launch["binderhub_url"] = launch.get("binderhub_url") or BINDER_URL
        options["launch_buttons"] = launch
    else:
        options["launch_buttons"] = {}


def setup(app):
    app.connect("config-inited", repository_links)
    # priority 900: after sphinx-book-theme builds its buttons (501) and myst-nb adds page scripts
    app.connect("html-page-context", fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
