#!/usr/bin/env bash
# Installs the Debian packages flowless needs to build, test and run its demo.
# Idempotent: skips apt when everything is already present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build libeigen3-dev doctest-dev libbenchmark-dev libcli11-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "flowless setup: installing ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
