#!/usr/bin/env python3
"""Prints, from the local Prometheus, how each store's entries and each part's resident memory
went over a chaos run: the value at each quarter of the load window, summed over the instances
up at that moment. Flat over the second half is what retention is for.

usage: soak_report.py PROMETHEUS_URL START_UNIX END_UNIX
"""
import sys

from prometheus_query import instant

QUERIES = [
    ("store entries", 'sum by (application_id, store) (streams_store_entries{job="file_sd"})', lambda v: f"{v:.0f}"),
    ("store bytes on disk, MB (persistent stores; updated at each rebalance)",
     'sum by (application_id, store) (streams_store_disk_bytes{job="file_sd"}) > 0', lambda v: f"{v / 1e6:.1f}"),
    ("resident memory, MB", 'sum by (part) (process_resident_memory_bytes{job="file_sd"})', lambda v: f"{v / 1e6:.1f}"),
]


def query_at(base, query, at):
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in instant(base, query, at)}


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    base, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    moments = [start + (end - start) * q for q in (0.25, 0.5, 0.75, 1.0)]
    for title, query, show in QUERIES:
        samples = [query_at(base, query, at) for at in moments]
        series = sorted(set().union(*samples))
        print(f"  {title} at 25% / 50% / 75% / 100% of the load:")
        if not series:
            print("    (no data)")
        for labels in series:
            name = " ".join(value for _, value in labels)
            values = " / ".join(show(s[labels]) if labels in s else "-" for s in samples)
            print(f"    {name:<40} {values}")


if __name__ == "__main__":
    main()
