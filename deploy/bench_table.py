"""Reads the logs of the benchmark suite (deploy/bench.sh suite) and prints one table of
the figures with their targets. Standard library only.

    python3 deploy/bench_table.py DIR      # DIR holds python.log, daemon.log, ingest.log,
                                           # e2e.log and query.log
"""

from __future__ import print_function

import os
import re
import sys


def read(directory, name):
    path = os.path.join(directory, name)
    return open(path).read() if os.path.exists(path) else ""


def find(pattern, text, group=1, cast=float):
    match = re.search(pattern, text, re.M)
    return cast(match.group(group)) if match else None


def row(rows, area, figure, value, target, met):
    verdict = "-" if met is None else ("met" if met else "NOT met")
    rows.append((area, figure, value if value is not None else "(missing)", target, verdict))


def main(directory):
    rows = []
    python = read(directory, "python.log")
    for call in ("log_event(name)", "log_metric(name, value)", "update_state(small nested dict)"):
        ns = find(r"async %s\s+median\s+(\d+) ns" % re.escape(call), python)
        row(rows, "Python client", "%s per call (async, CPython 3)" % call,
            "%d ns" % ns if ns is not None else None, "<= 500 ns", ns is not None and ns <= 500)
    rate = find(r"delivered to a real daemon: \d+ events in [\d.]+ s = (\d+) events/s", python)
    row(rows, "Python client", "events/s from one process to a daemon",
        "%d" % rate if rate is not None else None, ">= 200 000", rate is not None and rate >= 200000)

    daemon = read(directory, "daemon.log")
    rate = find(r"acknowledged by JetStream\s+(\d+) events/s", daemon)
    row(rows, "Daemon", "events/s acknowledged by JetStream",
        "%d" % rate if rate is not None else None, ">= 200 000", rate is not None and rate >= 200000)
    rss = find(r"daemon RSS idle\s+([\d.]+) MiB", daemon)
    row(rows, "Daemon", "RSS idle", "%.1f MiB" % rss if rss is not None else None, "<= 20 MiB",
        rss is not None and rss <= 20)

    ingest = read(directory, "ingest.log")
    for block in re.split(r"(?=^ingest benchmark:)", ingest, flags=re.M):
        shape = find(r"^ingest benchmark: (\d+ sessions x \d+ batches)", block, cast=str)
        if not shape:
            continue
        layout = find(r"^  cores: (\w+)", block, cast=str) or "shared"
        # The warm figure is against the raw insert of the measured rows (after the warm-up's).
        raws = dict(re.findall(
            r"(\d) worker\(s\): raw insert right after it, median \d+ rows/s of all rows"
            r" \([^)]*\), (\d+) rows/s of the measured rows",
            block))
        for workers, rows_s, percent in re.findall(
                r"(\d) worker\(s\), warm\s+(\d+) rows/s .*?([\d.]+) % of raw", block):
            row(rows, "Ingest (%s, %s cores)" % (shape, layout),
                "%s worker(s), warm: rows/s vs raw %s" % (workers, raws.get(workers, "?")),
                "%s (%s %%)" % (rows_s, percent), ">= 60 % of raw", float(percent) >= 60)

    e2e = read(directory, "e2e.log")
    rate = find(r"throughput\s+(\d+) calls/s", e2e)
    row(rows, "End to end", "calls/s through daemons, 1 ingest worker", "%d" % rate if rate else None,
        ">= 50 000 offered", rate is not None and rate >= 49000)
    p50 = find(r"freshness .*? p50 (\d+) ms", e2e)
    p99 = find(r"freshness .*? p99 (\d+) ms", e2e)
    row(rows, "End to end", "freshness p50 (call -> visible in the API)",
        "%d ms" % p50 if p50 is not None else None, "", None)
    row(rows, "End to end", "freshness p99 at 50 000 events/s",
        "%d ms" % p99 if p99 is not None else None, "<= 1000 ms", p99 is not None and p99 <= 1000)

    query = read(directory, "query.log")
    for name, p50, p95 in re.findall(r"^  (\S.*?)\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms", query, re.M):
        target, met = "", None
        if "state now" in name or name.startswith("list, state"):
            target, met = "p95 <= 100 ms", float(p95) <= 100
        elif "peak" in name:
            target, met = "p95 <= 500 ms", float(p95) <= 500
        row(rows, "Query (1 M sessions)", name.strip(), "p50 %s / p95 %s ms" % (p50, p95), target, met)

    widths = [max(len(str(r[i])) for r in rows + [("area", "figure", "value", "target", "")])
              for i in range(5)]
    header = ("area", "figure", "value", "target", "")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".local/bench")
