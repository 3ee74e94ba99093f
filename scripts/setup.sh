#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine (also what CI runs): system packages the real-parts
# tests and the demo need, npm packages, and a build. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The system packages: CI names the same list in .ci/run (LOCKSTEP_APT_PACKAGES).
for pkg in ${LOCKSTEP_APT_PACKAGES:-git mosquitto nix-bin chromium}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's mosquitto package may start a system broker on 1883; Lockstep's tests use their own ports,
# but the hub wants 1883 for its embedded broker.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  echo "setup: note: a system mosquitto is running on 1883; the hub will need another MQTT port (--mqtt-port)"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
