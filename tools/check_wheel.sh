#!/usr/bin/env bash
# Release check: build the wheel and sdist, `twine check` them, look inside the wheel (no notebooks, no data, its size),
# then install the wheel alone into a fresh venv (no nbdev, no repo on sys.path) and train one tiny epoch with it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rm -rf dist
python3 -m build -q . >/dev/null 2>&1 || python3 -m build . # on failure, rerun loudly
python3 -m twine check --strict dist/*
python3 tools/inspect_wheel.py dist/*.whl

venv=${ADAMW_WHEEL_VENV:-/tmp/adamw_course_wheel_venv}
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "$(ls dist/*.whl)" 2>&1 | { grep -v "^WARNING: Location" || true; }
# Run from an empty folder so that only the installed wheel can be imported; use the offline CIFAR-10 copy if there is one.
shared="$root/../shared/data/cifar10-jpeg.tgz"
if [ -z "${ADAMW_COURSE_CIFAR10:-}" ] && [ -f "$shared" ]; then export ADAMW_COURSE_CIFAR10="$shared"; fi
tmp=$(mktemp -d)
(cd "$tmp" && "$venv/bin/python" "$root/tools/smoke.py")
rm -rf "$tmp"
