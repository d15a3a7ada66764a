#!/usr/bin/env bash
# A sensitivity study, not a measurement: re-simulates the round-2 H200 recordings (azure m1,
# azure m4, tiers-live; `ptm run … --resimulate`) with a copy of the profile they were measured
# against into which assumed values of the two optional figures are written:
#   BUSY   host.handoff_busy_ms (a Dist, e.g. "Constant(0.08)"; "-" leaves it out)
#   LARGE  contention.copy_during_forward_large ("(16384, 1.1)"; "-" leaves it out)
# and prints the fidelity table's rows (cells of ≥ 1,000 requests). CPU only, ~30 s a variant.
# Usage (repository root, after `cargo build -p ptm`):
#   runtime/bench/resimulate-sensitivity.sh BUSY LARGE [PTM]
set -eu
BUSY=${1:?BUSY dist or -}; LARGE=${2:?LARGE (tokens, factor) or -}; PTM=${3:-./target/debug/ptm}
R=runtime/bench/results/h200-2026-11-29-round2
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$T/h200.ron
cp "$R/e/h200.ron" "$P"
# The profile has one model: its contention section ends with copy_during_forward, its host
# section starts with handoff_ms.
[ "$LARGE" = - ] || sed -i "s/^\( *\)copy_during_forward: \(.*\),$/&\n\1copy_during_forward_large: Some($LARGE),/" "$P"
[ "$BUSY" = - ] || sed -i "s/^\( *\)handoff_ms: /\1handoff_busy_ms: Some($BUSY),\n&/" "$P"
for c in 1:150 4:600; do
  "$PTM" run runtime/bench/issue16/azure-code.ron --instances "${c%%:*}" --rate "${c##*:}" \
    --profile "$P" --model bert-base-fp16 --resimulate "$R/e/azure-m${c%%:*}.json" --json > "$T/azure-m${c%%:*}.json"
  "$PTM" fidelity-table "$T/azure-m${c%%:*}.json" --min-requests 1000 | grep '^| azure'
done
"$PTM" run runtime/bench/tiers-live.ron --profile "$P" --model bert-base-fp16 \
  --resimulate "$R/d/tiers-live.json" --json > "$T/tiers.json"
"$PTM" fidelity-table "$T/tiers.json" --min-requests 1000 | grep '^| tiers'
