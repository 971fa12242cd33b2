#!/usr/bin/env bash
# The sanitizer leg: builds the whole suite (tests, CLI, examples; Debug -O1,
# AddressSanitizer + UndefinedBehaviorSanitizer, -fno-sanitize-recover) with the
# `sanitize` CMake preset and runs it with CTest. Any sanitizer report fails.
#
#   bash dev/sanitize.sh          # installs the Debian packages first (dev/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/dev/setup.sh"
jobs="${FLOWLESS_JOBS:-$(nproc)}"
cd "$here"
cmake --preset sanitize
cmake --build --preset sanitize -j "$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --preset sanitize -j "$jobs" --timeout 3000
