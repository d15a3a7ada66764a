#!/usr/bin/env bash
# One device call for issue 14 (the GPU weight tier, the cold path, calibration of the tiers,
# serving with a pool and cross-request batching), on an H200, in at most ~9 minutes:
#  (a) the GPU tests: `tiers` (pool loads, promotions, prefetches, evictions, cold loads and
#      batches of several requests, bit for bit against fresh loads), `switching_gpu`,
#      `gpu_equals_cpu`;
#  (b) `ptm bench switch` on a 12-tenant BERT-base fp16 zoo: beside today's figures, a load
#      from the weight pool against the device-to-device copy floor of the same run, and the
#      cold path (page cache → first output), medians of many runs;
#  (c) `ptm calibrate --device cuda:0 --zoo <12 tenants> --dtype fp16` (the full plan; the
#      quick one if the call runs late, said in the summary): a new H200 profile with
#      `pool_switch` (and its stretch over 1–8 executors), `weights_bytes` and the cold path;
#  (d) `ptm serve` driven by `ptm bench load` (8 processes, Zipf(1.1), 4 texts a request,
#      16,000 requests, at 32 then 128 concurrent clients, after a warm-up of WARM requests),
#      today's configuration (3 instances, no pool, --forward-batch 8) against the new one
#      (8 executors, --gpu-pool auto, --max-batch 32, --max-wait-ms 1, tier-affinity), on the
#      12-tenant zoo and on a 200-tenant zoo (hard links to the 12 tenants' files:
#      runtime/bench/link_zoo.py; 44 GB of packed weights in the host cache and the pool) —
#      the client's and the server's CPU use, and the switches, pool loads and batches after
#      the warm-up (from /metrics);
#  (e) the live-versus-simulated cell runtime/bench/tiers-live.ron (pool hits, evictions,
#      batches) on the new profile.
# Why the new configuration (on paper: runtime/bench/issue14-tuning.sh, output in
# runtime/bench/results/cpu-2026-11-29-issue14-tuning/results.txt): the simulator on the
# shipped H200 profile, with an ASSUMED 0.12 ms pool load, open-loop arrivals of such requests:
# today's 3 instances saturate at 2,945 req/s with 12 tenants (6,000 offered) and 2,292 with 200
# (3,000 offered); with a pool, passes of up to 32 rows and a 1 ms window, 8 executors under
# tier-affinity serve 12 tenants at 14,944 req/s with p99 39.3 ms (4 executors: 96.0 ms;
# deadline-batch: 2.35 s, its late requests waiting behind on-time ones) and 200 tenants at
# 11,867 req/s with p99 123.1 ms. What the simulator does not see is the server's CPU side (HTTP,
# tokenization, the coordinator): that is what this call measures. The pool (auto: every
# tenant of the zoo fits beside 8 executors) makes every load after a tenant's first a
# device-to-device copy; the window lets batches fill at 32 clients.
#
# Usage (repository root on the GPU machine): runtime/bench/device-issue14.sh BIN_DIR
# BIN_DIR holds a stripped release `ptm` and the stripped test binaries `tiers-*`,
# `switching_gpu-*` and `gpu_equals_cpu-*` (`cargo test --release -p ptm-runtime --no-run`).
# Everything is written under /tmp/i14; $OUT gets summary.txt (written as the call goes, so a
# cut call still brings back what it did), the profile, the benchmark, the fidelity table and
# logs.tar.gz (every log). The short table comes last.
# Knobs: ONLY_SERVE=1 (only (d) on 12 tenants, with the profile PROFILE_FILE if given and the zoo
# Z12 if it exists; what runtime/bench/device-round2.sh c runs), BUDGET (s, default 530), WARM (warm-up requests, 4000), REQS (measured requests, 16000),
# N200 (tenants of the big zoo, 200), PORT, SKIP_TESTS=1, SKIP_LIVE=1, SKIP_200=1, SECOND_POLICY=1 (also
# deadline-batch on 12 tenants), SYNC_AB=1 (also the new configuration with `--gpu-sync block`),
# EXEC_SWEEP=1 (also 4, 6 and 12 executors, and a 2 ms window), X4_RUNS=N (also N runs with 4
# executors), X4_200=1 (the big zoo with 4 executors too), THREADS_CPU=1 (the server's CPU by
# thread name after each run),
# WITH_200=1 (the 200-tenant runs even with ONLY_SERVE), ZIPF (the client's exponent, 1.1),
# ZIPF1_200=1 (also the new configuration on the big zoo at Zipf(1.0)), SKIP_TODAY=1 (not the
# first round's configuration), UPLOADS_AB=1 (also the new configuration with --pinned-uploads), STAGING_AB=1 (also the
# new configuration with --pageable-staging; before pinned staging became the default, parts p
# and q of device-round2.sh ran it as --pinned-staging), ONLY_PET=1 with PET_ZOO (only
# `ptm serve` over that PET zoo, Zipf(1.0) unless ZIPF says otherwise), LIVE_SCENARIO (the cell of (e)); DEVICE, ARCH, DTYPE (cuda:0, bert-base, fp16: a dry run of the
# script's logic on the CPU takes DEVICE=cpu ARCH=tiny DTYPE=fp32 and small counts).
set -u
B=$(cd "${1:-.device/i14}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1
O=${OUT:-/tmp/out}; W=${WORK:-/tmp/i14}; mkdir -p "$O" "$W"
DEV=${DEVICE:-cuda:0}; ARCH=${ARCH:-bert-base}; DT=${DTYPE:-fp16}; Z=${ZOOS:-/tmp}
S="$O/summary.txt"; : > "$S"
SECONDS=0
BUDGET=${BUDGET:-530}
note() { echo "[$(printf %3d "$SECONDS") s] $*" | tee -a "$S"; }
left() { echo $((BUDGET - SECONDS)); }
pack() {
  for f in h200-issue14.ron bench_switch.txt fidelity.md tiers-live.json; do
    [ -f "$W/$f" ] && cp "$W/$f" "$O/"
  done
  tar czf "$O/logs.tar.gz" -C "$W" . 2> /dev/null
}
trap pack EXIT

{ nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
  nproc; free -g; df -h /tmp; "$B/ptm" --version; } > "$W/machine.txt" 2>&1
note "machine: $(sed -n 2p "$W/machine.txt"); $(nproc) cores; $(free -g | awk '/Mem:/ {print $2 " GiB RAM"}'); $(df -h /tmp | awk 'NR==2 {print $4 " free on /tmp"}')"

if [ -n "${Z12:-}" ] && [ -f "$Z12/zoo.ron" ]; then mkdir -p "$Z"; ln -sfn "$Z12" "$Z/z12"; fi
if [ -n "${ONLY_SERVE:-}" ]; then SKIP_TESTS=1 SKIP_LIVE=1; [ -n "${WITH_200:-}" ] || SKIP_200=1; fi
# The 12-tenant zoo, made while the tests run.
[ -f "$Z/z12/zoo.ron" ] || "$B/ptm" zoo make --arch "$ARCH" --tenants 12 --dtype "$DT" --out "$Z/z12" > "$W/zoo12.txt" 2>&1 &
ZOO_PID=$!

# (a) GPU tests.
if [ -z "${SKIP_TESTS:-}" ]; then
  for t in tiers switching_gpu gpu_equals_cpu; do
    PTM_TEST_CUDA=1 timeout 180 "$B"/$t-* --test-threads 1 --nocapture > "$W/test_$t.txt" 2>&1
    echo "rc=$?" >> "$W/test_$t.txt"
    note "test $t: $(grep -E '^test result' "$W/test_$t.txt" | tail -1) $(tail -1 "$W/test_$t.txt")"
    grep -E "FAILED|panicked" "$W/test_$t.txt" | head -5 | tee -a "$S"
  done
fi
wait $ZOO_PID; note "zoo of 12: rc $? ($(du -sh "$Z/z12" | cut -f1))"

# (b) The switch benchmark with the tiers.
if [ -z "${ONLY_SERVE:-}" ]; then
L=$(left); timeout $(( L < 30 ? 30 : (L < 150 ? L : 150) )) "$B/ptm" bench switch --zoo "$Z/z12" --device "$DEV" --iters 40 \
  --baseline-iters 3 --cold-iters 20 > "$W/bench_switch.txt" 2>&1
note "bench switch: rc $?"
grep -E "^pool load|^cold path" "$W/bench_switch.txt" | tee -a "$S"

# (c) Calibration through the Slot calls live makes.
PLAN=full; [ "$(left)" -lt 330 ] && PLAN=quick
Q=(); [ $PLAN = quick ] && Q=(--quick)
t0=$SECONDS
timeout 240 "$B/ptm" calibrate --device "$DEV" --zoo "$Z/z12" --dtype "$DT" "${Q[@]}" \
  --out "$W/h200-issue14.ron" 2> "$W/calibrate.err"
note "calibrate ($PLAN plan): rc $? in $((SECONDS - t0)) s"
PROF=()
if [ -f "$W/h200-issue14.ron" ]; then
  PROF=(--profile "$W/h200-issue14.ron" --model "$ARCH-$DT")
  grep -A3 -E "weights_bytes|pool_switch: Some" "$W/h200-issue14.ron" | grep -E "weights_bytes|Normal|LogNormal|Constant" | head -3 | tee -a "$S"
  grep -A12 "pool_switch: Some" "$W/h200-issue14.ron" | grep -A9 "stretch" | tr -s ' \n' ' ' | cut -c1-200 | tee -a "$S"; echo >> "$S"
else
  tail -5 "$W/calibrate.err" | tee -a "$S"
  note "no new profile: the servers calibrate at start-up (quick plan)"
fi
else
  PROF=()
  [ -n "${PROFILE_FILE:-}" ] && PROF=(--profile "$PROFILE_FILE" --model "$ARCH-$DT")
fi

# (d) Serving under the HTTP load client.
PORT=${PORT:-8090}
metric() {
  curl -s "localhost:$PORT/metrics" | awk -v k="ptm_$1_total" '$1 == k {v = $2} END {print v + 0}'
}
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat" 2> /dev/null; }
# Each thread of process $1: its id, name and CPU ticks so far (names have no spaces here).
threads_cpu() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v n="$(cat "$t/comm" 2> /dev/null)" '{print $1, n, $14 + $15}' "$t/stat" 2> /dev/null
  done
}
# CPU seconds between two `threads_cpu` snapshots, summed by thread name less its number.
threads_delta() {
  awk 'NR == FNR {a[$1] = $3; next} {d = $3 - a[$1]; n = $2; sub(/[-_]?[0-9]+$/, "", n); s[n] += d; c[n]++}
       END {for (n in s) if (s[n] > 0) printf "%s×%d %.1f s; ", n, c[n], s[n] / 100}' "$1" "$2" |
    tr ';' '\n' | sort -t' ' -k2 -gr | tr '\n' ';'
}
serve_run() {
  local name=$1 zoo=$2; shift 2
  local log="$W/serve_$name" t0=$SECONDS
  "$B/ptm" serve --zoo "$zoo" --device "$DEV" --dtype "$DT" --listen "127.0.0.1:$PORT" --queue 1024 \
    "${PROF[@]}" "$@" > "$log.out" 2> "$log.err" &
  local pid=$!
  for _ in $(seq 900); do
    grep -q listening "$log.out" && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.2
  done
  if ! grep -q listening "$log.out"; then
    note "$name: the server did not start"; tail -3 "$log.err" | tee -a "$S"
    kill -TERM $pid 2> /dev/null; wait $pid; return
  fi
  note "$name: listening after $((SECONDS - t0)) s ($*); GPU memory used $(nvidia-smi --query-gpu=memory.used --format=csv,noheader)"
  timeout 120 "$B/ptm" bench load --url "http://127.0.0.1:$PORT" --processes 8 --concurrency 128 \
    --requests "${WARM:-4000}" --zipf "${ZIPF:-1.1}" > "$log.warm.txt" 2>&1
  for c in 32 128; do
    local sw0 pl0 ba0 ev0 cpu0 cpu1
    sw0=$(metric switches); pl0=$(metric pool_loads); ba0=$(metric batches)
    ev0=$(metric pool_evictions); cpu0=$(cpu_s $pid); threads_cpu $pid > "$log.c$c.thr0"
    timeout 120 "$B/ptm" bench load --url "http://127.0.0.1:$PORT" --processes 8 \
      --concurrency $c --requests "${REQS:-16000}" --zipf "${ZIPF:-1.1}" > "$log.c$c.txt" 2>&1
    cpu1=$(cpu_s $pid); threads_cpu $pid > "$log.c$c.thr1"
    note "$name c=$c: $(sed -n 2p "$log.c$c.txt" | cut -c1-230)"
    note "$name c=$c: statuses $(awk -F'|' '/^\| [0-9]/ {gsub(/ /, ""); printf "%s×%s ", $3, $2}' "$log.c$c.txt"); host→GPU switches +$(( $(metric switches) - sw0 )), pool loads +$(( $(metric pool_loads) - pl0 )), pool evictions +$(( $(metric pool_evictions) - ev0 )), batches +$(( $(metric batches) - ba0 )); server CPU $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f", b - a}') s"
    [ -n "${THREADS_CPU:-}" ] && note "$name c=$c: server threads' CPU: $(threads_delta "$log.c$c.thr0" "$log.c$c.thr1" | cut -c1-400)"
  done
  kill -TERM $pid; wait $pid
}
TODAY=(--instances 3 --forward-batch 8)
NEW=(--instances 8 --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity)
NEW4=(--instances 4 --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity)
if [ -n "${ONLY_PET:-}" ]; then
  # Issue 15: the PET zoo PET_ZOO (10,000 LoRA tenants) under the same client, Zipf(1.0):
  # executors of the device share its PET slot, mixed batches of up to 32 rows.
  ZIPF=${ZIPF:-1.0}
  serve_run pet "${PET_ZOO:?}" --instances 2 --gpu-pool auto --max-batch 32 --max-wait-ms 1 \
    --policy deadline-mixed
  note "done"; echo "== summary"; cat "$S"; exit 0
