#!/usr/bin/env bash
# Reproduces the measurements of docs/performance.md on this machine, in one
# run: whole-detector inference (fp32 at 1 and 2 threads, bf16 at 2 threads),
# the DCD student against the RGB-only detector, a training step, peak memory
# against video length, and (when /usr/bin/python3 has torch) the side-by-side
# PyTorch comparison. Run it on an otherwise idle machine.
#
#   bash dev/perf_report.sh [OUT_DIR]        # default build/perf_report
#
# Needs a release build (bash dev/test.sh makes one; FLOWLESS_BUILD_DIR to
# point elsewhere). Every result is one JSON line in OUT_DIR/*.json; the
# summary lines printed at the end are what docs/performance.md quotes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FLOWLESS_BUILD_DIR:-$here/build/release}"
out="${1:-$here/build/perf_report}"
fl="$build/tools/flowless"
[ -x "$fl" ] || { echo "perf_report: $fl not found; build first (bash dev/test.sh)" >&2; exit 1; }
mkdir -p "$out"
bench() { "$fl" bench --preset actionformer-thumos --json "$@"; }

rm -f "$out"/*.json
echo "== inference, fp32, 1 and 2 threads (T = 2304)" >&2
bench --T 2304 --threads 1 --repeats 5 > "$out/fp32_t1.json"
bench --T 2304 --threads 2 --repeats 5 --profile --scaling > "$out/fp32_t2.json"
# The bf16 runs only where this build multiplies in bf16 (AVX-512 BF16); elsewhere --precision bf16
# runs fp32, and PyTorch's bf16 autocast is emulated (a training step took 198 s on an AVX2 Zen 3).
bf16=0
grep -q '"bf16_available":true' "$out/fp32_t1.json" && bf16=1
if [ "$bf16" = 1 ]; then
  echo "== inference, bf16, 2 threads" >&2
  bench --T 2304 --threads 2 --repeats 5 --precision bf16 --profile > "$out/bf16_t2.json"
else
  echo "== no bf16 runs: this build has no AVX-512 BF16" >&2
fi
echo "== DCD student vs RGB-only detector (2 threads)" >&2
bench --T 2304 --threads 2 --repeats 9 --student > "$out/student_fp32.json"
[ "$bf16" = 1 ] && bench --T 2304 --threads 2 --repeats 9 --student --precision bf16 > "$out/student_bf16.json"
echo "== training step, batch 2, T = 2304, 2 threads" >&2
bench --T 2304 --threads 2 --repeats 3 --train > "$out/train_t2.json"
[ "$bf16" = 1 ] && bench --T 2304 --threads 2 --repeats 3 --train --train-precision bf16 > "$out/train_bf16_t2.json"
echo "== peak memory against video length (one process each)" >&2
for T in 2304 4608 9216 20000; do bench --T "$T" --threads 2 --repeats 1 --warmup 0 > "$out/rss_T$T.json"; done
echo "== a short video (T = 192)" >&2
bench --T 192 --threads 2 --repeats 9 > "$out/fp32_T192.json"
[ "$bf16" = 1 ] && bench --T 192 --threads 2 --repeats 9 --precision bf16 > "$out/bf16_T192.json"

py=/usr/bin/python3
summary() {
  "$py" - "$out" <<'EOF' 2>/dev/null || cat "$out"/*.json
import json, os, sys
d = sys.argv[1]
j = lambda n: json.load(open(os.path.join(d, n)))
have = lambda n: os.path.exists(os.path.join(d, n))
a, b = j("fp32_t1.json"), j("fp32_t2.json")
h = j("bf16_t2.json") if have("bf16_t2.json") else None
print(f"fp32 1 thread : network {a['network_seconds']:.3f} s ({a['network_gflops']:.0f} GFLOP/s), GEMM {a['gemm_gflops']:.0f} GFLOP/s")
print(f"fp32 2 threads: network {b['network_seconds']:.3f} s ({b['network_gflops']:.0f} GFLOP/s), inference {b['inference_seconds']:.3f} s, "
      f"GEMM {b['gemm_gflops']:.0f} GFLOP/s -> {100 * b['network_gflops'] / b['gemm_gflops']:.0f}% of GEMM; thread scaling {a['network_seconds'] / b['network_seconds']:.2f}x across runs")
print(f"thread scaling, alternating in one run: 1 thread {b['scaling_t1_seconds']:.3f} s, 2 threads {b['scaling_tn_seconds']:.3f} s -> {b['thread_scaling']:.2f}x")
if h:
    print(f"bf16 2 threads: network {h['network_seconds']:.3f} s ({h['network_gflops']:.0f} fp32-equivalent GFLOP/s), inference {h['inference_seconds']:.3f} s, "
          f"worst logit/offset change {h.get('bf16_max_rel_diff', 0):.2e}")
else:
    print("bf16: not run (this build has no AVX-512 BF16)")
for name, k in (("fp32", b), ("bf16", h)):
    if not k:
        continue
    if "network_seconds_frozen" in k:
        print(f"{name} 2 threads, weights packed once across videos (as flowless detect over a dataset): network "
              f"{k['network_seconds_frozen']:.3f} s, inference {k['inference_seconds_frozen']:.3f} s")
for n in ("student_fp32.json", "student_bf16.json"):
    if not have(n):
        continue
    s = j(n)
    print(f"DCD student ({s['precision']}): {s['student_inference_seconds']:.3f} s vs detector {s['detector_inference_seconds']:.3f} s "
          f"-> {s['student_time_ratio']:.2f}x time, {s['student_params_ratio']:.2f}x parameters ({s['student_params']} vs {s['params']})")
t = j("train_t2.json")
t16 = j("train_bf16_t2.json") if have("train_bf16_t2.json") else None
print(f"training step (batch 2, T = 2304, 2 threads): fp32 {t['train_step_seconds']:.2f} s, " +
      (f"bf16 mixed precision {t16['train_step_seconds']:.2f} s, " if t16 else "") + f"peak RSS {t['peak_rss_mb']:.0f} MB")
for n in ("fp32_T192.json", "bf16_T192.json"):
    if not have(n):
        continue
    k = j(n)
    print(f"T = 192, {k['precision']}, 2 threads: network {k['network_seconds'] * 1e3:.1f} ms, "
          f"{k['network_seconds_frozen'] * 1e3:.1f} ms with the weights packed once across videos")
for T in (2304, 4608, 9216, 20000):
    r = j(f"rss_T{T}.json")
    print(f"T = {T:5d}: buffer {r['T']:5d}, peak RSS {r['peak_rss_mb_inference']:.0f} MB, inference {r['inference_seconds']:.2f} s")
EOF
}
summary | tee "$out/summary.txt"

if "$py" -c "import torch, numpy" 2>/dev/null; then
  # PyTorch at its best (glibc malloc tuned so freed blocks stay mapped; the ratios to read), then as
  # shipped in an inference-only process (every forward page-faults its large tensors; the issue's baseline).
  echo "== PyTorch side by side, PyTorch's malloc tuned (dev/compare_pytorch.py)" >&2
  bf16_flag=()
  [ "$bf16" = 1 ] && bf16_flag=(--bf16)
  "$py" "$here/dev/compare_pytorch.py" --build "$build" --threads 2 --repeats 3 --rounds 2 "${bf16_flag[@]}" --json "$out/pytorch.json" \
    | tee "$out/pytorch.txt" | grep -E "malloc|BLAS|parity|round|median|train|bf16" >&2
  echo "== PyTorch side by side, glibc malloc as shipped, inference only" >&2
  "$py" "$here/dev/compare_pytorch.py" --build "$build" --threads 2 --repeats 3 --rounds 2 "${bf16_flag[@]}" --no-train \
    --torch-malloc default --json "$out/pytorch_default_malloc.json" \
    | tee "$out/pytorch_default_malloc.txt" | grep -E "malloc|round|median|bf16" >&2
else
  echo "perf_report: /usr/bin/python3 has no torch (apt-get install python3-torch python3-numpy libopenblas0-pthread); PyTorch comparison skipped" >&2
fi
