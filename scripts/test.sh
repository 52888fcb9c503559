#!/usr/bin/env bash
# The test suite: install (with test extras, the headless browser for the report test and PostgreSQL for the
# shared-study sweep test), lint, type-check, check the layers, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ -f scripts/install_browser.sh ]; then bash scripts/install_browser.sh; fi
bash scripts/install_postgres.sh  # the PostgreSQL server the shared-study sweep test starts (tests/test_sweep_postgres.py)
.venv/bin/ruff check src tests bench
.venv/bin/mypy                  # src/, configured in pyproject.toml
.venv/bin/lint-imports          # the layers of DESIGN.md (contract in pyproject.toml)
# Installs where users are: the pins and their dependencies resolve to wheels on Python 3.12 and 3.13 (about
# 40 s; pip fetches torch's CUDA wheels whole to read their metadata, so it is a step, not part of the suite)
.venv/bin/python -m pytest -p no:xdist -q tests/test_install.py -m resolution
export GLUE_DIR="${GLUE_DIR:-$(cd .. && pwd)/shared/glue_data}"
.venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
