#!/usr/bin/env python3
"""Summarize a bench/compare.sh results file as Markdown.

Usage: bench/summarize.py [results.jsonl]   (default: the newest in bench/results)

For every case and metric it prints the median over the runs of each
server, and the ratio ours/peer of those medians (both from the same run
set, the file given). Runs whose pushload failed to produce a report are
counted in the "runs" line but not in the medians.
"""

import glob
import json
import os
import platform
import statistics
import subprocess
import sys

SERVERS = ["ours", "mercure", "nchan"]
PEERS = ["mercure", "nchan"]

# (label, path into the report, lower is better?)
LOSS = [
    ("connected", "connected", False),
    ("delivered", "delivered", False),
    ("lost", "lost", True),
    ("delivered although the publish failed", "unconfirmed", False),
    ("duplicates", "duplicates", True),
    ("out of order", "out_of_order", True),
]
CASES = {
    "fanout_sse": ("A. fan-out, SSE, flat out", [
        ("CPU µs per delivered", "cpu_us_per_delivered", True),
        ("server CPU s (publish phase)", "cpu_publish_s", True),
        ("deliveries/s", "delivered_per_second", False),
        ("latency p50 ms", "latency_ms.p50", True),
        ("latency p99 ms", "latency_ms.p99", True),
    ] + LOSS),
    "fanout_ws": ("B. fan-out, WebSocket, flat out", None),
    "latency_sse": ("C. latency, SSE, 50 msg/s", [
        ("latency p50 ms", "latency_ms.p50", True),
        ("latency p90 ms", "latency_ms.p90", True),
        ("latency p99 ms", "latency_ms.p99", True),
        ("latency max ms", "latency_ms.max", True),
        ("achieved publish rate msg/s", "achieved_rate", False),
        ("CPU µs per delivered", "cpu_us_per_delivered", True),
    ] + LOSS),
    "latency_ws": ("D. latency, WebSocket, 50 msg/s", None),
    "memory_sse": ("E. memory per idle connection, SSE", [
        ("KB per connection", "kb_per_conn", True),
        ("RSS before KB", "rss_before_kb", True),
        ("RSS after KB", "rss_after_kb", True),
        ("connected", "connected", False),
        ("connect_failed", "connect_failed", True),
    ]),
    "memory_ws": ("E. memory per idle connection, WebSocket", None),
    "scale_sse": ("F. scale, SSE, 100 msg/s", [
        ("connected", "connected", False),
        ("achieved publish rate msg/s", "achieved_rate", False),
        ("connect_failed", "connect_failed", True),
        ("latency p50 ms", "latency_ms.p50", True),
        ("latency p99 ms", "latency_ms.p99", True),
        ("CPU µs per delivered", "cpu_us_per_delivered", True),
        ("KB per connection", "kb_per_conn", True),
        ("delivered", "delivered", False),
        ("lost", "lost", True),
        ("delivered although the publish failed", "unconfirmed", False),
        ("disconnects", "disconnects", True),
    ]),
    "publish_rtt": ("G. publish round trip, 1000 msg/s, 8 publishers", [
        ("achieved publish rate msg/s", "achieved_rate", False),
        ("publish RTT p50 ms", "publish_rtt_ms.p50", True),
        ("publish RTT p99 ms", "publish_rtt_ms.p99", True),
        ("publish RTT max ms", "publish_rtt_ms.max", True),
        ("publish_failed", "publish_failed", True),
        ("latency p99 ms", "latency_ms.p99", True),
    ] + LOSS[:4]),  # several publishers race: order means nothing
}
CASES["publish_rtt_500"] = ("G2. publish round trip, 500 msg/s, 8 publishers", CASES["publish_rtt"][1])
MEMORY_TLS = [("KB per connection", "kb_per_conn", True)] + CASES["memory_sse"][1][1:] + [
    ("TCP connections", "connections", False),
    ("disconnects", "disconnects", True),
]
CASES.update({
    "tls_memory_sse_h2": ("H. memory per idle connection, SSE over HTTPS, HTTP/2, one stream a connection", MEMORY_TLS),
    "tls_memory_sse_h2x": ("H. memory per idle subscriber, SSE over HTTPS, HTTP/2, 100 streams a connection", MEMORY_TLS),
    "tls_memory_sse_h1": ("H. memory per idle connection, SSE over HTTPS, HTTP/1.1", MEMORY_TLS),
    "tls_memory_ws": ("H. memory per idle connection, WebSocket over TLS (wss)", MEMORY_TLS),
    "tls_latency_sse_h2": ("I. latency, SSE over HTTPS, HTTP/2, 50 msg/s", None),
    "tls_latency_ws": ("I. latency, WebSocket over TLS (wss), 50 msg/s", None),
})
for _k, _peer in (("fanout_ws", "fanout_sse"), ("latency_ws", "latency_sse"), ("memory_ws", "memory_sse"),
                  ("tls_latency_sse_h2", "latency_sse"), ("tls_latency_ws", "latency_sse")):
    CASES[_k] = (CASES[_k][0], CASES[_peer][1])


