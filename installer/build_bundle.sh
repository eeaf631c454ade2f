#!/usr/bin/env bash
# Build an offline bundle: the project wheel and every runtime wheel it needs, so a factory PC
# without internet can install with `pip install --no-index --find-links wheels inspector[gui]`.
#   installer/build_bundle.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/dist/bundle}"
mkdir -p "$out/wheels"
python3 -m pip wheel -q --wheel-dir "$out/wheels" "$here[gui]"
cp "$here/installer/"{install.sh,inspector.desktop,inspector-headless.service,99-machine-vision.rules} "$out/"
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "bundle: $out.tar.gz"
