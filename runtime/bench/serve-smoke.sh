#!/usr/bin/env bash
# `ptm serve` on a GPU: a tiny fp16 zoo served by 2 slot instances on cuda:0 (start-up
# calibration on the GPU), one request per tenant compared with `ptm infer` on the same device,
# the counters, then a graceful shutdown. Usage (repository root): runtime/bench/serve-smoke.sh BIN_DIR
set -u
B=$(cd "${1:-.device/live}" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
O=${OUT:-/tmp/out}; mkdir -p "$O"
"$B/ptm" zoo make --arch tiny --tenants 3 --dtype fp16 --out /tmp/zs > /dev/null || exit 1
# SERVE_ARGS: more flags, e.g. `--profile scenarios/profiles/h200.ron --model bert-base-fp16` to
# skip the start-up calibration (how the 2026-11-21 H200 smoke ran).
"$B/ptm" serve --zoo /tmp/zs --device cuda:0 --dtype fp16 --listen 127.0.0.1:8089 --instances 2 ${SERVE_ARGS:-} \
  > "$O/serve.out" 2> "$O/serve.err" &
PID=$!
for _ in $(seq 300); do grep -q listening "$O/serve.out" && break; sleep 0.2; done
cat "$O/serve.out"
for t in 000 001 002 001 000; do
  curl -s -X POST localhost:8089/v1/infer \
    -d "{\"tenant\": \"tiny-t$t\", \"texts\": [\"hello world\", \"the quick brown fox jumps\"]}" > /tmp/s_$t.json
  "$B/ptm" infer --model /tmp/zs/tiny-t$t --device cuda:0 --dtype fp16 \
    --text "hello world" --text "the quick brown fox jumps" --json > /tmp/i_$t.json
  python3 - "$t" <<'PY'
import json, sys
t = sys.argv[1]
s = json.load(open(f"/tmp/s_{t}.json")); i = json.load(open(f"/tmp/i_{t}.json"))
worst = max(abs(a - b) for so, io in zip(s["outputs"], i) for a, b in zip(so["values"], io["values"]))
same_ids = all(so["token_ids"] == io["token_ids"] for so, io in zip(s["outputs"], i))
print(f"tenant {t}: switched={s.get('switched')} latency_ms={s.get('latency_ms')} same ids={same_ids} max |serve - infer| = {worst:.3g}")
PY
done
curl -s localhost:8089/metrics | grep -E "^ptm_(requests_accepted|switches|cold_loads|responses)"
kill -TERM $PID; wait $PID; echo "serve exit code: $?"; tail -3 "$O/serve.err"
