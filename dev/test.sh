#!/usr/bin/env bash
# The test command: installs dependencies, configures a release build, builds
# everything (library tests, examples, tools, benchmarks, the CUDA backend
# when nvcc is found) and runs the whole suite with CTest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/dev/setup.sh"
build="${FLOWLESS_BUILD_DIR:-$here/build/release}"
jobs="${FLOWLESS_JOBS:-$(nproc)}"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 1500
