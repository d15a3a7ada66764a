"""Prints the sim-vs-live fidelity table (markdown) of `ptm run --live --compare --json` outputs.

Error = (simulated - live) / live, per metric; targets (issue 7): throughput 3 %, mean latency
5 %, p99 10 %, switches 2 %.
"""
import json
import sys

METRICS = [
    ("throughput req/s", lambda r: r["throughput_rps"], 3.0),
    ("mean ms", lambda r: r["latency_ms"]["mean"], 5.0),
    ("p50 ms", lambda r: r["latency_ms"]["p50"], None),
    ("p99 ms", lambda r: r["latency_ms"]["p99"], 10.0),
    ("switches", lambda r: r["switches"], 2.0),
    ("pool loads", lambda r: r.get("pool_loads", 0), None),
    ("batches", lambda r: r.get("batches", r["requests"]), None),
    ("overtimes", lambda r: r["overtimes"], None),
]

print("| cell | policy | " + " | ".join(f"{m} sim / live (err)" for m, _, _ in METRICS) + " |")
print("|---|---|" + "---|" * len(METRICS))
for path in sys.argv[1:]:
    try:
        cells = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"| {path} | failed: {e} |")
        continue
    for c in cells:
        live, sim = c["live"], c["simulated"]
        row = [f"{live['scenario']}", live["policy"]]
        for _, get, target in METRICS:
            s, l = get(sim), get(live)
            err = 100.0 * (s - l) / l if l else (0.0 if s == 0 else float("inf"))
            mark = "" if target is None or abs(err) <= target else " ✗"
            row.append(f"{s:.4g} / {l:.4g} ({err:+.1f} %{mark})")
        print("| " + " | ".join(row) + " |")

print()
print("| cell | policy | wait ms sim / live | switch ms sim / live | pool load ms sim / live | cold load ms sim / live | inference ms sim / live |")
print("|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    try:
        cells = json.load(open(path))
    except (OSError, ValueError):
        continue
    for c in cells:
        s, l = c.get("simulated_phases"), c.get("live_phases")
        if not s or not l:
            continue
        row = [c["live"]["scenario"], c["live"]["policy"]]
        # The mean wait is the reports' (older outputs also kept it in the phases).
        row.append(f"{c['simulated']['wait_ms']['mean']:.3f} / {c['live']['wait_ms']['mean']:.3f}")
        # Outputs written before pool loads were timed have no pool_load_ms.
        for k in ["switch_ms", "pool_load_ms", "cold_load_ms", "inference_ms"]:
            row.append(f"{s.get(k, 0.0):.3f} / {l.get(k, 0.0):.3f}")
        print("| " + " | ".join(row) + " |")
