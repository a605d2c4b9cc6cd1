#!/usr/bin/env bash
# Debian packages the end-to-end tests need. Nothing to install yet for the foundation suite
# beyond Python itself; later suites add chromium and prometheus-alertmanager here.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need[@]}"
fi
