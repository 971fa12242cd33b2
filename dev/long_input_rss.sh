#!/usr/bin/env bash
# Peak-memory growth of inference on long videos (docs/robustness.md): one
# process per (arch, T) with a small model; memory must grow linearly in T.
#   bash dev/long_input_rss.sh [T ...]     (default 12500 25000 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TMPDIR:-/tmp}/flowless_long_input_rss
${CXX:-g++} -std=c++17 -O2 -march=native -DNDEBUG -I include -isystem /usr/include/eigen3 dev/long_input_rss.cpp -o "$bin" -lpthread
Ts=("$@")
[ ${#Ts[@]} -eq 0 ] && Ts=(12500 25000 50000)
for arch in actionformer temporalmaxer; do
  for T in "${Ts[@]}"; do "$bin" "$T" "$arch"; done
done
