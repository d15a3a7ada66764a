#!/bin/bash
# Calibrate this GPU twice with the real runtime (BERT-base fp16 zoo made here), compare the two,
# and run the default scenario on the profile. Outputs under $OUT.
set -o pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/ptm  # the release binary, copied here
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $OUT/gpu.txt
$P zoo make --arch bert-base --tenants 2 --dtype fp16 --out /tmp/zb > /dev/null || exit 1
t0=$(date +%s)
$P calibrate --device cuda:0 --zoo /tmp/zb --dtype fp16 --out $OUT/$1.ron 2> $OUT/cal1.err || { tail -5 $OUT/cal1.err; exit 1; }
t1=$(date +%s); echo "calibration 1: $((t1-t0)) s"
if [ "$2" = twice ]; then
  $P calibrate --device cuda:0 --zoo /tmp/zb --dtype fp16 --out $OUT/$1-again.ron 2> $OUT/cal2.err || { tail -5 $OUT/cal2.err; exit 1; }
  t2=$(date +%s); echo "calibration 2: $((t2-t1)) s"
  $P profile diff $OUT/$1.ron $OUT/$1-again.ron | tee $OUT/repeatability.txt | tail -12
fi
$P run --profile $OUT/$1.ron --model bert-base-fp16 | tee $OUT/run.txt
grep -A3 '"bert-base-fp16"' $OUT/$1.ron | head -4
grep -B2 -A12 "switch:" $OUT/$1.ron | grep -E "median_ms|stretch" | head -12
