#!/bin/bash
# Server CPU per request of `ptm serve` under `ptm bench load` (CPU device, any zoo), with a
# split by thread and, given PERF_OUT, by what the sampled stacks were doing (attrib.py).
#
#   runtime/bench/serve-cpu/measure.sh BIN ZOO PORT [REQUESTS] [PERF_OUT]
#
# The server runs with the issue-14 flags (8 executors, pool, batches of 32 rows, 1 ms window,
# tier-affinity); 2,000 requests warm it up, then REQUESTS (default 8,000) from 8 processes at
# 128 concurrent clients are measured: the server's CPU (utime + stime of /proc/PID/stat) per
# request, per thread class, the batches, and the sampled queue depth and busy instances.
set -u
B=$1; Z=$2; PORT=$3; REQS=${4:-8000}; PERF=${5:-}
D=$(dirname "$0"); L=$(mktemp -d)
"$B" serve --zoo "$Z" --device cpu --listen 127.0.0.1:"$PORT" --queue 1024 --instances 8 \
  --gpu-pool auto --max-batch 32 --max-wait-ms 1 --policy tier-affinity > "$L/out" 2> "$L/err" &
pid=$!
for _ in $(seq 300); do grep -q listening "$L/out" && break; sleep 0.2; done
metric() { curl -s "localhost:$PORT/metrics" | awk -v k="ptm_$1_total" '$1 == k {v = $2} END {print v + 0}'; }
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
threads() {
  for t in /proc/$pid/task/*; do
    s=$(cat "$t/stat" 2> /dev/null) || continue
    echo "$(basename "$t") $(echo "$s" | sed 's/.*(\(.*\)).*/\1/' | tr ' ' _) $(echo "$s" | sed 's/.*) //' | awk '{print $12 + $13}')"
  done
}
"$B" bench load --url "http://127.0.0.1:$PORT" --processes 8 --concurrency 128 --requests 2000 > "$L/warm" 2>&1
b0=$(metric batches); c0=$(cpu); threads > "$L/t0"
if [ -n "$PERF" ]; then perf record -F 199 --call-graph dwarf,16384 -p $pid -o "$PERF" 2> /dev/null & ppid=$!; sleep 0.5; fi
( while sleep 0.1; do curl -s "localhost:$PORT/metrics" | awk '$1=="ptm_queue_depth"{q=$2} $1=="ptm_busy_instances"{b=$2} END{print q, b}'; done ) > "$L/q" &
qpid=$!
"$B" bench load --url "http://127.0.0.1:$PORT" --processes 8 --concurrency 128 --requests "$REQS" > "$L/load" 2>&1
kill $qpid
if [ -n "$PERF" ]; then kill -INT $ppid; wait $ppid; fi
c1=$(cpu); threads > "$L/t1"; b1=$(metric batches)
echo "server CPU $(( (c1 - c0) * 10000 / REQS )) us/request ($((c1 - c0)) ticks for $REQS requests); batches $((b1 - b0)) ($(awk -v n="$REQS" -v b=$((b1 - b0)) 'BEGIN {printf "%.2f", n / b}') requests a batch)"
sed -n 2p "$L/load"
awk '{q += $1; b += $2; n++} END {printf "sampled queue depth mean %.1f, busy instances mean %.2f (%d samples)\n", q / n, b / n, n}' "$L/q"
# Per thread class: the coordinator is the main thread; candle's and rayon's pools inherit the
# name of the thread that first used them.
awk -v pid=$pid -v n="$REQS" 'NR == FNR {t0[$1] = $3; next} {
    k = ($1 == pid) ? "coordinator" : ($2 ~ /^ptm-exec/) ? "executors" : ($2 ~ /^tokio/) ? "tokio" : ($2 ~ /^candle/) ? "candle-pool" : $2
    c[k] += $3 - t0[$1] } END { for (k in c) printf "%s %.0f us  ", k, c[k] * 10000 / n; print "" }' "$L/t0" "$L/t1"
if [ -n "$PERF" ]; then
  perf script -i "$PERF" -F comm,tid,ip,sym 2> /dev/null | python3 "$D/attrib.py" "$REQS" $((c1 - c0))
fi
kill -TERM $pid; wait $pid
rm -rf "$L"
