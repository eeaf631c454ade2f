#!/usr/bin/env bash
# Run the full benchmark and refresh the README table.
set -euo pipefail
cd "$(dirname "$0")/.."
inspector bench --json benchmarks/results/latest.json "$@"
python benchmarks/make_table.py benchmarks/results/latest.json README.md
