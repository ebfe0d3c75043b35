#!/usr/bin/env python3
"""Draws a Grafana dashboard to PNG from the local Prometheus, without Grafana (which no
registry this project reaches serves): every panel's queries, as written in the dashboard JSON
with each template variable matching everything, over a time range, one chart per panel.

usage: render_dashboard.py PROMETHEUS_URL DASHBOARD_JSON OUT_PNG START_UNIX END_UNIX
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from dashboard_check import with_variables_matching_everything  # noqa: E402
from prometheus_query import over_range  # noqa: E402

# A chart with more lines than this shows the ones with the highest peaks.
MAX_SERIES = 8


def legend(template, labels):
    text = template or "{{__name__}}"
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    base, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    start, end = float(sys.argv[4]), float(sys.argv[5])
    step = max(5.0, (end - start) / 240)
    with open(path) as f:
        dashboard = json.load(f)
    panels = dashboard.get("panels", [])
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(16, 3.2 * rows), squeeze=False)
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        lines = []
        for target in panel.get("targets", []):
            expr = with_variables_matching_everything(target["expr"])
            for series in over_range(base, expr, start, end, step):
                points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if points:
                    lines.append((max(v for _, v in points), legend(target.get("legendFormat"), series["metric"]), points))
        lines.sort(key=lambda line: line[0], reverse=True)
        for _, label, points in lines[:MAX_SERIES]:
            ax.plot([t for t, _ in points], [v for _, v in points], label=label, linewidth=1)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        shown = f" (top {MAX_SERIES} of {len(lines)})" if len(lines) > MAX_SERIES else ""
        ax.set_title(f"{panel.get('title', '?')}{shown}", fontsize=10, loc="left")
        ax.set_xlabel("seconds into the run", fontsize=7)
        ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(f"{dashboard.get('title', path)}: Prometheus, {end - start:.0f} s of a dev/demo run", fontsize=12)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(out, dpi=80)
    print(f"  {len(panels)} panels drawn to {out}")


if __name__ == "__main__":
    main()
