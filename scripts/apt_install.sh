#!/usr/bin/env bash
# Installs Debian packages non-interactively (through sudo when not root): the system packages the test
# set-up scripts need (install_browser.sh, install_postgres.sh).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$@"
