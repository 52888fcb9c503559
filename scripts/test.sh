#!/usr/bin/env bash
# The test suite: install (with test extras and the headless browser for the report test), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ -f scripts/install_browser.sh ]; then bash scripts/install_browser.sh; fi
.venv/bin/ruff check src tests bench
export GLUE_DIR="${GLUE_DIR:-$(cd .. && pwd)/shared/glue_data}"
.venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
