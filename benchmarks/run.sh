#!/usr/bin/env bash
# Run the full benchmark and refresh the README's table for this kind of CPU (amx, avx2, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$(python -c "from inspector.bench import cpu_description; print(cpu_description()['kind'])")
inspector bench --json "benchmarks/results/latest-$kind.json" "$@"
python benchmarks/make_table.py "benchmarks/results/latest-$kind.json" README.md
