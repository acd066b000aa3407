#!/usr/bin/env bash
# Release check: build the wheel and sdist, `twine check` them, look inside the wheel (no notebooks, no data, its size),
# then install the wheel alone into a fresh venv (no nbdev, no repo on sys.path), measure what it pulled in beyond torch and
# torchvision (tools/install_closure.py; over the budget below fails), train one tiny epoch with it, and run every lesson
# there as a reader would on Colab (tools/colab_check.py).
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
# The install closure beyond torch/torchvision: 11 packages, 77.6 MB with fastprogress 1.0.5 (matplotlib and fonttools
# are 66 MB of it); fastprogress 1.1's web stack made it 32 packages, 109.7 MB. The budget leaves room for version drift.
"$venv/bin/python" tools/install_closure.py --summary --max-packages 20 --max-mb 95
# Run from an empty folder so that only the installed wheel can be imported; use the offline CIFAR-10 and WikiText-2
# copies if there are any.
shared="$root/../shared/data/cifar10-jpeg.tgz"
if [ -z "${ADAMW_COURSE_CIFAR10:-}" ] && [ -f "$shared" ]; then export ADAMW_COURSE_CIFAR10="$shared"; fi
wikitext="$root/../shared/data/wikitext-2"
if [ -z "${ADAMW_COURSE_WIKITEXT2:-}" ] && [ -d "$wikitext" ]; then export ADAMW_COURSE_WIKITEXT2="$wikitext"; fi
tmp=$(mktemp -d)
(cd "$tmp" && "$venv/bin/python" "$root/tools/smoke.py")

# The Colab check: every lesson as a reader runs it ("Run all": every cell, IN_TEST unset, the default size preset, on the
# CPU) against the installed wheel, from a copy of the single notebook file, in a Jupyter kernel (Colab opens one file,
# and has ipykernel, nbclient and pytest already). A lesson that errors or takes over the limit fails the check.
"$venv/bin/pip" install -q --disable-pip-version-check ipykernel nbclient pytest 2>&1 | { grep -v "^WARNING: Location" || true; }
(cd "$tmp" && "$venv/bin/python" "$root/tools/colab_check.py" --limit-s "${ADAMW_COLAB_LIMIT_S:-300}" "$root"/nbs/[0-9]*.ipynb "$root/nbs/index.ipynb")
rm -rf "$tmp"
