#!/usr/bin/env bash
# One device call for issue 7: calibrate this GPU as the live runtime serves (a 12-tenant
# BERT-base fp16 zoo: switches rotate over the 12, forwards are staged passes, cold loads read
# a checkpoint into a slot), then replay the fidelity cells live beside simulations on the new
# profile (runtime/bench/live-fidelity.sh with PROFILE set). Outputs under $OUT.
# Usage (repository root on the GPU machine): runtime/bench/calibrate-and-fidelity.sh BIN_DIR NAME
# (CALIBRATE_ONLY=1 stops after the calibration.)
set -u
B=$(cd "${1:-.device/live}" && pwd); NAME=${2:-h200}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
O=${OUT:-/tmp/out}; mkdir -p "$O"
"$B/ptm" zoo make --arch bert-base --tenants 12 --dtype fp16 --out /tmp/z12 > /dev/null || exit 1
t0=$(date +%s)
timeout 330 "$B/ptm" calibrate --device cuda:0 --zoo /tmp/z12 --dtype fp16 --out "$O/$NAME.ron" 2> "$O/calibrate.err" \
  || { tail -5 "$O/calibrate.err"; exit 1; }
echo "calibration: $(( $(date +%s) - t0 )) s"
grep -B2 -A14 "switch:" "$O/$NAME.ron" | grep -E "median_ms" | head -3
[ -n "${CALIBRATE_ONLY:-}" ] || SKIP_TESTS=1 PROFILE="$O/$NAME.ron" bash runtime/bench/live-fidelity.sh "$B"
