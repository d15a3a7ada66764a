#!/usr/bin/env bash
# Choosing the serving configuration of device-issue14.sh on paper: the simulator on the
# shipped H200 profile with an ASSUMED weight-pool load (0.12 ms, stretching linearly with the
# executors loading at once; 220,000,000-byte tenants) — the shipped profile predates the pool
# figures, which device-issue14.sh measures. Open-loop Poisson arrivals of requests of 4 texts
# of 32 tokens over 12 or 200 Zipf(1.1) tenants; today's configuration (3 instances, no pool,
# passes of 8 rows, affinity) against executors × policy with a pool (auto), passes of up to 32
# rows and a 1 ms batching window. Usage: runtime/bench/issue14-tuning.sh PTM OUT_DIR
set -eu
PTM=$1; D=$2; mkdir -p "$D"
sed '/request_overhead_ms: Constant(0.0),/i\            weights_bytes: Some(220000000),\n            pool_switch: Some((ms: Constant(0.12), stretch: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])),' \
  scenarios/profiles/h200.ron > "$D/h200-assumed-pool.ron"
cell() { # name tenants rate instances pool forward_batch batching policy
  cat > "$D/$1.ron" <<RON
Scenario(
    name: "$1",
    profile: "h200-assumed-pool.ron",
    model: "bert-base-fp16",
    instances: $4,
    forward_batch: $6,
    preload: Empty,
    gpu_pool: $5,
    batching: $7,
    workload: Generate(requests: $(( $3 * 8 )), arrivals: Poisson(rate_rps: $3.0), tenants: $2, popularity: Zipf(s: 1.1)),
    request: (samples: 4, seq_len: 32, deadline_ms: 3000.0),
    policies: ["$8"],
    seeds: [1],
)
RON
  "$PTM" run "$D/$1.ron" | tail -1 | sed "s/^/$1 /"
}
{
  echo "cell policy seed thr_req/s makespan switches cold overtimes SLO% mean_ms p50_ms p99_ms wait_p50 busy% worst"
  for r in 3000 6000; do cell today-12-r$r 12 $r 3 None 8 None affinity; done
  for r in 1500 3000; do cell today-200-r$r 200 $r 3 None 8 None affinity; done
  for r in 9000 15000 25000; do for n in 4 8; do for p in tier-affinity deadline-batch; do
    cell new-12-r$r-n$n-$p 12 $r $n "Some(Auto)" 32 "Some((max_wait_ms: 1.0))" $p
  done; done; done
  for r in 6000 12000; do for p in tier-affinity deadline-batch; do
    cell new-200-r$r-n8-$p 200 $r 8 "Some(Auto)" 32 "Some((max_wait_ms: 1.0))" $p
  done; done
} | tee "$D/results.txt"
rm -f "$D"/*.ron