fi
[ -z "${SKIP_TODAY:-}" ] && serve_run today-12 "$Z/z12" "${TODAY[@]}"
serve_run new-12 "$Z/z12" "${NEW[@]}"
for r in $(seq "${X4_RUNS:-0}"); do
  # The configuration with 4 executors (part z's best at 128 clients), run after run.
  serve_run "new-12-x4-run$r" "$Z/z12" "${NEW4[@]}"
done
if [ -n "${EXEC_SWEEP:-}" ]; then
  # The new configuration with other executor counts and batching windows.
  serve_run new-12-x4 "$Z/z12" --instances 4 --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity
  serve_run new-12-x6 "$Z/z12" --instances 6 --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity
  serve_run new-12-x12 "$Z/z12" --instances 12 --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity
  serve_run new-12-w2 "$Z/z12" --instances 8 --gpu-pool auto --max-batch 32 --max-wait-ms 2 --policy tier-affinity
fi
if [ -n "${SYNC_AB:-}" ]; then
  # The same configuration with executor threads sleeping on the GPU instead of spinning.
  serve_run new-12-block "$Z/z12" "${NEW[@]}" --gpu-sync block
fi
if [ -n "${STAGING_AB:-}" ]; then
  # The same configuration with each executor's inputs and outputs through pinned memory.
  serve_run new-12-pageable "$Z/z12" "${NEW[@]}" --pageable-staging
