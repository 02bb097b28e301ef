"""The daily report: scheduled once across replicas, built once however often its job runs, posted to
Slack with the chart uploaded the current way, emailed once under retry, and `cx report daily`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.runtime.scheduler import Scheduler, schedules
from bot.services.daily_report import DailyReportService, daily_config
from handlers import mrkdwn
from handlers.daily_report import report_blocks
from pipelines.jobs import JobName
from pipelines.learning.chart import trend_chart
from pipelines.learning.daily import run_daily, stored_report
from pipelines.learning.daily_metrics import metrics_of
from pipelines.learning.report import DailyReport, ReportGap, ReportRetrain, TrendPoint, changes
from pipelines.learning.report_email import CHART_CID, DeliveryResult, send_report_email
from tests.cli_runner import cx, cx_env
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import jobs_queued
from tests.support.daily import Case, expected_metrics, generate_desk, load_desk

ZONE = ZoneInfo("America/New_York")
DAY = date(2026, 3, 8)
# The morning after DAY in New York, at the report hour (6:00 EDT).
REPORT_TIME = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
HOSTILE = "Card <!channel> <script>alert(1)</script> & refunds"
GAP_CASES_AT = [datetime(2026, 3, 8, 15, n, tzinfo=UTC) for n in range(3)]


def _settings(make_settings, **extra):
    values = {"timezone": "America/New_York", "slack_bot_token": "xoxb-test", "daily_report_hour": 6,
              "leadership_email": "leaders@northwind.example", "support_email": "support@example.com"}
    return make_settings(**(values | extra))


async def _hostile_gap_cases(pool) -> None:
    """Three cases of one label on the day with a subject no article answers: a KB gap whose title is
    a customer's words."""
    async with pool.acquire() as conn:
        customer = await conn.fetchval(
            "INSERT INTO customers (email) VALUES ('gap@example.com') RETURNING customer_id")
        for n in range(3):
            await conn.execute(
                "INSERT INTO cases (customer_id, channel, subject, summary, description, category, subcategory, status, "
                "created_at) VALUES ($1, 'import', $2, $2, 'help', 'cards', 'card_arrival', 'triaged', $3)",
                customer, HOSTILE, GAP_CASES_AT[n])


async def test_the_daily_job_runs_once_across_two_schedulers_and_a_retry(pool, make_settings):
    settings = _settings(make_settings)
    await load_desk(pool, generate_desk(DAY, ZONE, cases=80))
    (plan,) = [s for s in schedules(settings, gmail=False) if s.job == JobName.DAILY_REPORT]
    replicas = [Scheduler(pool, Metrics(), settings.zone, [plan]) for _ in range(2)]
    outcomes = await asyncio.gather(*(r.tick(plan, REPORT_TIME) for r in replicas))
    assert sorted(outcomes) == [False, True]
    # A later tick of the same morning is the same day's report.
    assert await replicas[0].tick(plan, REPORT_TIME + timedelta(hours=3)) is False

    queued = [payload for name, payload in await jobs_queued(pool) if name == JobName.DAILY_REPORT]
    assert queued == [{"day": DAY.isoformat()}]

    deps = Deps(settings=settings, pool=pool, metrics=Metrics())
    run = job_handlers(deps)[JobName.DAILY_REPORT]
    await run(json.dumps(queued[0]).encode())
    await run(json.dumps(queued[0]).encode())  # the job again, as after a worker died before acking it

    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT metric_date, received, report FROM daily_metrics ORDER BY metric_date")
        deliveries = await conn.fetch("SELECT destination, recipient, status FROM report_deliveries ORDER BY 1")
    by_day = {r["metric_date"]: r for r in stored}
    assert by_day[DAY]["received"] == expected_metrics(generate_desk(DAY, ZONE, cases=80), DAY, ZONE)["received"]
    assert json.loads(by_day[DAY]["report"])["day"] == DAY.isoformat()
    assert [(d["destination"], d["recipient"], d["status"]) for d in deliveries] == [
        ("email", "leaders@northwind.example", "pending"), ("slack", "#support-metrics", "pending")]
    jobs = await jobs_queued(pool)
    delivers = sorted(p["destination"] for n, p in jobs if n == JobName.REPORT_DELIVER)
    assert delivers == ["email", "slack"]
    assert [p for n, p in jobs if n == JobName.FILE_BUGS] == [{"day": DAY.isoformat()}]


