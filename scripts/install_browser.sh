#!/usr/bin/env bash
# Installs the headless browser the report test drives (tests/test_report.py): Debian's chromium and
# chromium-driver. Idempotent: does nothing when both are already on PATH. Needs root (or sudo) and apt.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null | head -1)"
    exit 0
fi

bash "$(dirname "$0")/apt_install.sh" chromium chromium-driver fonts-dejavu-core
chromium --version
chromedriver --version
