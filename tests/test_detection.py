"""Detection passes as of a fixed moment over fixed data: what fires, with which evidence, what is
correlated into one incident, and the lifecycle (no repeats, updates, quiet resolution, reminders)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from pipelines.detection.run import run_detection
from pipelines.jobs import JobName
from tests.cli_runner import cx, cx_env
from tests.support.cases import jobs_queued
from tests.support.detection import CONFIG, TopicEmbedder, add_cases, daily, spread

NOW = datetime(2026, 11, 18, 14, 30, tzinfo=UTC)  # a Wednesday afternoon
WORK_HOURS = list(range(8, 18))


async def detect(pool, now=NOW, *, config=CONFIG, embedder=None, post=False):
    return await run_detection(pool, config, now, embedder or TopicEmbedder(), post=post, summarise=False)


def fired(report, kind: str) -> list[dict]:
    """Every signal of that kind, whatever alert it was correlated into."""
    return [s for a in report.alerts for s in a.signals if s["kind"] == kind]


def by_kind(report) -> dict[str, list]:
    found: dict[str, list] = {}
    for alert in report.alerts:
        found.setdefault(alert.kind, []).append(alert)
    return found


async def steady_desk(pool, now=NOW) -> None:
    """30 days of daytime traffic: refunds 3 an hour, card questions 2 an hour, and a password
    question that comes every day (near one topic)."""
    async with pool.acquire() as conn:
        await add_cases(conn, daily(now, 30, WORK_HOURS, 3, skip_last=timedelta(0)), category="billing",
                        subcategory="refund_request", topic="refund")
        await add_cases(conn, daily(now, 30, WORK_HOURS, 2, skip_last=timedelta(0)), category="cards",
                        subcategory="card_arrival", topic="card arrival")
        await add_cases(conn, daily(now, 30, [9, 11, 13, 15, 17], 2, skip_last=timedelta(0)), category="account",
                        subcategory="password_reset", topic="password reset")


async def test_a_steady_desk_raises_nothing_even_in_its_busy_hours(pool):
    await steady_desk(pool)
    report = await detect(pool)
    assert report.alerts == [], [a.title for a in report.alerts]


async def test_a_volume_spike_fires_with_its_figures_and_cases(pool):
    await steady_desk(pool)
    async with pool.acquire() as conn:
        burst = await add_cases(conn, spread(NOW - timedelta(minutes=50), NOW, 16), category="billing",
                                subcategory="refund_request", topic="refund")
    report = await detect(pool)
    volume = by_kind(report)["volume"]
    assert len(volume) == 1
    alert = volume[0]
    assert (alert.fingerprint, alert.category, alert.subcategory) == ("volume:billing/refund_request", "billing",
                                                                        "refund_request")
    signal = alert.signals[0]
    # 3 an hour is the usual; 16 + the 3 of this hour's steady traffic were observed.
    assert signal["observed"] >= 16 and 1 <= signal["expected"] <= 6 and signal["z"] >= 4
    assert set(burst) <= set(alert.case_ids)
    assert report.outcomes[alert.alert_id] == "new"


async def test_a_new_category_fires_on_an_absolute_burst_but_not_on_a_few_cases(pool):
    await steady_desk(pool)
    async with pool.acquire() as conn:
        await add_cases(conn, spread(NOW - timedelta(minutes=40), NOW, 12), category="security",
                        subcategory="compromised_account", topic="hacked")
        await add_cases(conn, spread(NOW - timedelta(minutes=40), NOW, 3), category="loans",
                        subcategory="loan_question", topic="loans")
    report = await detect(pool)
    assert [s.get("subcategory") for s in fired(report, "volume")] == ["compromised_account"]
    # Its cases are near each other too: the spike and the cluster are one incident.
    assert [a.kind for a in report.alerts] == ["incident"]


async def test_seasonality_the_same_count_fires_at_night_but_not_at_noon(pool):
    """Four refunds in an hour is the usual at noon; at 3 in the morning, when the desk is quiet, it is not."""
    noon, night = NOW.replace(hour=12, minute=55), NOW.replace(hour=3, minute=55)
    for now, fires in ((noon, False), (night, True)):
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE cases CASCADE")
            await conn.execute("TRUNCATE proactive_alerts CASCADE")
            await add_cases(conn, daily(now, 30, WORK_HOURS, 4, skip_last=timedelta(0)), category="billing",
                            subcategory="refund_request", topic="refund")
            await add_cases(conn, spread(now - timedelta(minutes=55), now, 6), category="billing",
                            subcategory="refund_request", topic="refund")
        report = await detect(pool, now, config=dataclasses.replace(CONFIG, thresholds=dataclasses.replace(
            CONFIG.thresholds, min_count=5)))
        assert bool(fired(report, "volume")) is fires, (now, [a.title for a in report.alerts])


async def test_error_codes_are_counted_from_the_text_and_correlate_with_their_cluster(pool):
    await steady_desk(pool)
    async with pool.acquire() as conn:
        quoting = await add_cases(conn, spread(NOW - timedelta(minutes=45), NOW, 5), category="account",
                                  text="Login fails with ERR_AUTH_1042 since this morning", topic="auth outage")
        labelled_apart = await add_cases(conn, spread(NOW - timedelta(minutes=30), NOW, 2), category="cards",
                                         subcategory="card_arrival", topic="auth outage",
                                         text="cannot sign in to see my card")
    report = await detect(pool)
    assert len(report.alerts) == 1, [a.title for a in report.alerts]
    incident = report.alerts[0]
    assert incident.kind == "incident" and incident.error_code == "ERR_AUTH_1042"
    # The code, the cluster of its paraphrases and the spike of the (untriaged-subcategory) account cases.
    kinds = {s["kind"] for s in incident.signals}
    assert kinds == {"error_code", "cluster", "volume"}
    # The cluster crosses categories: the two cases triage labelled as card questions are in it.
    assert set(quoting + labelled_apart) <= set(incident.case_ids)
    assert incident.fingerprint.startswith("incident:")


async def test_a_daily_question_is_not_an_incident_but_a_burst_of_a_new_failure_is(pool):
    await steady_desk(pool)
    async with pool.acquire() as conn:
        # Today's password questions at their usual rate, plus paraphrases of a new failure,
        # spread over three categories.
        await add_cases(conn, spread(NOW - timedelta(hours=6), NOW, 6), category="account",
                        subcategory="password_reset", topic="password reset")
        failure = []
        for category in ("payments", "cards", "account"):
            failure += await add_cases(conn, spread(NOW - timedelta(minutes=90), NOW, 2), category=category,
                                       topic="transfers bounce")
    clusters = by_kind(await detect(pool)).get("cluster", [])
    assert len(clusters) == 1
    assert set(clusters[0].case_ids) == set(failure)
    assert clusters[0].signals[0]["categories"] == {"payments": 2, "cards": 2, "account": 2}


async def test_a_metric_over_its_threshold_fires_once_updates_and_resolves_when_quiet(pool):
    async def point(value: float, at: datetime) -> None:
        await pool.execute(
            """INSERT INTO health_metrics (metric_name, metric_value, unit, threshold_warning, threshold_critical,
                                           recorded_at) VALUES ('api_error_rate', $1, '%', 2, 5, $2)""", value, at)

    await point(1.0, NOW - timedelta(minutes=20))
    await point(7.5, NOW - timedelta(minutes=10))
    first = await detect(pool)
    [alert] = first.alerts
    assert (alert.kind, alert.severity, alert.metric, alert.fingerprint) == ("metric", "critical", "api_error_rate",
                                                                           "metric:api_error_rate")
    assert alert.signals[0]["value"] == 7.5 and alert.signals[0]["threshold"] == 5
    assert alert.evidence_count == 1

    again = await detect(pool)
    assert [again.outcomes[a.alert_id] for a in again.alerts] == ["unchanged"]

    await point(9.0, NOW + timedelta(minutes=5))
    later = await detect(pool, NOW + timedelta(minutes=10))
    assert [(later.outcomes[a.alert_id], a.evidence_count) for a in later.alerts] == [("updated", 2)]

    # Quiet: no point over a threshold in the window, for ALERT_RESOLVE_AFTER_MINUTES.
    quiet = await detect(pool, NOW + timedelta(minutes=10) + CONFIG.resolve_after + timedelta(minutes=1))
    assert [(quiet.outcomes[a.alert_id], a.resolved_by) for a in quiet.alerts] == [("resolved", "auto")]
    row = await pool.fetchrow("SELECT status, revision FROM proactive_alerts")
    assert row["status"] == "resolved" and row["revision"] == 3


async def test_a_second_run_queues_no_post_and_new_evidence_queues_an_edit(pool):
    async with pool.acquire() as conn:
        await add_cases(conn, spread(NOW - timedelta(minutes=30), NOW, 4), text="Card declined ERR_PAY_2001",
                        topic="declines")
    first = await detect(pool, post=True)
    assert [first.outcomes[a.alert_id] for a in first.alerts] == ["new"]
    posts = [p for name, p in await jobs_queued(pool) if name == JobName.ALERT_POST]
    assert posts == [{"alert_id": str(first.alerts[0].alert_id), "remind": False}]
    # The post job ran and showed this revision.
    await pool.execute("UPDATE proactive_alerts SET posted_revision = revision")
    await pool.execute("DELETE FROM pgqueuer")

    second = await detect(pool, post=True)
    assert [second.outcomes[a.alert_id] for a in second.alerts] == ["unchanged"]
    assert await jobs_queued(pool) == []

    async with pool.acquire() as conn:
        await add_cases(conn, [NOW + timedelta(minutes=2)], text="ERR_PAY_2001 again", topic="declines")
    third = await detect(pool, NOW + timedelta(minutes=5), post=True)
    assert [third.outcomes[a.alert_id] for a in third.alerts] == ["updated"]
    assert [name for name, _ in await jobs_queued(pool)] == [JobName.ALERT_POST]


async def test_an_open_unacknowledged_alert_is_reminded_at_most_every_repeat_period(pool):
    async with pool.acquire() as conn:
        await add_cases(conn, spread(NOW - timedelta(minutes=30), NOW, 4), text="ERR_PAY_2001", topic="declines")
    [alert] = (await detect(pool)).alerts
    await pool.execute("INSERT INTO slack_messages (alert_id, purpose, channel_id, ts) VALUES ($1, 'alert', 'C1', '1.1')",
                       alert.alert_id)
    await pool.execute("UPDATE proactive_alerts SET posted_revision = revision")
    config = dataclasses.replace(CONFIG, resolve_after=timedelta(days=2))
    await detect(pool, NOW + timedelta(hours=1), config=config, post=True)
    assert await jobs_queued(pool) == []
    await detect(pool, NOW + CONFIG.repeat_after + timedelta(minutes=1), config=config, post=True)
    await detect(pool, NOW + CONFIG.repeat_after + timedelta(minutes=20), config=config, post=True)
    reminders = [p for name, p in await jobs_queued(pool) if name == JobName.ALERT_POST and p["remind"]]
    assert reminders == [{"alert_id": str(alert.alert_id), "remind": True}]


async def test_detection_embeds_new_cases_it_has_no_vector_for(pool):
    embedder = TopicEmbedder()
    async with pool.acquire() as conn:
        await add_cases(conn, spread(NOW - timedelta(minutes=50), NOW, 5), text="topic:wires my wire bounced",
                        topic="wires", embed=False)
    report = await detect(pool, embedder=embedder)
    assert embedder.calls == 1
    assert await pool.fetchval("SELECT count(*) FROM case_embeddings") == 5
    assert await pool.fetchval("SELECT count(*) FROM llm_usage WHERE step = 'case_embed'") == 1
    assert [a.kind for a in report.alerts] == ["cluster"]


async def test_without_embeddings_clusters_are_off_and_said_so(pool):
    async with pool.acquire() as conn:
        await add_cases(conn, spread(NOW - timedelta(minutes=50), NOW, 5), text="wire bounced", topic="wires")
    report = await run_detection(pool, CONFIG, NOW, None, post=False, summarise=False)
    assert report.alerts == [] and any("clusters: off" in n for n in report.notes)


async def test_alert_evidence_names_its_cases_and_customers(pool):
    async with pool.acquire() as conn:
        ids = []
        for n in range(4):
            ids += await add_cases(conn, [NOW - timedelta(minutes=10 + n)], text="ERR_PAY_2001", topic="declines",
                                   email=f"c{n}@example.com")
    [alert] = (await detect(pool)).alerts
    rows = await pool.fetch("SELECT evidence_key, case_id FROM alert_evidence WHERE alert_id = $1", alert.alert_id)
    assert {r["case_id"] for r in rows if r["case_id"]} == set(ids)
    customers = await pool.fetchval("SELECT cardinality(affected_customers) FROM proactive_alerts")
    assert customers == 4
    stored = await pool.fetchval("SELECT evidence FROM proactive_alerts")
    assert json.loads(stored)["signals"][0]["fingerprint"] == alert.fingerprint


async def test_cx_detect_run_prints_the_json_contract_and_a_second_run_has_nothing_new(pool, dsn):
    async with pool.acquire() as conn:
        ids = await add_cases(conn, spread(NOW - timedelta(minutes=40), NOW, 6), category="payments",
                              subcategory="transfer_failed", text="Transfer rejected with ERR_PAY_2001")
    await pool.execute(
        """INSERT INTO health_metrics (metric_name, metric_value, unit, threshold_warning, threshold_critical,
                                       recorded_at) VALUES ('api_latency_p95_ms', 2500, 'ms', 800, 2000, $1)""",
        NOW - timedelta(minutes=5))
    env = cx_env(DATABASE_URL=dsn, EMBEDDINGS="none")
    first = cx("detect", "run", "--now", NOW.isoformat(), "--json", env=env)
    assert first.returncode == 0, first.stderr
    alerts = json.loads(first.stdout)["alerts"]
    assert {(a["kind"], a["severity"], a["status"]) for a in alerts} == {("incident", "high", "new"),
                                                                        ("metric", "critical", "new")}
    for alert in alerts:
        assert set(alert) >= {"fingerprint", "kind", "severity", "status", "title", "evidence_count", "case_ids"}
    [incident] = [a for a in alerts if a["kind"] == "incident"]
    assert sorted(incident["case_ids"]) == sorted(str(i) for i in ids)
    assert (incident["error_code"], incident["category"], incident["subcategory"]) == ("ERR_PAY_2001", "payments",
                                                                                     "transfer_failed")
    [metric] = [a for a in alerts if a["kind"] == "metric"]
    assert metric["metric"] == "api_latency_p95_ms" and metric["case_ids"] == []

    second = cx("detect", "run", "--now", NOW.isoformat(), "--json", env=env)
    assert [a["status"] for a in json.loads(second.stdout)["alerts"]] == ["unchanged", "unchanged"]

    listed = cx("alerts", "list", "--open", "--json", env=env)
    assert len(json.loads(listed.stdout)["alerts"]) == 2
    shown = cx("alerts", "show", incident["fingerprint"], "--json", env=env)
    assert json.loads(shown.stdout)["signals"][0]["kind"] in ("error_code", "volume")
    missing = cx("alerts", "show", "volume:nope", env=env)
    assert missing.returncode == 2 and "no alert with fingerprint" in missing.stderr
    bad = cx("detect", "run", "--now", "yesterday", env=env)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
