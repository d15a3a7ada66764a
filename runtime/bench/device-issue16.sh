#!/usr/bin/env bash
# One device call for issue 16: calibrate this GPU through the live path (or take a profile),
# check the profile against this build, GPU and zoo, then replay the validation matrix live
# beside simulations on that profile and write the fidelity table.
#
# Matrix (cells of ≥ 1,000 requests are judged: throughput ±1 %, mean ±3 %, p99 ±8 %):
#   executors {1, 2, 4, 8} × policies {fcfs-rr, omls, affinity, deadline-batch} ×
#   - zipf:   runtime/bench/issue16/zipf-bursty.ron — 1,100 requests, Gamma CV 2.5, 24 Zipf
#             tenants, rate 160 / 320 / 480 / 800 req/s for 1 / 2 / 4 / 8 executors;
#   - azure:  runtime/bench/issue16/azure-code.ron — the Azure LLM code trace (2023) imported
#             with `ptm trace import` (24 Zipf(1.1) tenants drawn with seed 1, lengths clipped
#             to 512), requests 3,751–4,850 (a window without pauses over 40 s: azure-code.csv),
#             time-scaled to 150 / 300 / 600 / 1,200 req/s;
#   - fastptm-mu010 / fastptm-mu005: runtime/bench/issue16/fastptm.ron on the first 40 requests
#             of FastPTM's T480 mu 0.10 trace and the first 80 of T480 mu 0.05 (≈ 4 s each, at
#             their own rate), 1 and 4 executors only: shown, not judged (< 1,000 requests).
# The subset is what fits ~9 minutes of H200 time (sized with the simulator on the shipped
# H200 profile: ≈ 65 s of replay for zipf, 61 s for azure, 64 s for the FastPTM cells, plus
# per-run start-up: reading the zoo, capturing each executor's graphs for every head and pass
# shape); cells are run in that order and any that would pass BUDGET_S (default 480 s) are
# skipped and listed in $OUT/skipped.txt. The table is rewritten after every cell, so a call
# cut short still leaves the cells it finished.
#
# Usage (repository root on the GPU machine): runtime/bench/device-issue16.sh BIN_DIR
# BIN_DIR holds a release `ptm` built from the branch under test. Environment:
#   PROFILE=FILE  use this profile instead of calibrating (its model must be $ARCH-$DTYPE);
#   ZOO=DIR       a 12-tenant BERT-base fp16 zoo (made at /tmp/z12 when absent);
#   BUDGET_S=N    seconds the whole call may use (cells that would pass it are skipped);
#   ONLY=REGEX    run only the cells whose name matches (e.g. 'zipf-m[12]');
#   REPEATS=N     record each cell N times live (1 unless set; the 2nd and later under
#                 cells/rK/): `ptm fidelity-table` then adds live's range over the recordings
#                 of each cell (one profile, so the spread is the device's alone);
#   DEVICE, DTYPE, ARCH, SEQ_LENS  cuda:0, fp16, bert-base, 32,64,128,256,512 unless set
#                 (DEVICE=cpu DTYPE=fp32 ARCH=tiny SEQ_LENS=16,32,64 runs the same script on
#                 the CPU twin: a smoke test of the script, not a measurement).
# Outputs under $OUT: gpu.txt, calibrate.err, profile.ron, profile_check.txt, cells/*.json
# (`ptm run --live --compare --json`), cells/*.err, fidelity.md (`ptm fidelity-table`), log.txt.
set -u
B=$(cd "${1:-.device/i16}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1
O=${OUT:-/tmp/out}; mkdir -p "$O/cells"
DEV=${DEVICE:-cuda:0}; DT=${DTYPE:-fp16}; ARCH=${ARCH:-bert-base}; MODEL=$ARCH-$DT
Z=${ZOO:-/tmp/z12-$ARCH-$DT}
BUDGET=${BUDGET_S:-480}
HERE=runtime/bench/issue16
SECONDS=0
log() { echo "[$SECONDS s] $*" | tee -a "$O/log.txt"; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>/dev/null \
  || echo "no nvidia-smi"; "$B/ptm" --version; } | tee "$O/gpu.txt"

if [ ! -f "$Z/zoo.ron" ]; then
  log "zoo: 12 $ARCH $DT tenants"
  "$B/ptm" zoo make --arch "$ARCH" --tenants 12 --dtype "$DT" --out "$Z" > /dev/null || exit 1
fi

if [ -n "${PROFILE:-}" ]; then
  cp "$PROFILE" "$O/profile.ron"
  log "profile: $PROFILE (not calibrated here)"
else
  # The shapes the matrix runs: passes of 1–8 rows of up to 512 tokens; contention over 1–8
  # executors; cold loads, FastPTM-mode and full switches (not in the matrix) kept short.
  log "calibrate"
  timeout 240 "$B/ptm" calibrate --device "$DEV" --zoo "$Z" --dtype "$DT" \
    --batches 1,2,4,8 --seq-lens "${SEQ_LENS:-32,64,128,256,512}" --max-instances 8 --repeats 20 \
    --slow-repeats 3 --slow-max-instances 2 --out "$O/profile.ron" 2> "$O/calibrate.err" \
    || { tail -5 "$O/calibrate.err"; exit 1; }
  grep -A12 "contention: Some" "$O/profile.ron" | head -40 | tee -a "$O/log.txt"
fi
log "profile check"
"$B/ptm" profile check "$O/profile.ron" --zoo "$Z" --device "$DEV" --dtype "$DT" \
  > "$O/profile_check.txt" 2>&1; rc=$?; echo "rc=$rc" >> "$O/profile_check.txt"
cat "$O/profile_check.txt"
# A profile that does not parse, or describes another device, model or dtype, would be refused
# by every cell's --compare: stop here.
[ "$rc" -eq 0 ] || exit 1

# Inputs. The Azure window is in the repository (runtime/bench/issue16/azure-code.csv, made by
# the import below from the log in ../shared/data); re-imported here when the log is at hand.
A=/work/shared/data/azure-llm-2023/AzureLLMInferenceTrace_code.csv
[ -f "$A" ] || A=shared/data/azure-llm-2023/AzureLLMInferenceTrace_code.csv
if [ -f "$A" ]; then
  "$B/ptm" trace import "$A" --columns arrival=TIMESTAMP,seq_len=ContextTokens --tenants 24 \
    --popularity zipf:1.1 --samples 1 --max-seq-len 512 --deadline-ms 200 \
    --out /tmp/azure-all.csv 2>> "$O/log.txt"
  { head -1 /tmp/azure-all.csv; tail -n +2 /tmp/azure-all.csv | sed -n '3751,4850p'; } > /tmp/azure-window.csv
  cmp -s /tmp/azure-window.csv "$HERE/azure-code.csv" && log "azure window: re-imported, identical" \
    || log "azure window: re-import DIFFERS from $HERE/azure-code.csv (the committed one is used)"
fi
T=scenarios/traces/fastptm
"$B/ptm" trace export --trace $T/167281892465_dat_T480_L12_M0.10.json --out /tmp/t480-010.csv 2>> "$O/log.txt"
"$B/ptm" trace export --trace $T/gen-s5_dat_T480_L12_M0.05.json --out /tmp/t480-005.csv 2>> "$O/log.txt"
head -41 /tmp/t480-010.csv > /tmp/fastptm-mu010.csv
head -81 /tmp/t480-005.csv > /tmp/fastptm-mu005.csv

# name | scenario | executors | extra flags | estimated seconds (replay of 4 policies + start-up)
CELLS="
zipf-m1|zipf-bursty.ron|1|--rate 160|40
zipf-m2|zipf-bursty.ron|2|--rate 320|25
zipf-m4|zipf-bursty.ron|4|--rate 480|22
zipf-m8|zipf-bursty.ron|8|--rate 800|25
azure-m1|azure-code.ron|1|--rate 150|45
azure-m2|azure-code.ron|2|--rate 300|32
azure-m4|azure-code.ron|4|--rate 600|32
azure-m8|azure-code.ron|8|--rate 1200|45
fastptm-mu010-m1|fastptm.ron|1|--trace /tmp/fastptm-mu010.csv|24
fastptm-mu005-m1|fastptm.ron|1|--trace /tmp/fastptm-mu005.csv|24
fastptm-mu010-m4|fastptm.ron|4|--trace /tmp/fastptm-mu010.csv|26
fastptm-mu005-m4|fastptm.ron|4|--trace /tmp/fastptm-mu005.csv|26
"
: > "$O/skipped.txt"
L=(--live --device "$DEV" --zoo "$Z" --dtype "$DT" --compare --json)
table() {
  local ok; ok=$(find "$O/cells" -name '*.json' -size +1k | sort)
  # shellcheck disable=SC2086
  [ -z "$ok" ] || "$B/ptm" fidelity-table $ok --out "$O/fidelity.md" > /dev/null 2>> "$O/log.txt"
}
while IFS='|' read -r name scen m extra est; do
  [ -n "$name" ] || continue
  if [ -n "${ONLY:-}" ] && ! [[ "$name" =~ $ONLY ]]; then continue; fi
  for r in $(seq 1 "${REPEATS:-1}"); do
    d="$O/cells"; [ "$r" -gt 1 ] && { d="$O/cells/r$r"; mkdir -p "$d"; }
    if [ $((SECONDS + est)) -gt "$BUDGET" ]; then
      echo "$name, recording $r (estimated $est s at $SECONDS s of $BUDGET)" >> "$O/skipped.txt"; continue
    fi
    limit=$((est * 3 + 30)); left=$((BUDGET + 60 - SECONDS)); [ "$left" -lt "$limit" ] && limit=$left
    log "cell $name, recording $r"
    # shellcheck disable=SC2086
    timeout "$limit" "$B/ptm" run "$HERE/$scen" --profile "$O/profile.ron" \
      --model "$MODEL" --instances "$m" $extra "${L[@]}" > "$d/$name.json" \
      2> "$d/$name.err" || { echo "rc=$? $name" | tee -a "$O/log.txt"; tail -3 "$d/$name.err"; }
    table
  done
done <<< "$CELLS"

log "fidelity table"
table
[ -f "$O/fidelity.md" ] && cat "$O/fidelity.md"
if [ -s "$O/skipped.txt" ]; then echo "skipped (budget):"; cat "$O/skipped.txt"; fi
log "done"
