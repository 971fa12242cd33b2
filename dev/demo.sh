#!/usr/bin/env bash
# The main job: installs dependencies, builds the flowless program and runs
# `flowless demo` (synthesise the built-in benchmark, train the flow teacher,
# RGB-only, two-stream and DCD student detectors, evaluate, print one table).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/dev/setup.sh"
build="${FLOWLESS_BUILD_DIR:-$here/build/release}"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target flowless_cli
"$build/tools/flowless" demo --out "${FLOWLESS_DEMO_DIR:-$here/out/demo}" "$@"
