#!/usr/bin/env bash
# One device call for issue 7: the GPU slot tests, then sim-vs-live fidelity on the GPU —
# FastPTM's overall cell (T480, mu 0.10, 3 instances), FastPTM's busiest trace on one instance
# (T240, mu 0.05) and the synthetic zipf-live cell, each with fcfs-rr, omls and affinity,
# replayed live on a 12-tenant BERT-base fp16 zoo and simulated on the shipped H200 profile.
# Usage (repository root on the GPU machine): runtime/bench/live-fidelity.sh BIN_DIR
# (SKIP_TESTS=1 skips the tests; the zoo is made unless /tmp/z12 holds one; PROFILE=FILE
# simulates on another profile.)
set -u
B=$(cd "${1:-.device/live}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if [ -z "${SKIP_TESTS:-}" ]; then echo "== gpu slot tests"
PTM_TEST_CUDA=1 timeout 150 "$B"/switching_gpu-* --test-threads 1 2>&1 | tail -8 | tee "$O/switching_gpu.txt"; fi
if [ ! -f /tmp/z12/zoo.ron ]; then echo "== zoo"
/usr/bin/time -f "zoo make: %e s" "$B/ptm" zoo make --arch bert-base --tenants 12 --dtype fp16 --out /tmp/z12 > /dev/null; fi
# The simulations' profile: the shipped one unless PROFILE names another (same model name).
PR=(--profile "${PROFILE:-scenarios/profiles/h200.ron}" --model bert-base-fp16)
P=(--policy fcfs-rr --policy omls --policy affinity)
L=(--live --device cuda:0 --zoo /tmp/z12 --dtype fp16 --compare --json)
echo "== fastptm/overall"
timeout 200 "$B/ptm" run fastptm/overall "${PR[@]}" "${P[@]}" "${L[@]}" > "$O/overall.json" 2>> "$O/err.txt" || tail -5 "$O/err.txt"
echo "== fastptm T240 mu0.05, 1 instance"
timeout 90 "$B/ptm" run fastptm/omls-vs-fcfs "${PR[@]}" \
  --trace scenarios/traces/fastptm/gen-s5_dat_T240_L12_M0.05.json --instances 1 "${P[@]}" "${L[@]}" \
  > "$O/t240-mu005-m1.json" 2>> "$O/err.txt" || tail -5 "$O/err.txt"
echo "== synthetic/zipf-live"
timeout 120 "$B/ptm" run synthetic/zipf-live "${PR[@]}" "${P[@]}" "${L[@]}" > "$O/zipf-live.json" 2>> "$O/err.txt" || tail -5 "$O/err.txt"
python3 runtime/bench/fidelity_table.py "$O"/overall.json "$O"/t240-mu005-m1.json "$O"/zipf-live.json | tee "$O/fidelity.md"
