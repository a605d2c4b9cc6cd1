#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python (installed with apt-get when missing):
# prometheus, which scrapes the service's /metrics in an end-to-end test, and
# prometheus-alertmanager, the real Alertmanager the notifier tests post alerts to, and
# chromium, the headless browser the page tests drive (through playwright).
set -euo pipefail
packages=(prometheus prometheus-alertmanager chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
