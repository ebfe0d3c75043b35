#!/usr/bin/env python3
"""Runs every query of every Grafana dashboard in dashboards/grafana/ against the local
Prometheus, with each template variable matching everything, and fails if any query returns no
series: a panel that would show "No data" on a pipeline that just ran.

With AT_UNIX, each query runs over the WINDOW_S seconds up to it, as a time-series panel shows
its range: a gauge that librdkafka's statistics set every few seconds may have no sample from a
process still alive at one instant of a run full of kills, and the panel still shows data.

usage: dashboard_check.py PROMETHEUS_URL DASHBOARD_DIR [AT_UNIX]
"""
import glob
import json
import os
import re
import sys

from prometheus_query import instant, over_range

WINDOW_S = 600
STEP_S = 15


def queries(dashboard_dir):
    for path in sorted(glob.glob(os.path.join(dashboard_dir, "*.json"))):
        with open(path) as f:
            dashboard = json.load(f)
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    yield os.path.basename(path), panel.get("title", "?"), expr


def with_variables_matching_everything(expr):
    # $var and ${var} stand for Grafana template variables; every panel uses them in =~ matchers.
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def main():
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    base, dashboard_dir = sys.argv[1], sys.argv[2]
    at = sys.argv[3] if len(sys.argv) == 4 else None
    empty = 0
    checked = 0
    for dashboard, title, expr in queries(dashboard_dir):
        checked += 1
        try:
            query = with_variables_matching_everything(expr)
            if at is None:
                found = len(instant(base, query))
            else:
                found = sum(1 for series in over_range(base, query, float(at) - WINDOW_S, float(at), STEP_S) if series.get("values"))
        except Exception as error:  # a query Prometheus refuses is as broken as an empty one
            found, note = 0, f" ({error})"
        else:
            note = ""
        empty += found == 0
        print(f"  {'ok   ' if found else 'EMPTY'} {dashboard}: {title}: {found} series{note}")
    if checked == 0:
        raise SystemExit(f"no dashboard query found in {dashboard_dir}")
    if empty:
        raise SystemExit(f"{empty} of {checked} dashboard queries returned no series")
    print(f"  all {checked} dashboard queries returned data")


if __name__ == "__main__":
    main()
