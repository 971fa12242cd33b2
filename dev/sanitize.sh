#!/usr/bin/env bash
# The sanitizer leg: builds the whole suite (tests, CLI, examples; Debug -O1,
# AddressSanitizer + UndefinedBehaviorSanitizer, -fno-sanitize-recover) with the
# `sanitize` CMake preset and runs it with CTest, then the GEMM tests once more
# built with -march=native (the packed SIMD paths, which the preset's build
# does not compile). Any sanitizer report fails. Debug information is -g1
# (functions and line tables, no variables): reports keep file:line, and the
# build takes about 40 % less time than with -g.
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

# The packed GEMM's hand-written SIMD (AVX-512 or AVX2 kernels, packing, the
# fused Winograd) is compiled only with -march=native, which the Debug preset
# above does not use: there every product takes the Eigen path. Its tests run
# once more, built for this CPU, under the same sanitizers.
cxx="${CXX:-g++}"
# (The macros go through a variable: with pipefail, grep -q closing the pipe early fails the pipeline.)
native_macros="$(echo | "$cxx" -march=native -dM -E -x c++ -)"
if grep -qE '__AVX512F__|__AVX2__' <<< "$native_macros"; then
  echo "sanitize: tests/test_gemm.cpp with -march=native (the packed GEMM's SIMD paths)"
  "$cxx" -std=c++17 -O1 -g1 -march=native -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=undefined -I include -I tests -I /usr/include/eigen3 \
    -DFLOWLESS_TEST_DATA="\"$here/tests/data\"" -DFLOWLESS_SOURCE_DIR="\"$here\"" \
    -DFLOWLESS_BINARY_DIR="\"$here/build/sanitize\"" tests/main.cpp tests/test_gemm.cpp \
    -o build/sanitize/test_gemm_native -lpthread
  build/sanitize/test_gemm_native
else
  echo "sanitize: this CPU has neither AVX2 nor AVX-512: no packed GEMM to check natively"
fi
