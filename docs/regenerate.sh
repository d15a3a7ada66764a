#!/usr/bin/env bash
# Regenerates every file in docs/results and docs/figures that comes from a scenario on the
# shipped H200 profile (scenarios/profiles/h200.ron): fastptm/overall, synthetic/tiers and
# synthetic/pet. Figures from scenarios on other profiles (the RTX 3090 ones: instances-,
# loading-, omls-vs-fcfs-, zipf-*.png) are left alone.
#
# Usage, from the repository root: docs/regenerate.sh [PTM]   (default target/release/ptm)
#
# It runs the commands that README.md and BENCHMARKS.md quote next to each result, in a scratch
# folder (so their printed paths are the documented `results/…`), then copies the outputs to
# their docs/ names. Deterministic: the simulator is, and so are the figures; running it twice
# gives byte-identical files. The binary embeds the scenarios and the profile it simulates, so
# it first checks that they equal this checkout's files (a stale binary is refused).
set -euo pipefail

ptm=${1:-target/release/ptm}
[ -x "$ptm" ] || { echo "regenerate.sh: no ptm binary at $ptm (build: cargo build --release)" >&2; exit 2; }
[ -d docs/results ] && [ -d scenarios ] || { echo "regenerate.sh: run from the repository root" >&2; exit 2; }
ptm=$(cd "$(dirname "$ptm")" && pwd)/$(basename "$ptm")
root=$PWD

for name in fastptm/overall.ron synthetic/tiers.ron synthetic/pet.ron profiles/h200.ron; do
    if ! "$ptm" show "$name" | cmp -s - "scenarios/$name"; then
        echo "regenerate.sh: $ptm embeds a $name other than scenarios/$name; rebuild it" >&2
        exit 2
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
results=$root/docs/results
figures=$root/docs/figures

step() { echo "regenerate.sh: $*" >&2; }

# README's first table and plan figure: capacity against instances, FastPTM's workload.
step "ptm plan fastptm/overall"
"$ptm" plan fastptm/overall --slo 0.99 --rates 100,150,200 > "$results/plan-fastptm-overall.txt"
cp results/fastptm-overall-plan/capacity.csv "$results/plan-fastptm-overall-capacity.csv"
cp results/fastptm-overall-plan/capacity-vs-instances.png "$figures/plan-capacity-vs-instances.png"

# The bare `ptm` (main job) sweep: README's "On our H200" table and the overall-*.png figures.
step "ptm sweep fastptm/overall && ptm plot results/fastptm-overall"
"$ptm" sweep fastptm/overall -q --out results/fastptm-overall > /dev/null
"$ptm" plot results/fastptm-overall -q
cp results/fastptm-overall/summary.csv "$results/sweep-fastptm-overall-summary.csv"
for f in throughput overtimes latency-cdf-split; do
    cp "results/fastptm-overall/plots/$f.png" "$figures/overall-$f.png"
done

# The OMLS timeline of the default scenario, 10–16 s.
step "ptm run --policy omls --timeline overall-timeline-omls.csv && ptm plot --timeline …"
"$ptm" run --policy omls --timeline overall-timeline-omls.csv > /dev/null
"$ptm" plot --timeline overall-timeline-omls.csv --window 10-16 -q
cp overall-timeline-omls.png "$figures/overall-timeline-omls.png"

# Past FastPTM's model: GPU pool × batching window × instances (the plan's default folder is
# results/tiers-plan for both tiers plans, so each one's files are copied before the next).
step "ptm plan synthetic/tiers (pools × batching)"
"$ptm" plan synthetic/tiers --gpu-pools none,auto --max-waits off,1 --slo 0.99 \
    --instance-counts 1,2,4,8 --rates 200,1000 > "$results/plan-synthetic-tiers.txt"
cp results/tiers-plan/capacity.csv "$results/plan-synthetic-tiers-capacity.csv"
cp results/tiers-plan/capacity-vs-instances.png "$figures/tiers-capacity-vs-instances.png"

step "ptm plan synthetic/tiers (evictions)"
"$ptm" plan synthetic/tiers --gpu-pools 100 --max-waits 1 --evictions lru,lfu,gdsf,tinylfu,belady \
    --slo 0.99 --instance-counts 4 --rate 1000 > "$results/plan-synthetic-tiers-evictions.txt"

# 10,000 LoRA tenants against full fine-tunes over offered load.
step "ptm sweep synthetic/pet && ptm plot results/pet"
"$ptm" sweep synthetic/pet -q > /dev/null
"$ptm" plot results/pet -q
cp results/pet/seeds.csv "$results/sweep-synthetic-pet-seeds.csv"
cp results/pet/summary.csv "$results/sweep-synthetic-pet-summary.csv"
cp results/pet/plots/throughput.png "$figures/pet-throughput.png"
cp results/pet/plots/slo-attainment.png "$figures/pet-slo-attainment.png"

step "done: docs/results and docs/figures regenerated with $ptm"
