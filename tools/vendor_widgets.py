"""Copy the book's front-end files from node_modules/ into book/_static/vendor/ (git-ignored).

The built book must load every script from its own host (no CDN), so the files the pages need come from
the npm packages pinned in package.json / package-lock.json (`npm ci` installs them):

- ``requirejs``                      -> vendor/require.js                (AMD loader the widget manager needs)
- ``@jupyter-widgets/html-manager``  -> vendor/html-manager/embed-amd.js (renders saved widget state) and
                                        the font files it loads from beside itself
- ``mathjax``                        -> vendor/mathjax/                  (the es5 build: tex-chtml.js + parts)
- vendor/npm/                        -> fallback folder of the widget manager's module loader (see
                                        book/_static/widgets_offline.js); empty unless a third-party widget
                                        package is added here as <package>@<version>/dist/...

_config.yml names these paths (``nb_ipywidgets_js``, ``mathjax_path``). Usage, from the repository root:

    python tools/vendor_widgets.py [--node-modules node_modules] [--dest book/_static/vendor]

The destination is replaced as a whole, so a version change never leaves stale files behind.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# html-manager's dist/ also holds a non-AMD bundle, a duplicate "lib" bundle and source maps: not needed.
_HTML_MANAGER_SKIP = {"embed.js", "embed.js.map", "libembed-amd.js", "libembed-amd.js.map"}


def _package_dir(node_modules: Path, name: str) -> Path:
    pkg = node_modules / name
    if not (pkg / "package.json").is_file():
        raise FileNotFoundError(
            f"npm package {name!r} is not installed ({pkg}/package.json missing); "
            "run `npm ci` in the repository root first")
    return pkg


def _version(pkg: Path) -> str:
    return json.loads((pkg / "package.json").read_text(encoding="utf-8"))["version"]


def vendor(node_modules: Path, dest: Path) -> dict[str, str]:
    """Rebuild ``dest`` from ``node_modules``; return {package: version} of what was copied."""
    node_modules = Path(node_modules)
    dest = Path(dest)
    if not node_modules.is_dir():
        raise FileNotFoundError(f"{node_modules} does not exist; run `npm ci` in the repository root first")
    requirejs = _package_dir(node_modules, "requirejs")
    manager = _package_dir(node_modules, "@jupyter-widgets/html-manager")
    mathjax = _package_dir(node_modules, "mathjax")

    staging = dest.with_name(dest.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    shutil.copy2(requirejs / "require.js", staging / "require.js")

    manager_out = staging / "html-manager"
    manager_out.mkdir()
    dist = manager / "dist"
    if not (dist / "embed-amd.js").is_file():
        raise FileNotFoundError(f"{dist / 'embed-amd.js'} missing: unexpected @jupyter-widgets/html-manager layout")
    for path in sorted(dist.iterdir()):
        if path.is_file() and path.name not in _HTML_MANAGER_SKIP:
            shutil.copy2(path, manager_out / path.name)
    if (manager / "LICENSE").is_file():
        shutil.copy2(manager / "LICENSE", manager_out / "LICENSE")

    shutil.copytree(mathjax / "es5", staging / "mathjax")
    if (mathjax / "LICENSE").is_file():
        shutil.copy2(mathjax / "LICENSE", staging / "mathjax" / "LICENSE")

    (staging / "npm").mkdir()
    versions = {"requirejs": _version(requirejs), "@jupyter-widgets/html-manager": _version(manager),
                "mathjax": _version(mathjax)}
    (staging / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")

    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path, default=ROOT / "node_modules")
    parser.add_argument("--dest", type=Path, default=ROOT / "book" / "_static" / "vendor")
    args = parser.parse_args(argv)
    try:
        versions = vendor(args.node_modules, args.dest)
    except FileNotFoundError as exc:
        print(f"vendor_widgets: {exc}", file=sys.stderr)
        return 1
    print("vendored into", args.dest, ":", ", ".join(f"{k}@{v}" for k, v in versions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
