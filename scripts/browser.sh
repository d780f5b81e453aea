#!/usr/bin/env bash
# The browser of the console's tests: Debian's chromium, driven by
# playwright-core (Playwright's own browser download cannot be fetched here).
# Installs it where it is missing; says what to do where it cannot.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "setup: chromium is missing and this user cannot install it; run: apt-get install chromium (as root)" >&2
  exit 1
fi
echo "setup: installing chromium (Debian's package; once)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "setup: chromium did not install; see apt-get's output above" >&2; exit 1; }
