"""The leadership email: HTML with a plain-text alternative and the chart inline (a cid: image in a
multipart/related part), sent once per day through the Mailbox however often its job runs."""

from __future__ import annotations

import email.policy
import email.utils
import html
from email.message import EmailMessage
from enum import StrEnum

import asyncpg
import structlog

from db import report_deliveries as deliveries_db
from db.locks import try_advisory_lock
from pipelines.jobs import ReportDestination
from pipelines.learning.chart import trend_chart
from pipelines.learning.report import DailyReport, MetricChange, formatted, formatted_change, retrain_summary
from pipelines.ports import Mailbox

log = structlog.get_logger(__name__)

CHART_CID = "daily-trend@cx-catalyst"
CHART_FILENAME = "daily-trend.png"


def chart_of(report: DailyReport) -> bytes:
    return trend_chart(report.trend, title=f"Last {len(report.trend)} days to {report.day.isoformat()}")


def _direction(change: MetricChange) -> str:
    """Green when the change is for the better, red when for the worse, grey otherwise."""
    if change.change is None or change.change == 0 or change.higher_is_better is None:
        return "#666666"
    return "#1a7f37" if (change.change > 0) == change.higher_is_better else "#cf222e"


def render_html(report: DailyReport, *, image_src: str) -> str:
    """The email's HTML; `image_src` is `cid:…` in the email, a file name next to a saved copy.
    Gap titles come from customers' messages: escaped like every other text."""
    e = html.escape
    rows = "".join(
        f"<tr><td style='padding:4px 12px 4px 0'>{e(c.label)}</td>"
        f"<td style='padding:4px 12px;text-align:right'><b>{e(formatted(c.value, c.unit))}</b></td>"
        f"<td style='padding:4px 0;color:{_direction(c)}'>{e(formatted_change(c))}</td></tr>"
        for c in report.changes
    )
    if report.kb_gaps:
        gaps = "".join(
            f"<li>{e(g.title)} — {len(g.case_ids)} cases; best article: "
            f"{e(g.best_article) if g.best_article else 'none'}"
            f"{f' (score {g.best_score:.2f})' if g.best_score is not None else ''}</li>"
            for g in report.kb_gaps
        )
        gaps_html = f"<ul>{gaps}</ul>"
    else:
        gaps_html = "<p>No knowledge-base gaps in the last 7 days.</p>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{e(report.subject)}</title></head>"
        "<body style='font-family:Arial,Helvetica,sans-serif;color:#1f2328'>"
        f"<h2>{e(report.subject)}</h2>"
        f"<p>{e(_period(report))}</p>"
        f"<table style='border-collapse:collapse'>{rows}</table>"
        f"<p><img src='{e(image_src)}' alt='Trend of received, resolved and self-service cases and CSAT' "
        "width='600'></p>"
        f"<h3>Knowledge-base gaps</h3>{gaps_html}"
        f"<h3>Triage retraining</h3><p>{e(retrain_summary(report.retrain))}</p>"
        "</body></html>"
    )


def render_text(report: DailyReport) -> str:
    width = max(len(c.label) for c in report.changes)
    lines = [report.subject, _period(report), ""]
    lines += [f"{c.label:<{width}}  {formatted(c.value, c.unit):>12}  {formatted_change(c)}" for c in report.changes]
    lines += ["", "Knowledge-base gaps:"]
    lines += [f"- {g.title} ({len(g.case_ids)} cases; best article: {g.best_article or 'none'})"
              for g in report.kb_gaps] or ["- none in the last 7 days"]
    lines += ["", "Triage retraining:", retrain_summary(report.retrain), "", "The trend chart is attached to the HTML version."]
    return "\n".join(lines) + "\n"


def _period(report: DailyReport) -> str:
    return (f"{report.day.strftime('%A %d %B %Y')} ({report.timezone}); changes against the average of the "
            f"previous {report.baseline_days} day{'s' if report.baseline_days != 1 else ''}.")


def compose(report: DailyReport, chart: bytes, *, sender: str, company: str, to: str, message_id: str) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = email.utils.formataddr((f"{company} Support Insights", sender))
    message["To"] = to
    message["Subject"] = report.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_text(report))
    message.add_alternative(render_html(report, image_src=f"cid:{CHART_CID}"), subtype="html")
    html_part = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
    html_part.add_related(chart, maintype="image", subtype="png", cid=f"<{CHART_CID}>", filename=CHART_FILENAME,
                          disposition="inline")
    return message.as_bytes()


class DeliveryResult(StrEnum):
    SENT = "sent"
    FOUND_SENT = "found already sent"  # an earlier attempt sent it and died before recording it
    ALREADY_SENT = "already sent"
    BUSY = "another worker is delivering it"


async def send_report_email(pool: asyncpg.Pool, mailbox: Mailbox, report: DailyReport, *, company: str) -> DeliveryResult:
    """Send the day's email once. One sender at a time (a lock that dies with its connection); a
    row left in `sending` may have gone out, so the sent mail is searched for its Message-ID first."""
    destination = ReportDestination.EMAIL
    async with try_advisory_lock(pool, f"report:{report.day}:{destination}") as conn:
        if conn is None:
            return DeliveryResult.BUSY
        delivery = await deliveries_db.get(conn, report.day, destination)
        if delivery is None or delivery.message_id is None:
            raise LookupError(f"no email delivery of the {report.day} report")
        if delivery.status == "sent":
            return DeliveryResult.ALREADY_SENT
        provider_id = await mailbox.find_sent(delivery.message_id) if delivery.status == "sending" else None
        result = DeliveryResult.FOUND_SENT
        if provider_id is None:
            raw = compose(report, chart_of(report), sender=mailbox.address, company=company,
                          to=delivery.recipient, message_id=delivery.message_id)
            await deliveries_db.mark_sending(conn, report.day, destination)
            try:
                provider_id = await mailbox.send(raw, None)
            except Exception as exc:
                await deliveries_db.mark_error(conn, report.day, destination, f"{type(exc).__name__}: {exc}")
                raise
            result = DeliveryResult.SENT
        await deliveries_db.mark_sent(conn, report.day, destination, provider_id)
    log.info("report.email", day=str(report.day), result=result.value)
    return result
