#!/usr/bin/env bash
# The device calls of round 2 (issues 14, 15 and 16) on one warm H200, in three parts of under
# ten minutes each, so that the 30 minutes a session has cover every GPU path this round added:
#
#   a  GPU tests — `tiers` (weight pool, promotions, prefetches, evictions, cold loads, batches
#      of several requests, bit for bit against fresh loads), `pet_gpu` (mixed PET passes vs
#      their CPU twins and vs each tenant alone), `switching_gpu`, `gpu_equals_cpu`; then
#      `ptm bench switch` with the tiers (a load from the pool against the device-to-device
#      floor of the same run, the cold path); then the calibration the shipped H200 profile
#      comes from: issue 16's plan (batches 1,2,4,8 × 32–512 tokens, contention and host
#      overhead through the live path over 1–8 executors, the pool load, weights_bytes) plus
#      `--pet-zoo` (LoRA r8 costs). The profile is left in .device/prof/h200.ron for part b.
#   b  issue 16's validation matrix (runtime/bench/device-issue16.sh) on that profile.
#   c  issue 15's benchmarks (device-issue15.sh without its tests: `ptm infer --device cuda`
#      vs transformers + peft, `ptm bench pet` on 10,000 LoRA tenants, HF peft serving one
#      request at a time) and issue 14's serving comparison (device-issue14.sh, serve only):
#      today's configuration against the pool + batching one on 12 tenants.
#
#   d  (a second machine, after fixes found by a–c) the shipped profile again with passes of 16
#      and 32 rows too, the tiers cell and two Azure cells.
#   f  (about 4 minutes) part d's calibration with this build, which also measures the busy
#      hand-off (`host.handoff_busy_ms`: jobs sent the instant the previous report arrives) and
#      the copy factor beside the large passes (`contention.copy_during_forward_large`, now
#      `copy_during_forward_sizes`); the
#      tiers-live and the two Azure cells live against it (`--live --compare`), then
#      `ptm fidelity-table`. The JSONs come back gzipped (`gunzip -k` them for `ptm run …
#      --resimulate FILE`, e.g. to re-simulate the same live runs without the new figures).
#   g  (about 3 minutes) the row-tiled LoRA kernels (`KernelOptions::pet_tiled`, issue 15's
#      open performance item) before their default is flipped: `pet_tiled_gpu` (tiled against
#      warp kernels bit for bit, and against the CPU twins), `pet_gpu` (every mixed-batch row
#      against the tenant alone, bit for bit, and against the CPU, with both kernel choices;
#      graphs and pipelined loads with both), then `ptm bench pet` on 10,000 BERT-base fp16
#      LoRA tenants (rank 8, query/value), 32 rows × 128 tokens, `--pet-kernels warp` then
#      `tiled`. BIN_DIR also needs `pet_tiled_gpu-*`.
#   j  (about 8 minutes, after g flipped `pet_tiled` on) the shipped profile of this build:
#      part f's calibration plus `--pet-zoo` (LoRA r8 costs), `ptm profile check` of it, the
#      tiers-live and Azure cells live against it; then issue 15's PET measurements —
#      `ptm bench pet --profile` (device time per step: plain backbone, one tenant, 32),
#      the PET cell runtime/bench/pet-live.ron live against the profile, `ptm serve` over the
#      10,000 LoRA tenants under `ptm bench load` (Zipf(1.0), 8 processes, 32 and 128
#      clients), and HF peft serving 100 of them one request at a time (the peer, requests of
#      4 texts of 16 tokens, about the load client's texts).
#   k  (about 7 minutes) after the tiled expand kernels read their outputs up front: their GPU
#      tests, `ptm bench pet --profile`, then part j's calibration, profile check, tiers/Azure
#      cells and PET cell again (the build identity changed).
#   m  (about 9 minutes) after the serve path's CPU cuts and the PET fixed time per pass: the
#      shipped profile again, serving (h's runs, deadline-batch, 200 tenants at Zipf(1.0) too,
#      the 10,000 PET tenants), then the PET, tiers and Azure cells in the time left.
#   p  (about 5 minutes; not run yet) pinned staging of each model's transfers before its
#      default flips: gpu_equals_cpu with it, `ptm bench infer` A/B, the 12-tenant serving A/B.
#   q  (about 7 minutes) the fused LoRA kernels before their default flips (GPU tests, `ptm
#      bench pet --profile` tiled against fused, an nsys kernel summary where nsys exists), and
#      part p's pinned-staging A/B.
#   r  (about 8 minutes) after the fused kernels' rank-8 expand and the defaults' flip
#      (`pet_fused`, `pinned_staging` on): GPU tests, bench pet tiled/fused, the shipped profile,
#      PET serving and cell, 12-tenant serving.
#   s  (about 9 minutes) the final build of the day (part q's fused kernel, defaults on): the
#      shipped profile, step profile, PET serving and cell, 12- and 200-tenant serving, cells.
#   t  (about 8 minutes) pinned staging of downloads only (`pinned_uploads` off): gpu_equals_cpu,
#      the shipped profile, 12-tenant serving A/B (uploads pinned, all pageable), the tiers and
#      Azure cells, PET serving and cell, step profile.
#   v  (about 4 minutes; not run yet) 12-tenant serving, default spin against `--gpu-sync block`,
#      twice each (the server's CPU doubled with pinned downloads).
#   w  (seconds; not run yet) each LoRA kernel alone at the mixed pass's shape
#      (`runtime/examples/lora_kernels.rs`).
#   p2 (about 4 minutes; not run yet) loads from the GPU weight pool beside forward passes
#      (issue 14's tiers-live cell, deadline-batch: live inference 18 % above the simulator's,
#      pool loads 23 % below, part t): the shipped profile's calibration with this build, which
#      also measures `pool_contention` through the live path (a forward request during pool
#      loads back to back, a pool load during forward requests back to back, each over alone),
#      then the tiers-live and Azure cells live against it (`fidelity_cells`).
#   sm3 (about 230 s; run: results/h200-2026-11-30/sm3) issue 16's SM sharing at intermediate pass sizes: part m3's
#      calibration with this build, which also measures the SMs' curve at 512 and 2,048 tokens
#      (`contention.sm_sizes`: 4 × 128 and 16 × 128, 1–8 executors, 20 repeats; a few seconds
#      more), written to .device/prof/h200-sm.ron (NOT the shipped profile), `ptm profile
#      check` of it, its `sm_sizes`, then the validation matrix's cells azure-m4, azure-m8 and
#      zipf-m8 (device-issue16.sh) live against it, and their fidelity table.
#   k3 (run: results/h200-2026-11-30/k3) the prototype LoRA kernels of `lora_proto.cu`, since
#      removed (no faster than the tiled ones).
#   k4 (about 3 minutes; run twice: results/h200-2026-11-30/k4a, k4b) issue 15's tensor-core LoRA kernels (`pet_mma_kernels.cu`,
#      kernel option `pet_mma`): each LoRA kernel alone at the mixed pass's shape and the
#      tensor-core ones checked against the warp kernels (`lora_kernels`, status 1 beyond the
#      16-bit tolerance; fp16 and bf16 timed, fp32 and an odd shape checked), the GPU tests
#      `pet_tiled_gpu` and `pet_gpu`, then `ptm bench pet --profile` with `--pet-kernels mma`
#      and `fused` on 1,000 LoRA tenants. BIN_DIR also needs the stripped release
#      `lora_kernels` and the test binaries `pet_tiled_gpu-*`, `pet_gpu-*`.
#   m4 (about 8 minutes; run: results/h200-2026-11-30/m4) the shipped profile again, by this build (the
#      tensor-core LoRA kernels on by default, the SMs' sharing at 512 and 2,048 tokens:
#      `sm_sizes`), then the tiers cell, the PET cell, `ptm bench pet --profile` with the
#      default kernels and with `--pet-kernels fused`, and the whole validation matrix live
#      against it (part m3's recipe plus the PET parts).
#   c4 (about 20 s on a warm machine; run: results/h200-2026-11-30/c4) part c3's PET serving alone (`ptm serve` over 10,000 LoRA
#      tenants under the load client) with this build and the shipped profile (part m4's).
#   k5 (about 2.5 minutes; run: results/h200-2026-11-30/k5) part k4's checks alone on the final kernels (the
#      expand on 4 × the blocks, `mma` not `volatile`): `lora_kernels` and the GPU tests
#      `pet_tiled_gpu`, `pet_gpu` (BIN_DIR: those three binaries).
#   k6 (about 40 s; not run yet) `lora_kernels` with its new second table: the same launches
#      in a CUDA graph (BIN_DIR: the stripped release `lora_kernels`).
#   h  (about 9 minutes) serving again: part c's two 12-tenant configurations and the new one
#      with `--gpu-sync block` (executors sleep on the GPU instead of spinning a core), then the
#      200-tenant zoo (today's configuration against the new one).
#
# Usage (repository root on the GPU machine): runtime/bench/device-round2.sh PART BIN_DIR
# BIN_DIR holds a stripped release `ptm` and the stripped test binaries `tiers-*`, `pet_gpu-*`,
# `pet_tiled_gpu-*`, `switching_gpu-*`, `gpu_equals_cpu-*` (`cargo test --release -p
# ptm-runtime --no-run`).
# Outputs under $OUT: summary.txt and all.tgz (every other file; at most 8 files come back); parts b and c reuse /tmp's zoos when the machine is
# still the one part a ran on, and make them otherwise.
set -u
PART=${1:?part a, b, c, d, f, g, h, j, k, k4, k5, k6, m, p, p2, q, r, s, t, v, w, x, y, z, m3, m4, s3, sm3, c3 or c4}
B=$(cd "${2:-.device/r2}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} RUST_BACKTRACE=1
O=${OUT:-/tmp/out}; mkdir -p "$O"
S="$O/summary.txt"; : > "$S"
SECONDS=0
note() { echo "[$(printf %3d "$SECONDS") s] $*" | tee -a "$S"; }
Z12=/tmp/z12-bert-base-fp16
PROF=.device/prof/h200.ron
# The tiers cell and the Azure cells (1 and 4 executors) live and simulated against $PROF, and
# their fidelity tables (parts d and f).
fidelity_cells() {
  L=(--profile "$PROF" --model bert-base-fp16 --live --compare --zoo "$Z12" --device cuda:0 --dtype fp16 --json)
  timeout 60 "$B/ptm" run runtime/bench/tiers-live.ron "${L[@]}" > "$O/tiers-live.json" 2> "$O/tiers-live.err"
  note "tiers-live: rc $?"
  for c in 1:150 4:600; do
    timeout 45 "$B/ptm" run runtime/bench/issue16/azure-code.ron --instances ${c%%:*} --rate ${c##*:} \
      "${L[@]}" > "$O/azure-m${c%%:*}.json" 2> "$O/azure-m${c%%:*}.err"
    note "azure-m${c%%:*}: rc $?"
  done
  for f in "$O"/*.json; do [ -s "$f" ] && "$B/ptm" fidelity-table "$f" --min-requests 1000 --out "${f%.json}.md" > /dev/null; done
  cat "$O"/*.md | grep -E "^\\| (tiers|azure)" | cut -c1-200 | tee -a "$S"
}

PZ=/tmp/i15/pz10k
# The PET zoos of parts j and k: 32 LoRA tenants for calibration, 10,000 for the rest.
pet_zoos() {
  "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 --targets query,value --tenants 32 \
    --dtype fp16 --out /tmp/pz32 > /dev/null
  [ -f "$PZ/pet.ron" ] || "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 \
    --targets query,value --tenants 10000 --dtype fp16 --threads 16 --out "$PZ" > "$O/zoo_10k.txt" 2>&1
  note "PET zoos made"
}

# The shipped profile: batches 1–32 × 32–512 tokens over 1–8 executors through the live path,
# LoRA r8 costs, and `ptm profile check` of it against this build, GPU and zoo.
calibrate_shipped() {
  zoo12
  mkdir -p .device/prof
  local t0=$SECONDS
  timeout 170 "$B/ptm" calibrate --device cuda:0 --zoo "$Z12" --dtype fp16 --pet-zoo /tmp/pz32 \
    --batches 1,2,4,8,16,32 --seq-lens 32,64,128,256,512 --max-instances 8 --repeats 20 \
    --slow-repeats 3 --slow-max-instances 2 --out "$PROF" 2> "$O/calibrate.err"
  note "calibrate: rc $? in $((SECONDS - t0)) s"
  cp "$PROF" "$O/h200.ron"
  "$B/ptm" profile check "$PROF" --zoo "$Z12" --device cuda:0 > "$O/profile_check.txt" 2>&1
  note "profile check: rc $?"; tail -4 "$O/profile_check.txt" | tee -a "$S"
}

# `ptm bench pet --profile` on 1,000 of the 10,000 LoRA tenants: device time per step.
pet_profile() {
  timeout 60 "$B/ptm" bench pet --zoo "$PZ" --tenants 1000 --batch 32 --seq 128 --mixed 32 \
    --iters 50 --misses 32 --threads 16 --profile > "$O/bench_pet_profile.txt" 2>&1
  note "bench pet --profile: rc $?"
  grep -E "^\| " "$O/bench_pet_profile.txt" | grep -vE "^\|---|register|load |GPU|host|RSS" | tee -a "$S"
}

# `ptm serve` over the 10,000 LoRA tenants under the load client, with the profile (issue 15).
pet_serving() {
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 ONLY_PET=1 PET_ZOO="$PZ" ZOOS=/tmp/c14 Z12="$Z12" \
    BUDGET=60 OUT="$O/i15" bash runtime/bench/device-issue14.sh "$B" > "$O/issue15.txt" 2>&1
  note "PET serving:"
  grep -E "pet c=|listening" "$O/i15/summary.txt" >> "$S"
}

# The PET cell (runtime/bench/pet-live.ron) live against the profile.
pet_live_cell() {
  timeout 90 "$B/ptm" run runtime/bench/pet-live.ron --profile "$PROF" --model bert-base-fp16 \
    --live --compare --zoo "$PZ" --device cuda:0 --dtype fp16 --json > "$O/pet-live.json" 2> "$O/pet-live.err"
  note "pet-live: rc $?"
  "$B/ptm" fidelity-table "$O/pet-live.json" --min-requests 1000 --out "$O/pet-live.md" > /dev/null
  grep -E "^\| pet" "$O/pet-live.md" | cut -c1-200 | tee -a "$S"
}

# `ptm bench pet --profile` on 1,000 of the 10,000 LoRA tenants with each LoRA kernel choice
# given (parts q, r: tiled and fused; x: fused and rows).
pet_kernels_ab() {
  local k
  for k in "$@"; do
    timeout 60 "$B/ptm" bench pet --zoo "$PZ" --tenants 1000 --batch 32 --seq 128 --mixed 32 \
      --iters 50 --misses 32 --threads 16 --profile --pet-kernels $k > "$O/bench_pet_$k.txt" 2>&1
    note "bench pet --pet-kernels $k: rc $?"
    grep -E "^\| (PET|plain|total|head)" "$O/bench_pet_$k.txt" | tee -a "$S"
  done
}

# `ptm bench infer` of BERT-base fp16 with pageable and with pinned staging (parts p, q; they
# ran it as `--pinned-staging` against none, when pinned staging was off by default).
staging_ab_infer() {
  local v
  for v in pageable:--pageable-staging pinned:""; do
    timeout 90 "$B/ptm" bench infer --arch bert-base --dtype fp16 --batch 1,8,32 --seq 128 \
      --iters 200 ${v#*:} > "$O/bench_infer_${v%%:*}.txt" 2>&1
    note "bench infer (${v%%:*}): rc $?"
    grep -E "^\| *(1|8|32) " "$O/bench_infer_${v%%:*}.txt" | head -3 | tee -a "$S"
  done
}

# At most 8 files come back from $OUT: everything but the summary goes into one archive.
pack_out() {
  ( cd "$O" && find . -type f ! -name summary.txt ! -name all.tgz | sort > /tmp/pack.list \
    && tar czf all.tgz -T /tmp/pack.list && xargs rm -f < /tmp/pack.list
    find . -mindepth 1 -type d -empty -delete ) 2> /dev/null
}
trap pack_out EXIT

# Runs the GPU test binaries NAME:LIMIT_S … of BIN_DIR one after another, each under its time
# limit; its log in $OUT/test_NAME.txt, its result line and any failure in the summary.
gpu_tests() {
  local t name limit
  for t in "$@"; do
    name=${t%%:*}; limit=${t##*:}
    PTM_TEST_CUDA=1 timeout "$limit" "$B"/$name-* --test-threads 1 --nocapture > "$O/test_$name.txt" 2>&1
    echo "rc=$? (limit $limit s)" >> "$O/test_$name.txt"
    note "test $name: $(grep -E '^test result' "$O/test_$name.txt" | tail -1 | cut -c1-90) $(tail -1 "$O/test_$name.txt")"
    grep -E "FAILED|panicked" "$O/test_$name.txt" | head -5 | tee -a "$S"
  done
}

zoo12() {
  [ -f "$Z12/zoo.ron" ] || "$B/ptm" zoo make --arch bert-base --tenants 12 --dtype fp16 --out "$Z12" > /dev/null
}

# `lora_kernels` (BIN_DIR's stripped example) for each "DTYPE ROWS RANK" after PATTERN, its
# output in $OUT/lora_kernels_DTYPE_ROWS_RANK.txt, the lines matching PATTERN (extended grep)
# in the summary, cut to $CUT columns when set.
lora_kernel_runs() {
  local pat=$1 run f; shift
  for run in "$@"; do
    f="$O/lora_kernels_${run// /_}.txt"
    # shellcheck disable=SC2086
    timeout 120 "$B/lora_kernels" $run > "$f" 2>&1
    note "lora_kernels $run: rc $?"
    grep -E "$pat" "$f" | cut -c1-"${CUT:-100000}" >> "$S"
  done
}

# The tiers cell (runtime/bench/tiers-live.ron) live against $PROF, its fidelity table.
tiers_cell() {
  local L=(--profile "$PROF" --model bert-base-fp16 --live --compare --zoo "$Z12" --device cuda:0 --dtype fp16 --json)
  timeout 60 "$B/ptm" run runtime/bench/tiers-live.ron "${L[@]}" > "$O/tiers-live.json" 2> "$O/tiers-live.err"
  note "tiers-live: rc $?"
  "$B/ptm" fidelity-table "$O/tiers-live.json" --min-requests 1000 --out "$O/tiers-live.md" > /dev/null
  grep -E "^\| tiers" "$O/tiers-live.md" | cut -c1-200 | tee -a "$S"
}

# The whole validation matrix (device-issue16.sh) live against $PROF until SECONDS reaches
# $1, its judged rows and skipped cells in the summary.
validation_matrix() {
  env PROFILE="$PROF" ZOO="$Z12" BUDGET_S=$(($1 - SECONDS)) OUT="$O/i16" \
    bash runtime/bench/device-issue16.sh "$B" > "$O/issue16.txt" 2>&1
  note "validation matrix: rc $?"
  grep -E "^\| (zipf|azure|fastptm)|^Judged" "$O/i16/fidelity.md" | cut -c1-220 >> "$S"
  cat "$O/i16/skipped.txt" >> "$S" 2> /dev/null
}

case $PART in
a)
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$O/gpu.txt"
  "$B/ptm" --version | tee -a "$O/gpu.txt"
  ( zoo12; "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 --targets query,value \
      --tenants 32 --dtype fp16 --out /tmp/pz32 > /dev/null ) &
  ZOOS=$!
  gpu_tests tiers:150 pet_gpu:150 switching_gpu:40 gpu_equals_cpu:80
  wait $ZOOS; note "zoos made"
  timeout 70 "$B/ptm" bench switch --zoo "$Z12" --device cuda:0 --iters 30 --baseline-iters 3 \
    --cold-iters 10 > "$O/bench_switch.txt" 2>&1
  note "bench switch: rc $?"
  grep -E "^\||^pool load|^cold path" "$O/bench_switch.txt" | head -20 | tee -a "$S"
  mkdir -p .device/prof
  t0=$SECONDS
  timeout $((560 - SECONDS)) "$B/ptm" calibrate --device cuda:0 --zoo "$Z12" --dtype fp16 \
    --pet-zoo /tmp/pz32 --batches 1,2,4,8 --seq-lens 32,64,128,256,512 --max-instances 8 \
    --repeats 20 --slow-repeats 3 --slow-max-instances 2 --out "$PROF" 2> "$O/calibrate.err"
  note "calibrate: rc $? in $((SECONDS - t0)) s"
  tail -3 "$O/calibrate.err" | tee -a "$S"
  [ -f "$PROF" ] && cp "$PROF" "$O/h200.ron"
  ;;
b)
  zoo12
  [ -f "$PROF" ] || { note "no profile from part a on this machine: calibrating here"; PROF=; }
  PROFILE=$PROF ZOO=$Z12 BUDGET_S=${BUDGET_S:-470} bash runtime/bench/device-issue16.sh "$B" 2>&1 \
    | tee "$O/issue16.txt" | tail -40 >> "$S"
  note "done"
  ;;
c)
  SKIP_PLAIN=1 SKIP_TESTS=1 bash runtime/bench/device-issue15.sh "$B" > "$O/issue15.txt" 2>&1
  note "issue 15: $(grep -c . "$O/issue15.txt") lines"
  sed -n '/== summary/,$p' "$O/issue15.txt" >> "$S"
  zoo12
  P=(); [ -f "$PROF" ] && P=(PROFILE_FILE="$PROF")
  env "${P[@]}" ONLY_SERVE=1 ZOOS=/tmp/c14 Z12="$Z12" BUDGET=$((560 - SECONDS)) OUT="$O/i14" \
    bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "issue 14 serving:"
  cat "$O/i14/summary.txt" >> "$S"
  ;;
d)
  # After parts a–c: the shipped profile re-measured with the batches tiers serving runs
  # (passes of 16 and 32 rows), the tiers cell and Azure cells with the live replay's clock
  # starting at a trace's first arrival (the Azure cells waited 21 minutes of log before).
  ( zoo12; "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 --targets query,value \
      --tenants 32 --dtype fp16 --out /tmp/pz32 > /dev/null ) 2>&1 | tail -2
  mkdir -p .device/prof
  t0=$SECONDS
  timeout 150 "$B/ptm" calibrate --device cuda:0 --zoo "$Z12" --dtype fp16 --pet-zoo /tmp/pz32 \
    --batches 1,2,4,8,16,32 --seq-lens 32,64,128,256,512 --max-instances 8 --repeats 20 \
    --slow-repeats 3 --slow-max-instances 2 --out "$PROF" 2> "$O/calibrate.err"
  note "calibrate: rc $? in $((SECONDS - t0)) s"
  cp "$PROF" "$O/h200.ron"
  fidelity_cells
  ;;
f)
  # Part d's plan with this build's two extra figures; the cells as part d ran them.
  zoo12
  mkdir -p .device/prof
  t0=$SECONDS
  timeout 150 "$B/ptm" calibrate --device cuda:0 --zoo "$Z12" --dtype fp16 \
    --batches 1,2,4,8,16,32 --seq-lens 32,64,128,256,512 --max-instances 8 --repeats 20 \
    --slow-repeats 3 --slow-max-instances 2 --out "$PROF" 2> "$O/calibrate.err"
  note "calibrate: rc $? in $((SECONDS - t0)) s"
  cp "$PROF" "$O/h200.ron"
  grep -E "handoff_ms|handoff_busy_ms|copy_during_forward" -A3 "$PROF" | cut -c1-120 | tee -a "$S"
  fidelity_cells
  ;;
g)
  # The 10,000-tenant zoo (6 GB, about a minute on the CPU) is written while the tests run.
  PZ=/tmp/i15/pz10k
  ( [ -f "$PZ/pet.ron" ] || "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 \
      --targets query,value --tenants 10000 --dtype fp16 --threads 8 --out "$PZ" > "$O/zoo_10k.txt" 2>&1 ) &
  ZOO=$!
  gpu_tests pet_tiled_gpu:40 pet_gpu:110
  grep -hE "worst row vs CPU alone" "$O/test_pet_gpu.txt" | cut -c1-140 >> "$S"
  wait $ZOO; note "zoo: $(tail -1 "$O/zoo_10k.txt" 2>/dev/null)"
  for v in warp:"--pet-kernels warp" tiled:"--pet-kernels tiled"; do
    timeout 60 "$B/ptm" bench pet --zoo "$PZ" --batch 32 --seq 128 --mixed 32 --iters 50 \
      --misses 32 --threads 16 ${v#*:} > "$O/bench_pet_${v%%:*}.txt" 2>&1
    note "bench pet (${v%%:*}): rc $?"
    grep -E "^kernel options|^\| (plain|PET slot)" "$O/bench_pet_${v%%:*}.txt" | tee -a "$S"
  done
  ;;
j)
  pet_zoos
  calibrate_shipped
  fidelity_cells
  pet_profile
  pet_live_cell
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 ONLY_PET=1 PET_ZOO="$PZ" ZOOS=/tmp/c14 Z12="$Z12" \
    BUDGET=$((570 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "PET serving:"
  cat "$O/i14/summary.txt" >> "$S"
  timeout $((585 - SECONDS)) python3 runtime/bench/peft_serve_baseline.py --zoo "$PZ" --adapters 100 \
    --requests 400 --texts 4 --seq 16 --dtype fp16 2>&1 | grep -v -i warn > "$O/peft_serve.txt"
  note "peft serve: $(tail -1 "$O/peft_serve.txt" | cut -c1-250)"
  ;;
k)
  # After the expand kernels' loads were hoisted: their GPU tests first (nothing else runs if
  # they fail), the step profile, then part j's calibration, profile check and live cells again
  # (the runtime's build identity changed with the kernels).
  pet_zoos &
  ZOOS_PID=$!
  gpu_tests pet_tiled_gpu:40 pet_gpu:110
  wait $ZOOS_PID
  if grep -q "FAILED\|panicked" "$O"/test_*.txt; then note "tests failed: stopping"; exit 1; fi
  pet_profile
  calibrate_shipped
  fidelity_cells
  pet_live_cell
  ;;
m)
  # After the serve path's CPU cuts (tokenization without rayon, admission estimates once per
  # request, answers written directly — the runtime's build identity changed with the
  # tokenizer) and PET costs with a fixed time per pass: the shipped profile again, then
  # serving (part h's runs, deadline-batch too, the 200-tenant zoo at Zipf(1.0) for issue 15's
  # comparison, the 10,000 PET tenants), then the live cells in what time is left.
  pet_zoos
  calibrate_shipped
  grep -E "overhead|segment_ms" -m3 "$PROF" | tee -a "$S"
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 WITH_200=1 SYNC_AB=1 SECOND_POLICY=1 ZIPF1_200=1 \
    ZOOS=/tmp/c14 Z12="$Z12" BUDGET=$((470 - SECONDS)) OUT="$O/i14" \
    bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "serving (12 tenants A/B, 200 tenants):"
  cat "$O/i14/summary.txt" >> "$S"
  pet_serving
  [ $SECONDS -lt 500 ] && pet_live_cell
  [ $SECONDS -lt 440 ] && fidelity_cells
  ;;
p)
  # Pinned staging (`KernelOptions::pinned_staging`, off by default) before its default flips:
  # `gpu_equals_cpu` (staged passes bit-equal to pageable ones, every model and dtype), `ptm
  # bench infer` with and without it, and the 12-tenant serving A/B (part m's configuration,
  # with and without `--pinned-staging`, 32 and 128 clients) in the same call. BIN_DIR also
  # needs `gpu_equals_cpu-*`. Uses the shipped profile.
  zoo12
  gpu_tests gpu_equals_cpu:120
  staging_ab_infer
  env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 STAGING_AB=1 ZOOS=/tmp/c14 Z12="$Z12" \
    BUDGET=$((560 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "serving A/B (pinned staging):"
  cat "$O/i14/summary.txt" >> "$S"
  ;;
q)
  # The fused LoRA kernels (`KernelOptions::pet_fused`, off by default) and pinned staging
  # (part p's A/B) before either default flips: the PET kernels' GPU tests (fused against warp
  # and tiled bit for bit, every mixed row against its tenant alone with each kernel choice)
  # and `gpu_equals_cpu` (staged passes), `ptm bench pet --profile` with the tiled and the fused
  # kernels, `ptm bench infer` with and without pinned staging, the 12-tenant serving A/B.
  pet_zoos &
  ZOOS_PID=$!
  zoo12
  gpu_tests pet_tiled_gpu:60 pet_gpu:170 gpu_equals_cpu:120
  wait $ZOOS_PID
  pet_kernels_ab tiled fused
  if command -v nsys > /dev/null || [ -x /usr/local/cuda/bin/nsys ]; then
    NSYS=$(command -v nsys || echo /usr/local/cuda/bin/nsys)
    timeout 90 "$NSYS" profile -o /tmp/petq --force-overwrite true "$B/ptm" bench pet --zoo "$PZ" \
      --tenants 1000 --batch 32 --seq 128 --mixed 32 --iters 20 --misses 0 --threads 16 \
      --pet-kernels fused > /dev/null 2>&1
    timeout 60 "$NSYS" stats --report cuda_gpu_kern_sum /tmp/petq.nsys-rep > "$O/nsys_kern.txt" 2>&1
    note "nsys: rc $?"; grep -E "pet_|Time" "$O/nsys_kern.txt" | cut -c1-160 | head -12 | tee -a "$S"
  else
    note "no nsys on this machine ($(ls /usr/local/cuda/bin 2> /dev/null | tr '\n' ' ' | cut -c1-200))"
  fi
  staging_ab_infer
  env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 SKIP_TODAY=1 STAGING_AB=1 ZOOS=/tmp/c14 \
    Z12="$Z12" BUDGET=$((560 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" \
    > "$O/issue14.txt" 2>&1
  note "serving A/B (pinned staging):"
  cat "$O/i14/summary.txt" >> "$S"
  ;;
r)
  # After the fused LoRA kernels' rank-8 expand took its columns three at a time and the
  # defaults flipped (`pet_fused` and `pinned_staging` on): the GPU tests again (nothing else
  # runs if they fail), `ptm bench pet --profile` tiled against fused, the shipped profile
  # (calibration and `ptm profile check`), PET serving and the PET cell, then the 12-tenant
  # serving (tier-affinity and deadline-batch, pinned staging now the default) in the time left.
  pet_zoos &
  ZOOS_PID=$!
  zoo12
  gpu_tests pet_tiled_gpu:60 pet_gpu:170 gpu_equals_cpu:120
  wait $ZOOS_PID
  if grep -q "FAILED\|panicked" "$O"/test_*.txt; then note "tests failed: stopping"; exit 1; fi
  pet_kernels_ab tiled fused
  calibrate_shipped
  pet_serving
  pet_live_cell
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 SKIP_TODAY=1 SECOND_POLICY=1 ZOOS=/tmp/c14 Z12="$Z12" \
    BUDGET=$((560 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" \
    > "$O/issue14.txt" 2>&1
  note "serving (12 tenants):"
  cat "$O/i14/summary.txt" >> "$S"
  ;;
s)
  # The build after part r with the fused kernels' one-column expand back (part q's kernel, its
  # GPU tests passed there and in r with every default): the shipped profile, the step profile,
  # PET serving and the PET cell, 12-tenant serving (tier-affinity, deadline-batch), the
  # 200-tenant zoo, then the tiers and Azure cells in the time left.
  pet_zoos
  calibrate_shipped
  pet_profile
  pet_serving
  pet_live_cell
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 SKIP_TODAY=1 SECOND_POLICY=1 WITH_200=1 ZIPF1_200=1 \
    ZOOS=/tmp/c14 Z12="$Z12" BUDGET=$((560 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" \
    > "$O/issue14.txt" 2>&1
  note "serving (12 and 200 tenants):"
  cat "$O/i14/summary.txt" >> "$S"
  [ $SECONDS -lt 430 ] && fidelity_cells
  ;;
t)
  # Pinned staging of downloads only (`pinned_uploads` off: part s's switch-heavy live cells
  # were slower than part m's, their passes' inputs queued behind weight switches on the copy
  # engine): `gpu_equals_cpu` (both directions staged, and neither, bit-equal to the default),
  # the shipped profile, the 12-tenant serving A/B (default, --pinned-uploads,
  # --pageable-staging), the tiers and Azure cells, PET serving and the PET cell.
  pet_zoos &
  ZOOS_PID=$!
  zoo12
  gpu_tests gpu_equals_cpu:120
  wait $ZOOS_PID
  if grep -q "FAILED\|panicked" "$O"/test_*.txt; then note "tests failed: stopping"; exit 1; fi
  calibrate_shipped
  grep -E "copy_during_forward|forward_during_copy" -A2 "$PROF" | head -12 | tr -s ' \n' ' ' | tee -a "$S"; echo >> "$S"
  env PROFILE_FILE="$PROF" ONLY_SERVE=1 SKIP_TODAY=1 STAGING_AB=1 UPLOADS_AB=1 ZOOS=/tmp/c14 \
    Z12="$Z12" BUDGET=$((400 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" \
    > "$O/issue14.txt" 2>&1
  note "serving A/B (12 tenants):"
  cat "$O/i14/summary.txt" >> "$S"
  fidelity_cells
  pet_serving
  [ $SECONDS -lt 520 ] && pet_live_cell
  [ $SECONDS -lt 560 ] && pet_profile
  ;;
v)
  # Not run yet (for the next call): the 12-tenant serving with executors that sleep on the GPU
  # (`--gpu-sync block`) against the default spin, twice each. With pinned downloads the server's
  # CPU per 16,000 requests at 128 clients doubled (28.7 s against 14.0 with pageable transfers,
  # part t: about 10.6 of the machine's 16 cores), so the spinning executors may now take the
  # cores the HTTP threads and tokenizers need.
  zoo12
  for r in 1 2; do
    env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 SKIP_TODAY=1 SYNC_AB=1 SKIP_LIVE=1 SKIP_200=1 ZOOS=/tmp/c14 \
      Z12="$Z12" BUDGET=$((280 * r - SECONDS)) OUT="$O/i14-$r" bash runtime/bench/device-issue14.sh "$B" \
      > "$O/issue14-$r.txt" 2>&1
    note "serving, gpu-sync A/B, run $r:"
    grep -E "c=(32|128): throughput" "$O/i14-$r/summary.txt" | cut -c1-160 >> "$S"
  done
  ;;
k4)
  # The tensor-core LoRA kernels: alone and checked, the GPU tests, the pass (see the top).
  PZ=/tmp/pz1k
  "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 --targets query,value --tenants 1000 \
    --dtype fp16 --threads 16 --out "$PZ" > "$O/zoo_1k.txt" 2>&1 &
  ZOOS_PID=$!
  lora_kernel_runs '' "fp16 4096 8" "bf16 4096 8"
  lora_kernel_runs '^check|lora_kernels:' "fp32 4096 8" "fp16 1000 13"
  gpu_tests pet_tiled_gpu:120 pet_gpu:240
  wait $ZOOS_PID; note "1,000-tenant zoo: rc $?"
  pet_kernels_ab mma fused
  ;;
k5)
  # The final tensor-core kernels (part m4's build) checked again: `lora_kernels` (status 1
  # beyond the 16-bit tolerance) and the GPU tests `pet_tiled_gpu`, `pet_gpu`.
  CUT=200 lora_kernel_runs '^\| (1|32) |^check|lora_kernels:' "fp16 4096 8" "bf16 4096 8" \
    "fp32 4096 8" "fp16 1000 13"
  gpu_tests pet_tiled_gpu:120 pet_gpu:240
  ;;
k6)
  # Each LoRA kernel alone, eager and in a CUDA graph (`lora_kernels` now prints both tables):
  # whether the eager figures carry host launch time.
  lora_kernel_runs '^([^c]|c[^h]|$)' "fp16 4096 8" "bf16 4096 8"  # every line but the checks
  ;;
w)
  # Not run yet (for the next call): each LoRA kernel alone at the mixed pass's shape
  # (`runtime/examples/lora_kernels.rs`; BIN_DIR also needs its stripped release binary,
  # `cargo build --release -p ptm-runtime --example lora_kernels`): the split of the Q/K/V
  # step's 46 µs a layer between shrink and expand that the per-step profile cannot give.
  for dt in fp16 bf16; do
    timeout 60 "$B/lora_kernels" $dt 4096 8 > "$O/lora_kernels_$dt.txt" 2>&1
    note "lora_kernels $dt: rc $?"; cat "$O/lora_kernels_$dt.txt" >> "$S"
  done
  ;;
m3)
  # The shipped profile made again by this build's calibration (the fits on the median and
  # 1.4826·MAD, the copy engine's occupancy from the live path's FIFO curve, the host work per
  # request as the calibration now measures it, pool copies beside passes), then the tiers cell
  # and the whole validation matrix (zipf-bursty, the Azure code trace, the FastPTM prefixes)
  # live against it.
  pet_zoos &
  ZOOS_PID=$!
  zoo12
  wait $ZOOS_PID
  calibrate_shipped
  grep -E "link_occupancy|staging_ms|handoff|pool_contention" -A2 "$PROF" | tr -s ' \n' ' ' | cut -c1-600 | tee -a "$S"; echo >> "$S"
  tiers_cell
  validation_matrix 590
  ;;
s3)
  # The 12-tenant serving — the first round's configuration, 8 executors, 4 executors three
  # times — with the server's CPU by thread, then the 200-tenant zoo on the same three; the
  # shipped profile for admission.
  zoo12
  env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 X4_RUNS=3 THREADS_CPU=1 WITH_200=1 \
    X4_200=1 SKIP_LIVE=1 ZOOS=/tmp/c14 Z12="$Z12" BUDGET=540 OUT="$O/i14" \
    bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "serving:"
  grep -E "c=(32|128): (throughput|statuses|server)|listening|zoo of" "$O/i14/summary.txt" | cut -c1-300 >> "$S"
  ;;
c4)
  # PET serving again with the tensor-core LoRA kernels and part m4's profile (shipped).
  PROF=scenarios/profiles/h200.ron
  pet_zoos
  pet_serving
  ;;
c3)
  # With the shipped profile of part m3 (committed as scenarios/profiles/h200.ron): PET serving
  # and the PET cell.
  PROF=scenarios/profiles/h200.ron
  pet_zoos
  pet_serving
  pet_live_cell
  ;;
z)
  # The 12-tenant serving configuration beside 4, 6 and 12 executors and a 2 ms window, with
  # the server's CPU by thread name (which threads take the ~10 cores the server uses at 128
  # clients since pinned downloads; `--gpu-sync block` did not lower it, part x).
  zoo12
  env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 SKIP_TODAY=1 EXEC_SWEEP=1 THREADS_CPU=1 \
    SKIP_LIVE=1 SKIP_200=1 ZOOS=/tmp/c14 Z12="$Z12" BUDGET=$((560 - SECONDS)) OUT="$O/i14" \
    bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "serving, executor sweep:"
  grep -E "c=(32|128): " "$O/i14/summary.txt" | cut -c1-420 >> "$S"
  ;;
x|y)
  # Both ran builds since taken back out of main (commits 5e209d7 and c2d2b8a, where
  # `KernelOptions::pet_rows` and runtime/src/gpu/pet_rows_kernels.cu lived): neither design
  # beat the fused kernels, so the runtime went back to the shipped profile's build.
  # x: the first design of `pet_rows` (one launch, items of 8 rows whatever their tenants, a
  # warp a row for the shrink into shared memory, 16-byte output vectors): bit-equal, but 70 µs
  # a launch against the fused kernel's 35 (results/h200-2026-11-30/x); replaced by y's design
  # (`pet_rows_kernels.cu` now: a warp a row for the shrink into memory, a thread a vector for
  # the expand, two launches). Each part: the kernels bit-equal to the warp kernels
  # (`pet_tiled_gpu`, `pet_gpu`), each LoRA kernel alone (part w's program with the row
  # kernels added), the mixed pass's step profile with the fused and the row kernels in one
  # call, then (x only) part v's serving A/B once.
  pet_zoos &
  ZOOS_PID=$!
  gpu_tests pet_tiled_gpu:60
  for dt in fp16 bf16; do
    timeout 60 "$B/lora_kernels" $dt 4096 8 > "$O/lora_kernels_$dt.txt" 2>&1
    note "lora_kernels $dt: rc $?"; cat "$O/lora_kernels_$dt.txt" >> "$S"
  done
  wait $ZOOS_PID
  pet_kernels_ab fused rows
  gpu_tests pet_gpu:170
  zoo12
  if [ "$PART" = x ] && [ $SECONDS -lt 400 ]; then
    env PROFILE_FILE=scenarios/profiles/h200.ron ONLY_SERVE=1 SKIP_TODAY=1 SYNC_AB=1 SKIP_LIVE=1 SKIP_200=1 ZOOS=/tmp/c14 \
      Z12="$Z12" BUDGET=$((570 - SECONDS)) OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" \
      > "$O/issue14.txt" 2>&1
    note "serving, gpu-sync A/B:"
    grep -E "c=(32|128): (throughput|statuses)" "$O/i14/summary.txt" | cut -c1-200 >> "$S"
  fi
  ;;
h)
  # Serving: the same 12-tenant configurations as part c plus executors that sleep on the GPU
  # (`--gpu-sync block`) instead of spinning, then the 200-tenant zoo part c had no time for.
  zoo12
  P=(); [ -f "$PROF" ] && P=(PROFILE_FILE="$PROF")
  env "${P[@]}" ONLY_SERVE=1 WITH_200=1 SYNC_AB=1 ZIPF1_200=1 ZOOS=/tmp/c14 Z12="$Z12" BUDGET=$((560 - SECONDS)) \
    OUT="$O/i14" bash runtime/bench/device-issue14.sh "$B" > "$O/issue14.txt" 2>&1
  note "issue 14 serving (gpu-sync A/B, 200 tenants):"
  cat "$O/i14/summary.txt" >> "$S"
  ;;
p2)
  # Pool loads beside forward passes: calibrate (with `pool_contention`), then the cells.
  [ -f /tmp/pz32/pet.ron ] || "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 \
    --targets query,value --tenants 32 --dtype fp16 --out /tmp/pz32 > /dev/null
  calibrate_shipped
  grep -E "pool_contention" -A4 "$PROF" | tr -s ' \n' ' ' | tee -a "$S"; echo >> "$S"
  fidelity_cells
  ;;
m4)
  # Part m3's recipe with this build, plus the PET cell and the PET pass (see the top).
  pet_zoos &
  ZOOS_PID=$!
  zoo12
  wait $ZOOS_PID
  calibrate_shipped
  { printf 'sm_sizes: '; awk '/ sm_sizes:/,/ link:/' "$PROF" | tr -s ' \n' ' ' | cut -c1-400; echo; } | tee -a "$S"
  tiers_cell
  pet_live_cell
  pet_kernels_ab mma fused
  validation_matrix 585
  ;;
sm3)
  # The SMs' sharing at 512 and 2,048 tokens too (sm_sizes), into a profile of its own, and the
  # cells where live passes ran slower than simulated (azure-m4, azure-m8) and the one an
  # assumed curve broke (zipf-m8), live against it.
  PROF=.device/prof/h200-sm.ron
  [ -f /tmp/pz32/pet.ron ] || "$B/ptm" zoo make --arch bert-base --pet lora --rank 8 \
    --targets query,value --tenants 32 --dtype fp16 --out /tmp/pz32 > /dev/null &
  ZOOS_PID=$!
  zoo12
  wait $ZOOS_PID
  calibrate_shipped
  mv "$O/h200.ron" "$O/h200-sm.ron"
  { printf 'sm_tokens/sm_sizes/sm_large: '
    awk '/ sm: Shared/,/ link:/' "$PROF" | tr -s ' \n' ' ' | cut -c1-1400; echo; } | tee -a "$S"
  env PROFILE="$PROF" ZOO="$Z12" ONLY='azure-m4|azure-m8|zipf-m8' BUDGET_S=$((240 - SECONDS)) \
    OUT="$O/i16" bash runtime/bench/device-issue16.sh "$B" > "$O/issue16.txt" 2>&1
  note "cells: rc $?"
  grep -E "^\| (zipf|azure)|^Judged" "$O/i16/fidelity.md" | cut -c1-220 >> "$S"
  cat "$O/i16/skipped.txt" >> "$S" 2> /dev/null
  ;;
*) echo "part a, b, c, d, f, g, h, j, k, k4, k5, k6, m, p, p2, q, r, s, t, v, w, x, y, z, m3, m4, s3, sm3, c3 or c4" >&2; exit 2 ;;
esac
echo "== summary"
cat "$S"
