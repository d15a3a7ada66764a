#!/usr/bin/env bash
# One device call for issue 11 (runtime: the GPU forward pass in named steps, typed GEMM
# descriptors, one activation enum, the shared attention fragments, kernel options instead of
# environment variables) and issue 16 item 3 (profile identity). On an H200, with the binaries
# built from the branch under test:
#  1. the GPU tests `gpu_equals_cpu` (every model vs the CPU reference, every kernel option's
#     other position) and `switching_gpu` (switches bit for bit against fresh loads);
#  2. `ptm bench infer` with the default kernel options (BERT-base and BERT-large fp16, batch
#     1/8/32 × 128 tokens, 200 iterations, per-step profile), then each A/B flag on BERT-base —
#     compare with BENCHMARKS.md "Runtime: inference latency" (v3: 0.529 / 0.759 / 1.964 ms);
#  3. `ptm bench switch` on BERT-base (4 tenants) and BERT-large (3) fp16 zoos made here —
#     compare with BENCHMARKS.md "Runtime: weight switching" (3.974 ms, 1.004× the floor);
#  4. `ptm profile check` of the shipped H200 profile against this build, this GPU and a
#     BERT-base fp16 zoo (it must match: warnings only).
# Usage (repository root on the GPU machine): runtime/bench/device-issue11.sh BIN_DIR
# BIN_DIR holds a release `ptm` and the test binaries `gpu_equals_cpu-*`, `switching_gpu-*`
# (`cargo test --release -p ptm-runtime --no-run`), stripped. Logs under $OUT; a short summary
# last. SKIP_TESTS=1, SKIP_VARIANTS=1, SKIP_SWITCH=1 leave parts out.
set -u
B=$(cd "${1:-.device/i11}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$O/gpu.txt"
"$B/ptm" --version | tee -a "$O/gpu.txt"
SECONDS=0
if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== gpu tests"
  for t in gpu_equals_cpu switching_gpu; do
    PTM_TEST_CUDA=1 timeout 300 "$B"/$t-* --test-threads 1 --nocapture > "$O/$t.txt" 2>&1
    echo "rc=$?" >> "$O/$t.txt"
  done
  echo "tests done at ${SECONDS} s"
fi
echo "== bench infer (default kernel options)"
timeout 240 "$B/ptm" bench infer --arch bert-base,bert-large --dtype fp16 --batch 1,8,32 --seq 128 \
  --iters 200 --profile > "$O/bench_infer.txt" 2>&1; echo "rc=$?" >> "$O/bench_infer.txt"
if [ -z "${SKIP_VARIANTS:-}" ]; then
  : > "$O/bench_infer_variants.txt"
  for v in --residual-epilogue --no-single-pass-attention --no-fused-attention --no-cublaslt; do
    echo "== $v" >> "$O/bench_infer_variants.txt"
    timeout 100 "$B/ptm" bench infer --arch bert-base --dtype fp16 --batch 1,8,32 --seq 128 \
      --iters 100 $v >> "$O/bench_infer_variants.txt" 2>&1; echo "rc=$?" >> "$O/bench_infer_variants.txt"
  done
fi
echo "bench infer done at ${SECONDS} s"
echo "== zoos"
"$B/ptm" zoo make --arch bert-base --tenants 4 --dtype fp16 --out /tmp/zoos/bert-base > /dev/null &
[ -n "${SKIP_SWITCH:-}" ] || "$B/ptm" zoo make --arch bert-large --tenants 3 --dtype fp16 --out /tmp/zoos/bert-large > /dev/null &
wait
if [ -z "${SKIP_SWITCH:-}" ]; then
  echo "== bench switch"
  timeout 240 "$B/ptm" bench switch --zoo /tmp/zoos --iters 40 --baseline-iters 5 > "$O/bench_switch.txt" 2>&1
  echo "rc=$?" >> "$O/bench_switch.txt"
fi
echo "== profile check"
"$B/ptm" profile check scenarios/profiles/h200.ron --zoo /tmp/zoos/bert-base --device cuda:0 \
  --dtype fp16 > "$O/profile_check.txt" 2>&1; echo "rc=$?" >> "$O/profile_check.txt"
echo "all done at ${SECONDS} s"
echo "== summary"
for t in gpu_equals_cpu switching_gpu; do
  [ -f "$O/$t.txt" ] && grep -E "^test .*(ok|FAILED)$|panicked|^test result|^rc=" "$O/$t.txt" | cut -c1-200
done
grep -E "^kernel options|^\||^rc=" "$O/bench_infer.txt"
grep "^profile bert-base fp16 batch 32" "$O/bench_infer.txt" | cut -c1-400
[ -f "$O/bench_infer_variants.txt" ] && grep -E "^==|^kernel options|^\| bert|^rc=" "$O/bench_infer_variants.txt"
[ -f "$O/bench_switch.txt" ] && grep -E "^\| bert|^rc=" "$O/bench_switch.txt"
cat "$O/profile_check.txt"
