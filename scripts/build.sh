#!/usr/bin/env bash
# Builds the Worker into build/ with the pinned tools that setup.sh installed,
# so worker-build downloads nothing:
#   build/ingest.wasm   the webhook path's core (this crate --no-default-features, src/abi.rs)
#   build/index.js, build/index_bg.wasm   the workers-rs Worker (worker-build)
#   build/entry.mjs     the entry module (src/entry.mjs): webhooks, and the rest to index.js
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

# The ingest module: no wasm-bindgen, so plain cargo and wasm-opt. Its own
# target directory, so that the two feature sets do not rebuild each other.
INGEST_OPT_LEVEL="${MAILHOOK_INGEST_OPT_LEVEL:-3}"
CARGO_PROFILE_RELEASE_OPT_LEVEL="$INGEST_OPT_LEVEL" CARGO_TARGET_DIR=target/ingest \
  cargo build --lib --release --target wasm32-unknown-unknown --no-default-features --quiet
keep=(--strip-debug --strip-producers)
[ -z "${MAILHOOK_KEEP_NAMES:-}" ] || keep=(--debuginfo)
case "$INGEST_OPT_LEVEL" in s | z) wasm_opt=-Oz ;; *) wasm_opt=-O3 ;; esac
"$WASM_OPT_BIN" target/ingest/wasm32-unknown-unknown/release/mailhook.wasm -o build/ingest.wasm "$wasm_opt" "${keep[@]}" "${FEATURES[@]}"
cp src/entry.mjs build/entry.mjs