def get(d, path):
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# pushload's histogram is 1% buckets from 1 µs to about 7 minutes; a
# percentile is read as its bucket's upper edge.
def capped(key, v):
    return False


def fmt(v, key=""):
    if v is None:
        return "–"
    if capped(key, v):
        return "≥153"
    if isinstance(v, float) and not v.is_integer():
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return f"{int(v):,}"


def ratio(a, b, key=""):
    if a is None or b is None:
        return "–"
    if capped(key, a) or capped(key, b):
        return "?"
    if b == 0:
        return "=" if a == 0 else "∞"
    return f"{a / b:.2f}"


def machine(meta):
    if meta:
        return meta
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        gov = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        gov = ""
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "go": gov}


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        files = sorted(glob.glob(os.path.join(here, "results", "*.jsonl")))
        if not files:
            sys.exit("no results in bench/results")
        path = files[-1]

    meta, rows = None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "meta" in d:
                meta = d["meta"]
                continue
            # A rate is a ceiling: a saturated server (or publisher) falls
            # behind it, which this shows.
            if d.get("published") and d.get("publish_seconds"):
                d["achieved_rate"] = d["published"] / d["publish_seconds"]
            rows.append(d)

    m = machine(meta)
    print(f"# Push benchmark: {os.path.basename(path)}\n")
    print(f"- machine: {m.get('nproc')} CPUs, {m.get('cpu_model')}, kernel {m.get('kernel')}")
    print(f"- {m.get('go')}")
    if meta:
        print(f"- ours: {meta.get('ours_ref', 'working tree')} at {meta.get('ours_commit')}{' (with uncommitted changes)' if meta.get('ours_dirty') else ''}; "
              f"mercure: {meta.get('mercure') or '–'}; {meta.get('nginx') or 'nginx –'}, nchan {meta.get('nchan') or '–'}")
        print(f"- runs per case: R={meta.get('r')}{', QUICK (about 10x smaller)' if meta.get('quick') else ''}; "
              f"started {meta.get('started')}")
    print("- server pinned to CPU 0 (one at a time), pushload pinned to CPU 1; "
          "values are medians over runs; ratio = median(ours) / median(peer)")
    print("- latency is counted from when a message was due to be sent (the schedule), so a publisher "
          "held up by a slow server does not hide the delay; percentiles are 1% buckets\n")

    present = [s for s in SERVERS if any(r["server"] == s for r in rows)]
    peers = [p for p in PEERS if p in present and "ours" in present]
    seen_cases = []
    for r in rows:
        if r["case"] not in seen_cases:
            seen_cases.append(r["case"])
    order = [c for c in CASES if c in seen_cases] + [c for c in seen_cases if c not in CASES]

    for case in order:
        title, metrics = CASES.get(case, (case, [("delivered", "delivered", False), ("lost", "lost", True)]))
        crow = [r for r in rows if r["case"] == case]
        if not crow:
            continue
        p = crow[0]
        rate = "flat out" if p.get("rate", 0) == 0 else f"{p.get('rate')}/s"
        print(f"## {title}\n")
        print(f"`{case}`: n={p.get('n')} subscribers, m={p.get('m')} messages, {rate}, "
              f"pub concurrency {p.get('pub_concurrency')}\n")
        cols = [s for s in present if any(r["server"] == s for r in crow)]
        hdr = ["metric"] + cols + [f"ours/{q}" for q in peers if q in cols and "ours" in cols]
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join(["---"] + ["--:"] * (len(hdr) - 1)) + "|")

        ok = {s: [r for r in crow if r["server"] == s and "error" not in r] for s in cols}
        runs = []
        for s in cols:
            total = sum(1 for r in crow if r["server"] == s)
            clean = sum(1 for r in ok[s] if r.get("exit") == 0)
            runs.append(f"{total} ({clean} clean)")
        print("| runs | " + " | ".join(runs) + " |" + " |" * (len(hdr) - 1 - len(cols)))

        for label, key, _lower in metrics:
            med = {}
            for s in cols:
                vals = [get(r, key) for r in ok[s]]
                vals = [v for v in vals if v is not None]
                med[s] = statistics.median(vals) if vals else None
            cells = [fmt(med[s], key) for s in cols]
            cells += [ratio(med["ours"], med[q], key) for q in peers if q in cols and "ours" in cols]
            print(f"| {label} | " + " | ".join(cells) + " |")

        errs = [r for r in crow if "error" in r]
        notes = []
        for r in errs:
            notes.append(f"{r['server']} run {r['run']}: pushload failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else 'no output'}")
        for r in crow:
            if r.get("first_error"):
                notes.append(f"{r['server']} run {r['run']}: first error: {r['first_error']}")
            if r.get("timed_out"):
                notes.append(f"{r['server']} run {r['run']}: timed out")
        if notes:
            print()
            for n in notes[:8]:
                print(f"- {n}")
        print()


if __name__ == "__main__":
    main()
