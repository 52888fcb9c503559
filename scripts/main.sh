#!/usr/bin/env bash
# The main job on defaults: install, train the GloVe BiLSTM baseline on every GLUE task whose data is
# found (../shared/glue_data, $GLUE_DIR or the cache; downloaded otherwise), then write the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="runs/$(date +%Y%m%d-%H%M%S)-glove-bilstm"
.venv/bin/gluebench run --output-dir "$out" "$@"
.venv/bin/gluebench report "$out" -o "$out/report.html"
echo "report: $out/report.html"
