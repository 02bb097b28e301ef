"""The daily report's Slack message: every figure with its change against the previous 7-day
average, the KB gaps in brief, and the retraining's figures. Pure builders: the report in, Block
Kit out, always inside Slack's limits (gap titles are customers' words, escaped)."""

from __future__ import annotations

from typing import Any

from handlers import mrkdwn
from handlers.blocks import context, header, section
from handlers.mrkdwn import one_line, safe
from pipelines.learning.report import DailyReport, MetricChange, formatted, formatted_change, retrain_summary

GAPS_SHOWN = 5
_GAP_TITLE = 120


def _marker(change: MetricChange) -> str:
    """▲/▼ for the direction; a green or red dot when the change is for the better or the worse."""
    if change.change is None or change.change == 0:
        return ""
    arrow = "▲" if change.change > 0 else "▼"
    if change.higher_is_better is None:
        return f"{arrow} "
    good = (change.change > 0) == change.higher_is_better
    return f"{':large_green_circle:' if good else ':red_circle:'} {arrow} "


def _field(change: MetricChange) -> dict[str, Any]:
    text = f"*{change.label}*\n{formatted(change.value, change.unit)}\n_{_marker(change)}{formatted_change(change)}_"
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _gaps(report: DailyReport) -> str:
    if not report.kb_gaps:
        return "*Knowledge-base gaps*\nNone in the last 7 days: every group of similar cases found a good article."
    lines = [f"*Knowledge-base gaps* ({len(report.kb_gaps)} in the last 7 days; drafts follow for validation)"]
    for gap in report.kb_gaps[:GAPS_SHOWN]:
        best = (f"best article: {safe(one_line(gap.best_article), 80)}"
                + (f" ({gap.best_score:.2f})" if gap.best_score is not None else "")) if gap.best_article else "no article"
        lines.append(f"• {safe(one_line(gap.title), _GAP_TITLE)} — {len(gap.case_ids)} cases; {best}")
    if len(report.kb_gaps) > GAPS_SHOWN:
        lines.append(f"…and {len(report.kb_gaps) - GAPS_SHOWN} more")
    return "\n".join(lines)


def report_blocks(report: DailyReport) -> list[dict[str, Any]]:
    baseline = (f"changes against the average of the previous {report.baseline_days} "
                f"day{'s' if report.baseline_days != 1 else ''}" if report.baseline_days else "no earlier days yet")
    blocks: list[dict[str, Any]] = [
        header("report_header", report.subject),
        context("report_period", f"{report.day.strftime('%A %d %B %Y')} ({report.timezone}) · {baseline}"),
    ]
    fields = [_field(c) for c in report.changes]
    for n in range(0, len(fields), mrkdwn.SECTION_FIELDS):
        blocks.append({"type": "section", "block_id": f"report_figures_{n // mrkdwn.SECTION_FIELDS}",
                       "fields": fields[n:n + mrkdwn.SECTION_FIELDS]})
    blocks += [
        {"type": "divider", "block_id": "report_divider"},
        section("report_gaps", mrkdwn.truncate(_gaps(report), mrkdwn.SECTION_TEXT)),
        section("report_retrain", "*Triage retraining*\n" + retrain_summary(report.retrain)),
        context("report_chart", "The 14-day trend chart follows in this channel."),
    ]
    return blocks


def report_text(report: DailyReport) -> str:
    """The notification and fallback text."""
    m = report.metrics
    csat = f", CSAT {m.csat_avg:.2f}" if m.csat_avg is not None else ""
    return (f"{report.subject}: {m.received} received, {m.resolved} resolved "
            f"({m.self_service_resolved} self-service){csat}, backlog {m.backlog}")


def chart_comment(report: DailyReport) -> str:
    return f"{report.subject}: received, resolved and self-service cases and CSAT, last {len(report.trend)} days"
