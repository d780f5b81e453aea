#!/usr/bin/env bash
# The release-profile sweep behind the choice in Cargo.toml: builds with each
# Rust opt-level and runs a short `npm run bench` against it, writing
# bench/results/profile-<level>.md (and .json). About 3 minutes per level.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
for level in ${LEVELS:-3 s z}; do
  echo "profiles: opt-level=$level" >&2
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$level BENCH_SECONDS=${BENCH_SECONDS:-6} BENCH_ROUNDS=${BENCH_ROUNDS:-1} \
    BENCH_MD="bench/results/profile-$level.md" node bench/run.mjs
done
