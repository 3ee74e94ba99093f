#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine (also what CI runs): system packages the real-parts
# tests and the demo need, npm packages, and a build. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The system packages: CI names the same list in .ci/run (LOCKSTEP_APT_PACKAGES).
for pkg in ${LOCKSTEP_APT_PACKAGES:-git mosquitto redis-server nix-bin chromium openssh-client util-linux iproute2}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's mosquitto and redis-server packages start system services where systemd runs. The tests
# start their own Mosquitto and redis-server on free ports, and the hub's embedded broker wants 1883:
# so a service that this script just installed is stopped and disabled; one that was there before is
# left alone, with a note.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  if [[ " ${need[*]:-} " == *" mosquitto "* ]]; then
    echo "setup: stopping the mosquitto service the package just started (Lockstep runs its own brokers)"
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
  else
    echo "setup: note: a system mosquitto is running on 1883; give the hub another MQTT port (LOCKSTEP_MQTT_PORT)"
  fi
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null && [[ " ${need[*]:-} " == *" redis-server "* ]]; then
  echo "setup: stopping the redis-server service the package just started (the tests run their own)"
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node scripts/build-if-stale.mjs
