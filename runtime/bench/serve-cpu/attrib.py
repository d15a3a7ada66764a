"""Splits a `perf script -F comm,tid,ip,sym` of `ptm serve` (dwarf call graphs) by what each
sample's stack was doing, and scales the shares to CPU-us per request.

usage: perf script ... | python3 attrib.py REQUESTS CPU_TICKS
"""
import collections
import sys


def kind(stack):
    if any(k in stack for k in ("ptm_runtime::bert", "candle_core", "gemm_", "BarrierGuard", "candle_nn")):
        return "forward (candle)"
    if "tokenizers::" in stack:
        return "tokenize"
    if any(k in stack for k in ("ptm_live::serve::coordinate", "ptm_live::coordinator::Core", "admission")):
        return "coordinator"
    if "serde_json" in stack or "parse_infer" in stack:
        return "json"
    if "rayon_core" in stack:
        return "rayon idle"
    if "ptm_live::coordinator::worker" in stack or "ptm_live::coordinator::run_job" in stack:
        return "executor outside forward"
    if any(k in stack for k in ("hyper", "axum", "tokio", "tcp", "sys_")):
        return "http/tokio/kernel"
    return "other"


def main():
    requests, ticks = int(sys.argv[1]), int(sys.argv[2])
    counts = collections.Counter()
    head, frames = None, []

    def flush():
        if head is not None:
            counts[kind(" ".join(frames))] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            head, frames = None, []
        elif not line.startswith((" ", "\t")):
            flush()
            head, frames = line, []
        else:
            frames.append(line.strip())
    flush()
    total = sum(counts.values())
    us = ticks * 10000 / requests
    for k, v in counts.most_common():
        print(f"{k:28s} {100 * v / total:5.1f} %  {us * v / total:6.0f} us/request")


main()