fi
if [ -n "${UPLOADS_AB:-}" ]; then
  # The same configuration with each executor's uploads through its pinned memory too.
  serve_run new-12-pinned-uploads "$Z/z12" "${NEW[@]}" --pinned-uploads
fi
if [ -n "${SECOND_POLICY:-}" ] && [ "$(left)" -gt 260 ]; then
  serve_run new-12-deadline "$Z/z12" --instances 8 --gpu-pool auto --max-batch 32 --max-wait-ms 1 \
    --policy deadline-batch
fi

# (e) Live versus simulated, on the new profile.
if [ -z "${SKIP_LIVE:-}" ] && [ ${#PROF[@]} -gt 0 ] && [ "$(left)" -gt 150 ]; then
  timeout 120 "$B/ptm" run "${LIVE_SCENARIO:-runtime/bench/tiers-live.ron}" "${PROF[@]}" --live --compare \
    --zoo "$Z/z12" --device "$DEV" --dtype "$DT" --json > "$W/tiers-live.json" 2> "$W/tiers-live.err"
  note "tiers-live: rc $?"
  python3 runtime/bench/fidelity_table.py "$W/tiers-live.json" > "$W/fidelity.md" 2>&1
  cat "$W/fidelity.md" >> "$S"
else
  note "tiers-live: skipped (no new profile, or $(left) s left)"
fi

# (d, 200 tenants) last: the longest part. Sized down when time is short.
N=${N200:-200}
if [ -z "${SKIP_200:-}" ] && [ "$(left)" -gt 90 ]; then
  [ "$(left)" -lt 150 ] && N=100
  python3 runtime/bench/link_zoo.py "$Z/z12" "$Z/z$N" "$N" >> "$W/zoo$N.txt" 2>&1
  note "zoo of $N tenants (hard links to the 12): $(tail -1 "$W/zoo$N.txt")"
  [ -z "${SKIP_TODAY:-}" ] && serve_run today-$N "$Z/z$N" "${TODAY[@]}"
  [ "$(left)" -gt 40 ] && serve_run new-$N "$Z/z$N" "${NEW[@]}"
  [ -n "${X4_200:-}" ] && [ "$(left)" -gt 40 ] && serve_run new-$N-x4 "$Z/z$N" "${NEW4[@]}"
  if [ -n "${ZIPF1_200:-}" ] && [ "$(left)" -gt 40 ]; then
    # Issue 15's comparison (a): full fine-tunes with the GPU tier under the client the PET zoo
    # was served with (Zipf(1.0)).
    ZIPF=1.0 serve_run new-$N-zipf1 "$Z/z$N" "${NEW[@]}"
  fi
else
  note "200 tenants: skipped ($(left) s left)"
fi

note "done"
echo "== summary"
cat "$S"
