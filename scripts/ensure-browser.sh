#!/usr/bin/env bash
# The console's browser test (platform/tests/console.rs) drives Debian's Chromium through
# chromedriver. Installs both with apt-get (as root, or with sudo) where either is missing;
# fails with what to do otherwise.
set -euo pipefail
log() { echo "ensure-browser: $*" >&2; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have && exit 0

packages=(chromium chromium-driver)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  log "installing ${packages[*]} with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  log "installing ${packages[*]} with sudo apt-get"
  sudo apt-get update -qq >&2
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
fi
have || {
  log "chromium and chromedriver are needed by the console's browser test and could not be installed:"
  log "install them (Debian: apt-get install chromium chromium-driver), or point CHROMIUM and CHROMEDRIVER at them"
  exit 1
}
