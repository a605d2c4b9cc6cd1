#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python (installed with apt-get when missing).
# The foundation suite needs none; browser and Alertmanager tests add chromium and
# prometheus-alertmanager here.
set -euo pipefail
packages=()
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi
