#!/usr/bin/env bash
# Builds the Worker into build/ with the pinned tools that setup.sh installed,
# so worker-build downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
exec worker-build --release
