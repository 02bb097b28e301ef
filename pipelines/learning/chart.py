"""The report's chart: the trend of received, resolved and self-service resolved cases, and CSAT on
a second axis, as PNG bytes. Drawn on matplotlib's Agg canvas (no display, no pyplot state, so
concurrent jobs cannot draw into each other's figure)."""

from __future__ import annotations

import io

from pipelines.learning.report import TrendPoint

_RECEIVED, _RESOLVED, _SELF_SERVICE, _CSAT = "#4C72B0", "#55A868", "#8172B3", "#DD8452"


def trend_chart(points: list[TrendPoint], *, title: str) -> bytes:
    """A PNG of 1000x500 pixels; days without a CSAT leave a gap in its line."""
    # Imported here: matplotlib takes a good part of a second to import, which only a report needs.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [p.day.strftime("%b %d") for p in points]
    x = list(range(len(points)))
    axes.bar([i - 0.2 for i in x], [p.received for p in points], width=0.4, color=_RECEIVED, label="Received")
    axes.bar([i + 0.2 for i in x], [p.resolved for p in points], width=0.4, color=_RESOLVED, label="Resolved")
    axes.plot(x, [p.self_service_resolved for p in points], color=_SELF_SERVICE, marker="o", linewidth=2,
              label="Self-service resolved")
    axes.set_ylabel("cases")
    axes.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)

    csat = axes.twinx()
    csat.plot(x, [p.csat_avg if p.csat_avg is not None else float("nan") for p in points], color=_CSAT,
              marker="s", linestyle="--", linewidth=2)
    csat.set_ylim(1, 5)
    csat.set_ylabel("CSAT (1-5)")

    handles, names = axes.get_legend_handles_labels()
    handles.append(Line2D([], [], color=_CSAT, marker="s", linestyle="--", linewidth=2))
    names.append("CSAT")
    axes.legend(handles, names, loc="upper left", fontsize=8, ncols=4)
    axes.set_title(title)
    # Fixed margins: tight_layout would draw the whole figure once more just to measure it.
    figure.subplots_adjust(left=0.07, right=0.93, bottom=0.16, top=0.92)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # fast; a chart compresses well anyway
    return buffer.getvalue()
