#!/usr/bin/env bash
# Installs everything mailhook's build and tests need, at pinned versions, and
# nothing that is already there. Safe to run again: a second run only checks.
#
#   rustup target wasm32-unknown-unknown, components rustfmt and clippy
#   worker-build        WORKER_BUILD_VERSION below
#   wasm-bindgen-cli    exactly the wasm-bindgen version in Cargo.lock
#   npm packages        package-lock.json (wrangler, miniflare, binaryen for wasm-opt, esbuild, …)
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
export WRANGLER_SEND_METRICS=false
say() { printf 'setup: %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { say "$1 is not installed: $2"; exit 1; }
}
need cargo "install Rust with rustup (https://rustup.rs)"
need rustup "install Rust with rustup (https://rustup.rs)"
need node "install Node.js 20.3 or newer"
need npm "install Node.js 20.3 or newer (npm comes with it)"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# rustfmt and clippy: `npm test` checks formatting and lints.
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "adding the $component component"
    rustup component add "$component"
  fi
done

# cargo install at an exact version; --locked first for a reproducible build,
# then without it when a locked dependency is not on the registry here.
installed_crates=$(cargo install --list 2>/dev/null || true)
cargo_install() { # crate version
  if grep -qx "$1 v$2:" <<<"$installed_crates"; then return; fi
  say "installing $1 $2 (once; this takes a few minutes)"
  cargo install "$1" --version "=$2" --locked --quiet 2>/dev/null \
    || cargo install "$1" --version "=$2" --quiet
}

cargo_install worker-build "$WORKER_BUILD_VERSION"

if [ ! -f Cargo.lock ]; then cargo generate-lockfile --quiet; fi
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
[ -n "$WASM_BINDGEN_VERSION" ] || { say "Cargo.lock names no wasm-bindgen version"; exit 1; }
cargo_install wasm-bindgen-cli "$WASM_BINDGEN_VERSION"

# npm ci only when node_modules does not match package-lock.json.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi
