#!/usr/bin/env bash
# Builds the Worker into build/ (build/index.js and build/index_bg.wasm, by
# worker-build) with the pinned tools that setup.sh installed, so worker-build
# downloads nothing; and build/registry.json, the registry of sources as data
# (`cargo run --example registry`), from which the CLI and the integration
# tests derive how each source authenticates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
FEATURES=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory
  --enable-multivalue --enable-reference-types)

worker-build --release

# worker-build keeps the Wasm name section (wasm-opt --debuginfo) for readable
# stack traces; it is a tenth of the binary. Panic messages still carry their
# file and line (console_error_panic_hook), so mailhook ships without it.
[ -n "${MAILHOOK_KEEP_NAMES:-}" ] || "$WASM_OPT_BIN" build/index_bg.wasm -o build/index_bg.wasm --strip-debug --strip-producers \
  "${FEATURES[@]}" --enable-exception-handling

cargo run --quiet --example registry > build/registry.json.tmp
mv build/registry.json.tmp build/registry.json
