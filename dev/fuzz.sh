#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan) and runs each
# for SECONDS seconds (default 60), one after the other.
#
#   bash dev/fuzz.sh [seconds_per_target] [target ...]
#
# Targets: npy zip safetensors pth json annotations dataset_info predictions
# detector_config pyconfig.
# Every target checks that any input either parses or throws flowless::Error
# (no crash, no other exception, no sanitizer report, no allocation beyond
# the limits below). Seeds: fuzz/corpus/<target>/ (read only; new inputs go
# to build-fuzz/corpus/<target>/). A failing input is written to
# build-fuzz/artifacts/<target>/; copy it into fuzz/corpus/<target>/ as a
# regression seed once fixed. Environment: FUZZ_BUILD (build folder,
# default build-fuzz), FUZZ_JOBS (build parallelism, default 1),
# FUZZ_MAX_LEN (default 65536), CXX (default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(npy zip safetensors pth json annotations dataset_info predictions detector_config pyconfig)
BUILD=${FUZZ_BUILD:-build-fuzz}
CXX=${CXX:-clang++}

# ---- setup: clang with the libFuzzer runtime -----------------------------------
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found; on Debian/Ubuntu: apt-get install -y clang-14 libclang-rt-14-dev" >&2
  exit 1
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' > "$probe/p.cpp"
if ! "$CXX" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>/dev/null; then
  echo "fuzz.sh: $CXX cannot link libFuzzer; installing its runtime (libclang-rt-14-dev)" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y libclang-rt-14-dev >&2
  else
    echo "fuzz.sh: run as root: apt-get install -y libclang-rt-14-dev" >&2
    exit 1
  fi
fi

# ---- build ------------------------------------------------------------------------
CXX="$CXX" cmake -S fuzz -B "$BUILD" -G Ninja >/dev/null
ninja -C "$BUILD" -j"${FUZZ_JOBS:-1}" $(printf 'fuzz_%s ' "${TARGETS[@]}")

# ---- run --------------------------------------------------------------------------
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t"
  echo "=== fuzz_$t: ${SECONDS_PER_TARGET}s" >&2
  log="$BUILD/fuzz_$t.log"
  if "$BUILD/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
      -max_len="${FUZZ_MAX_LEN:-65536}" -timeout=25 -print_final_stats=1 \
      -artifact_prefix="$BUILD/artifacts/$t/" "$BUILD/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz_$t: ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs)" >&2
  else
    status=1
    echo "fuzz_$t: FAILED; see $log and $BUILD/artifacts/$t/" >&2
    tail -40 "$log" >&2
  fi
done
exit $status
