#!/usr/bin/env python3
"""Prints, from the local Prometheus, how each store's entries and each part's resident memory
went over a chaos run: the value at each quarter of the load window, summed over the instances
up at that moment, and its growth over the second half. Flat over the second half is what
retention is for.

With --per-process, also each process's own resident memory (a run without kills, where every
process lives through the whole load: the sum over a part's instances mixes ages otherwise).

usage: soak_report.py PROMETHEUS_URL START_UNIX END_UNIX [--per-process]
"""
import sys

from prometheus_query import instant

QUERIES = [
    ("store entries", 'sum by (application_id, store) (streams_store_entries{job="file_sd"})', lambda v: f"{v:.0f}"),
    ("store bytes on disk, MB (persistent stores)",
     'sum by (application_id, store) (streams_store_disk_bytes{job="file_sd"}) > 0', lambda v: f"{v / 1e6:.1f}"),
    ("persistent stores' memory, MB (write buffers are bounded per store and task, the block cache per instance)",
     'sum by (application_id, kind) (streams_persistent_store_memory_bytes{job="file_sd"})', lambda v: f"{v / 1e6:.1f}"),
    ("resident memory, MB", 'sum by (part) (process_resident_memory_bytes{job="file_sd"})', lambda v: f"{v / 1e6:.1f}"),
]
PER_PROCESS = ("resident memory per process, MB",
               'sum by (part, instance) (process_resident_memory_bytes{job="file_sd"})', lambda v: f"{v / 1e6:.1f}")


def query_at(base, query, at):
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in instant(base, query, at)}


def second_half_growth(half, end):
    """From 50% to 100% of the load, in percent; '-' when either end has no sample."""
    if half is None or end is None or half == 0:
        return "-"
    return f"{(end - half) / half * 100:+.0f}%"


def report(base, moments, title, query, show):
    samples = [query_at(base, query, at) for at in moments]
    series = sorted(set().union(*samples))
    print(f"  {title} at 25% / 50% / 75% / 100% of the load (growth over the second half):")
    if not series:
        print("    (no data)")
    for labels in series:
        name = " ".join(value for _, value in labels)
        values = " / ".join(show(s[labels]) if labels in s else "-" for s in samples)
        growth = second_half_growth(samples[1].get(labels), samples[3].get(labels))
        print(f"    {name:<40} {values}  ({growth})")


def main():
    args = [a for a in sys.argv[1:] if a != "--per-process"]
    if len(args) != 3:
        raise SystemExit(__doc__)
    base, start, end = args[0], float(args[1]), float(args[2])
    moments = [start + (end - start) * q for q in (0.25, 0.5, 0.75, 1.0)]
    queries = QUERIES + ([PER_PROCESS] if "--per-process" in sys.argv[1:] else [])
    for title, query, show in queries:
        report(base, moments, title, query, show)


if __name__ == "__main__":
    main()