async def test_the_email_is_sent_once_when_the_first_attempt_dies_after_sending(pool, make_settings, gmail):
    fake, mailbox = gmail
    settings = _settings(make_settings)
    await load_desk(pool, generate_desk(DAY, ZONE, cases=40))
    await _hostile_gap_cases(pool)
    report = await run_daily(pool, None, DAY, daily_config(settings))
    assert [g.title for g in report.kb_gaps] == [HOSTILE]

    fake.fail_after_send_next(code=None)  # Gmail keeps it; the worker never hears back, as if killed
    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        await send_report_email(pool, mailbox, report, company="Northwind Bank")
    assert len(fake.sent) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM report_deliveries WHERE destination = 'email'") == "sending"

    again = await stored_report(pool, DAY)
    assert await send_report_email(pool, mailbox, again, company="Northwind Bank") is DeliveryResult.FOUND_SENT
    assert await send_report_email(pool, mailbox, again, company="Northwind Bank") is DeliveryResult.ALREADY_SENT
    assert len(fake.sent) == 1

    message = fake.sent[0].message
    assert message["Subject"] == f"Daily Support Insights - {DAY.isoformat()}"
    assert message["To"] == "leaders@northwind.example"
    assert message.get_content_type() == "multipart/alternative"
    plain, related = message.iter_parts()
    assert plain.get_content_type() == "text/plain" and "Received" in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.iter_parts()
    body = html_part.get_content()
    assert f"cid:{CHART_CID}" in body and image["Content-ID"] == f"<{CHART_CID}>"
    assert image.get_content_type() == "image/png" and image.get_content().startswith(b"\x89PNG")
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; refunds" in body


