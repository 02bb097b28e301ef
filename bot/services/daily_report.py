"""The daily report in Slack: the Block Kit message to SLACK_METRICS_CHANNEL, then the chart
uploaded the current way (files_upload_v2: files.getUploadURLExternal, the upload, then
files.completeUploadExternal with the channel's id), once per day."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.messages import channel_id
from db import report_deliveries as deliveries_db
from db.locks import try_advisory_lock
from handlers.daily_report import chart_comment, report_blocks, report_text
from pipelines.jobs import ReportDestination
from pipelines.learning.daily import DailyConfig
from pipelines.learning.report import DailyReport
from pipelines.learning.report_email import DeliveryResult, chart_of

log = structlog.get_logger(__name__)

def daily_config(settings: Settings) -> DailyConfig:
    return DailyConfig(
        zone=settings.zone, kb_gap_min_cases=settings.kb_gap_min_cases, kb_gap_max_score=settings.kb_gap_max_score,
        kb_drafts_per_day=settings.kb_drafts_per_day, retrain_min_new_examples=settings.retrain_min_new_examples,
        slack_channel=settings.slack_metrics_channel if settings.slack_bot_token is not None else None,
        leadership_email=settings.leadership_email,
        sender_domain=(settings.support_email or "").rpartition("@")[2] or "cx-catalyst.invalid",
    )


@dataclass(frozen=True)
class PostedReport:
    channel_id: str
    ts: str
    file_id: str


async def post_message(client: AsyncWebClient, channel: str, report: DailyReport) -> tuple[str, str]:
    """The report's message; (channel id, ts)."""
    posted = await client.chat_postMessage(channel=await channel_id(client, channel, setting="SLACK_METRICS_CHANNEL"),
                                           text=report_text(report), blocks=report_blocks(report),
                                           unfurl_links=False, unfurl_media=False)
    return str(posted["channel"]), str(posted["ts"])


async def upload_chart(client: AsyncWebClient, channel: str, report: DailyReport) -> str:
    """The chart, shared in the channel (by id) after the message; the file's id."""
    uploaded = await client.files_upload_v2(
        channel=channel, file=chart_of(report), filename=f"daily-trend-{report.day.isoformat()}.png",
        title=f"Support trend to {report.day.isoformat()}", alt_txt="Received, resolved and self-service cases and CSAT",
        initial_comment=chart_comment(report),
    )
    file_id: str = uploaded["file"]["id"]
    return file_id


async def post_report(client: AsyncWebClient, channel: str, report: DailyReport) -> PostedReport:
    """Message and chart, with no bookkeeping: what `cx report daily --out` records."""
    posted_channel, ts = await post_message(client, channel, report)
    return PostedReport(posted_channel, ts, await upload_chart(client, posted_channel, report))


class DailyReportService:
    def __init__(self, pool: asyncpg.Pool, client: AsyncWebClient) -> None:
        self._pool, self._client = pool, client

    async def deliver(self, report: DailyReport) -> DeliveryResult:
        """Post the day's report once. Each step is recorded as it completes (the message, then the
        chart), so a retry does only what is missing; one deliverer at a time per day."""
        destination = ReportDestination.SLACK
        async with try_advisory_lock(self._pool, f"report:{report.day}:{destination}") as conn:
            if conn is None:
                return DeliveryResult.BUSY
            delivery = await deliveries_db.get(conn, report.day, destination)
            if delivery is None:
                raise LookupError(f"no Slack delivery of the {report.day} report")
            if delivery.status == "sent":
                return DeliveryResult.ALREADY_SENT
            await deliveries_db.mark_sending(conn, report.day, destination)
            try:
                posted_channel, ts = delivery.channel_id, delivery.provider_id
                if posted_channel is None or ts is None:
                    posted_channel, ts = await post_message(self._client, delivery.recipient, report)
                    await deliveries_db.set_slack_message(conn, report.day, posted_channel, ts)
                file_id = await upload_chart(self._client, posted_channel, report)
            except Exception as exc:
                await deliveries_db.mark_error(conn, report.day, destination, f"{type(exc).__name__}: {exc}")
                raise
            await deliveries_db.mark_sent(conn, report.day, destination, ts, file_id)
        log.info("report.slack", day=str(report.day), channel=posted_channel, ts=ts, file=file_id)
        return DeliveryResult.SENT
