#!/usr/bin/env bash
# One device call for issue 15, GPU half (parameter-efficient tenants in a GPU PET slot), on an
# H200, with binaries built from the branch under test:
#  1. the PET GPU tests (`tests/pet_gpu.rs`): kernels vs their CPU twins; each row of mixed GPU
#     batches (every kind, every head, fp32/fp16/bf16, tiny and BERT-base) vs its tenant alone
#     on the CPU reference, and bit-equal to the same tenant alone on the GPU; pipelined loads
#     and graph replays equal resident eager passes;
#  2. `ptm infer --device cuda` on LoRA tenants (BERT-base, one per head, fp32/fp16/bf16; tiny
#     fp32) against Hugging Face transformers + peft loading the same files (peft_reference.py);
#  3. `ptm bench pet` on 10,000 BERT-base fp16 LoRA tenants (rank 8, query/value): all
#     registered and in the adapter pool, memory per tenant; a 32 × 128 batch of 32 distinct
#     tenants vs the plain backbone; misses pipelined under the backbone vs waited for;
#  4. the peer: HF peft serving 100 of the same adapters one request at a time (set_adapter);
#  5. unless SKIP_PLAIN=1: the plain path unchanged — `ptm bench infer` (BERT-base fp16 batch
#     1/8/32 × 128; BENCHMARKS.md: 0.529 / 0.759 / 1.964 ms) right after the tests, and
#     `gpu_equals_cpu` last, in whatever remains of a 470-second budget.
# SKIP_TESTS=1 leaves step 1 out (runtime/bench/device-round2.sh c: the tests ran in part a).
# Usage (repository root on the GPU machine): runtime/bench/device-issue15.sh BIN_DIR
# BIN_DIR holds a release `ptm` and the test binaries `pet_gpu-*` and `gpu_equals_cpu-*`
# (cargo test --release -p ptm-runtime --test pet_gpu --test gpu_equals_cpu --no-run), stripped.
# Logs under $OUT; a short table last. About 6 minutes.
set -u
B=$(cd "${1:-.device/i15}" && pwd)
R=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
W=${WORK:-/tmp/i15}; mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$O/gpu.txt"
"$B/ptm" --version | tee -a "$O/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" 2>&1 | tee "$O/versions.txt"
SECONDS=0
# The 10,000-tenant zoo (6 GB) is written on the CPU while steps 1 and 2 run.
( "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 --targets query,value --tenants 10000 \
    --dtype fp16 --threads 8 --out "$W/pz10k" > "$O/zoo_10k.txt" 2>&1; echo "rc=$?" >> "$O/zoo_10k.txt" ) &
ZOO=$!
if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== 1. PET GPU tests"
  PTM_TEST_CUDA=1 timeout 240 "$B"/pet_gpu-* --test-threads 1 --nocapture > "$O/pet_gpu_tests.txt" 2>&1
  echo "rc=$?" >> "$O/pet_gpu_tests.txt"
  echo "tests done at ${SECONDS} s"
fi
if [ -z "${SKIP_PLAIN:-}" ]; then
  timeout 90 "$B/ptm" bench infer --arch bert-base --dtype fp16 --batch 1,8,32 --seq 128 --iters 200 \
    > "$O/bench_infer.txt" 2>&1; echo "rc=$?" >> "$O/bench_infer.txt"
  echo "bench infer done at ${SECONDS} s"
fi
echo "== 2. ptm infer --device cuda vs transformers + peft"
TEXTS=(--text "The quick brown fox jumps over the lazy dog." --text "gpu" --text "Parameter-efficient tenants share one backbone; each adds its own small delta.")
for arch in tiny bert-base; do
  Z=$W/pet-$arch
  "$B/ptm" zoo make --arch $arch --pet lora --rank 8 --targets query,value --tenants 3 --dtype fp32 --out "$Z" > "$O/zoo_$arch.txt" 2>&1
  dts="fp32 fp16 bf16"; [ $arch = tiny ] && dts=fp32
  for dt in $dts; do
    args=()
    for t in 0 1 2; do
      m=$Z/$arch-lora-t00$t
      "$B/ptm" infer --model "$m" --device cuda --dtype $dt --json "${TEXTS[@]}" > "$O/ptm_${arch}_${dt}_$t.json" 2>> "$O/ptm_infer_errors.txt" \
        || echo "ptm infer --device cuda $m $dt FAILED" | tee -a "$O/ptm_infer_errors.txt"
      args+=(--tenant "$m" --ptm-json "$O/ptm_${arch}_${dt}_$t.json")
    done
    timeout 240 python3 "$R/peft_reference.py" --dtype $dt "${args[@]}" 2>&1 | grep -v -i warn > "$O/peft_${arch}_$dt.txt"
    tail -1 "$O/peft_${arch}_$dt.txt"
  done
done
echo "infer vs peft done at ${SECONDS} s"
wait $ZOO
cat "$O/zoo_10k.txt" | tail -2
echo "== 3. ptm bench pet (10,000 LoRA tenants)"
timeout 240 "$B/ptm" bench pet --zoo "$W/pz10k" --batch 32 --seq 128 --mixed 32 --iters 50 \
  --misses 1,8,32 --threads 16 > "$O/bench_pet.txt" 2>&1; echo "rc=$?" >> "$O/bench_pet.txt"
echo "bench pet done at ${SECONDS} s"
echo "== 4. peer: HF peft, set_adapter, one request at a time"
timeout 180 python3 "$R/peft_serve_baseline.py" --zoo "$W/pz10k" --adapters 100 --requests 1000 \
  --texts 4 --seq 128 --dtype fp16 2>&1 | grep -v -i warn > "$O/peft_serve.txt"
tail -1 "$O/peft_serve.txt"
echo "peer done at ${SECONDS} s"
rm -rf "$W/pz10k"
LEFT=$((470 - SECONDS))
if [ -z "${SKIP_PLAIN:-}" ] && [ $LEFT -gt 30 ]; then
  echo "== 5. the plain path: gpu_equals_cpu (${LEFT} s left)"
  PTM_TEST_CUDA=1 timeout $LEFT "$B"/gpu_equals_cpu-* --test-threads 1 --nocapture > "$O/gpu_equals_cpu.txt" 2>&1
  echo "rc=$? (timeout ${LEFT} s)" >> "$O/gpu_equals_cpu.txt"
fi
echo "all done at ${SECONDS} s"
echo "== summary"
for t in pet_gpu_tests gpu_equals_cpu; do
  [ -f "$O/$t.txt" ] && grep -E "^test .*(ok|FAILED)$|panicked|^test result|^rc=" "$O/$t.txt" | cut -c1-200
done
[ -f "$O/pet_gpu_tests.txt" ] && grep -hE "worst row vs CPU alone" "$O/pet_gpu_tests.txt" | cut -c1-160
for f in "$O"/peft_*_*.txt; do
  [ -f "$f" ] && echo "$(basename "$f" .txt): $(tail -1 "$f" | cut -c1-200)"
done
[ -s "$O/ptm_infer_errors.txt" ] && { echo "ptm infer errors:"; head -5 "$O/ptm_infer_errors.txt"; }
grep -E "^\||^rc=" "$O/bench_pet.txt"
tail -1 "$O/peft_serve.txt" | cut -c1-400
[ -f "$O/bench_infer.txt" ] && grep -E "^\| bert|^rc=" "$O/bench_infer.txt"