def _web_client(slack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")


async def test_the_report_and_chart_reach_the_metrics_channel_in_order_once(pool, make_settings, slack):
    settings = _settings(make_settings, leadership_email=None)
    channel = slack.add_channel("support-metrics")
    slack.add_channel("general")
    await load_desk(pool, generate_desk(DAY, ZONE, cases=40))
    report = await run_daily(pool, None, DAY, daily_config(settings))
    service = DailyReportService(pool, _web_client(slack))

    slack.fail_next("files.completeUploadExternal")  # the message goes out, the chart does not
    with pytest.raises(SlackApiError):
        await service.deliver(report)
    assert await service.deliver(report) is DeliveryResult.SENT
    assert await service.deliver(report) is DeliveryResult.ALREADY_SENT

    flow = [r.path.removeprefix("/api/") for r in slack.requests if not r.path.startswith("/api/auth")]
    upload = [p for p in flow if p.startswith("/upload/")]
    assert flow == ["conversations.list", "chat.postMessage", "files.getUploadURLExternal", upload[0],
                    "files.completeUploadExternal",  # failed: the message stays, only the chart is tried again
                    "files.getUploadURLExternal", upload[1], "files.completeUploadExternal"]
    (message,) = slack.messages
    assert message["channel"] == channel and message["text"].startswith(report.subject)
    (chart,) = slack.shared_files(channel)
    assert chart["content"].startswith(b"\x89PNG") and chart["length"] == len(chart["content"])
    complete = slack.calls("files.completeUploadExternal")[-1].params
    assert complete["channel_id"] == channel
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, channel_id, provider_id, file_id FROM report_deliveries")
    assert dict(row) == {"status": "sent", "channel_id": channel, "provider_id": message["ts"], "file_id": chart["id"]}


async def test_a_channel_the_bot_cannot_see_is_named(pool, make_settings, slack):
    settings = _settings(make_settings, leadership_email=None)
    await load_desk(pool, generate_desk(DAY, ZONE, cases=10))
    report = await run_daily(pool, None, DAY, daily_config(settings))
    with pytest.raises(LookupError, match="SLACK_METRICS_CHANNEL #support-metrics"):
        await DailyReportService(pool, _web_client(slack)).deliver(report)
    assert slack.messages == []


def _big_report() -> DailyReport:
    metrics = metrics_of(expected_metrics(generate_desk(DAY, ZONE, cases=60), DAY, ZONE))
    gaps = [ReportGap(title=f"{HOSTILE} " + "word " * 300, case_ids=[], best_article="<@U123> article " * 20,
                      best_score=0.31) for _ in range(12)]
    return DailyReport(
        day=DAY, timezone="America/New_York", metrics=metrics, baseline_days=7,
        changes=changes(metrics, [metrics.model_copy(update={"received": 1})]),
        kb_gaps=gaps,
        retrain=ReportRetrain(examples=1200, new_examples=240, candidate_accuracy=0.91, current_accuracy=0.9,
                              kept=True, finished_at=REPORT_TIME),
        trend=[TrendPoint(day=DAY - timedelta(days=n), received=40 + n, resolved=30 + n, self_service_resolved=10,
                          csat_avg=None if n % 5 == 0 else 4.1) for n in range(13, -1, -1)],
    )


def test_the_slack_message_validates_and_stays_in_limits():
    report = _big_report()
    blocks = report_blocks(report)
    assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "<!channel>" not in text and "<@U123>" not in text and "&lt;!channel&gt;" in text
    fields = [f["text"] for b in blocks if b["type"] == "section" for f in b.get("fields", [])]
    assert len(fields) == len(report.changes)
    received = next(f for f in fields if f.startswith("*Received*"))
    assert received.split("\n")[2] == f"_▲ +{report.metrics.received - 1} vs 7-day avg 1_"
    assert "…and 7 more" in text and "cross-validated accuracy 91.0% against 90.0%" in text


def test_the_chart_draws_fourteen_days_as_a_png():
    # Its speed is bench/daily_report.py's business, not a test's.
    report = _big_report()
    png = trend_chart(report.trend, title="trend")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert png != trend_chart(report.trend[:2], title="trend")  # the data, not a fixed picture


async def test_cx_report_daily_json_and_out(pool, dsn, tmp_path):
    desk = generate_desk(DAY, ZONE, cases=200)
    await load_desk(pool, desk)
    await _hostile_gap_cases(pool)
    env = cx_env(DATABASE_URL=dsn, TIMEZONE="America/New_York", EMBEDDINGS="none", CX_DATA_DIR=str(tmp_path))

    result = cx("report", "daily", "--date", DAY.isoformat(), "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    desk.cases += [Case(uuid.uuid4(), at, status="triaged") for at in GAP_CASES_AT]  # as _hostile_gap_cases stored them
    expected = expected_metrics(desk, DAY, ZONE)
    assert {k: shown[k] for k in expected} == expected
    assert [(g["title"], len(g["case_ids"])) for g in shown["kb_gaps"]] == [(HOSTILE, 3)]

    out = tmp_path / "report"
    result = cx("report", "daily", "--date", DAY.isoformat(), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert (out / f"daily-report-{DAY}.png").read_bytes().startswith(b"\x89PNG")
    html = (out / f"daily-report-{DAY}.html").read_text()
    assert f"src='daily-report-{DAY}.png'" in html and "&lt;script&gt;" in html
    calls = [json.loads(p.read_text()) for p in sorted((out / "slack").glob("0*.json"))]
    assert [c["method"] for c in calls] == ["conversations.list", "chat.postMessage", "files.getUploadURLExternal",
                                            "upload", "files.completeUploadExternal"]
    # The name resolved to the id the recorder gave it: completeUploadExternal takes ids only.
    assert calls[1]["args"]["channel"] == "C0RECORDED1" and calls[4]["args"]["channel_id"] == "C0RECORDED1"
    assert_valid_blocks(json.loads(calls[1]["args"]["blocks"]) if isinstance(calls[1]["args"]["blocks"], str)
                        else calls[1]["args"]["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    async with pool.acquire() as conn:  # a preview stores and queues nothing
        assert await conn.fetchval("SELECT count(*) FROM daily_metrics") == 0
        assert await conn.fetchval("SELECT count(*) FROM report_deliveries") == 0

    for bad, says in (("2026-02-30", "not a date"), ("2999-01-01", "has not begun")):
        result = cx("report", "daily", "--date", bad, "--json", env=env)
        assert result.returncode == 2 and says in result.stderr and result.stdout == ""
    result = cx("report", "daily", "--date", DAY.isoformat(), "--send", env=env)
    assert result.returncode == 2 and "nowhere to send" in result.stderr
