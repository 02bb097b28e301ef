"""The daily metrics' definitions (migration 0014) against figures computed by hand: a 240-case history
whose expected figures plain Python derives (tests/support/daily.py), and a few cases whose figures
are written out below."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from db import daily_metrics as metrics_db
from db.pool import transaction
from pipelines.learning.daily_metrics import compute_day, day_bounds, history, store_day
from tests.support.daily import Case, Desk, expected_metrics, generate_desk, load_desk

NEW_YORK = ZoneInfo("America/New_York")
SPRING_FORWARD = date(2026, 3, 8)  # New York's clocks go forward: a local day of 23 hours


async def test_every_definition_matches_the_hand_computed_history(pool):
    desk = generate_desk(SPRING_FORWARD, NEW_YORK)
    await load_desk(pool, desk)
    assert len(desk.cases) >= 200
    for day in (SPRING_FORWARD - timedelta(days=1), SPRING_FORWARD, SPRING_FORWARD + timedelta(days=1)):
        expected = expected_metrics(desk, day, NEW_YORK)
        got = await compute_day(pool, day, NEW_YORK)
        assert got.model_dump() == expected, day

    expected = expected_metrics(desk, SPRING_FORWARD, NEW_YORK)
    # The history exercises every definition on the day, not just zeros.
    for name in ("received", "resolved", "self_service_resolved", "csat_count", "first_responses", "escalated",
                 "approve_count", "edit_count", "reject_count", "escalate_count", "corrected_cases",
                 "review_sla_breaches", "kb_matched_cases", "llm_calls", "backlog"):
        assert expected[name] > 0, name
    assert expected["triage_accuracy"] < 1 and expected["kb_match_rate"] < 1
    start, end = day_bounds(SPRING_FORWARD, NEW_YORK)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


async def test_the_views_give_the_same_figures_in_the_configured_zone(pool):
    desk = generate_desk(SPRING_FORWARD, NEW_YORK, seed=3)
    await load_desk(pool, desk)
    expected = expected_metrics(desk, SPRING_FORWARD, NEW_YORK)
    async with transaction(pool) as conn:
        await metrics_db.set_timezone(conn, "America/New_York")
        row = await conn.fetchrow("SELECT * FROM metrics_daily WHERE day = $1", SPRING_FORWARD)
        cases = await conn.fetchrow("SELECT * FROM metrics_daily_cases WHERE day = $1", SPRING_FORWARD)
        reviews = await conn.fetchrow("SELECT * FROM metrics_daily_reviews WHERE day = $1", SPRING_FORWARD)
        kb = await conn.fetchrow("SELECT * FROM metrics_daily_kb WHERE day = $1", SPRING_FORWARD)
        backlog = await conn.fetchval("SELECT backlog FROM metrics_daily_backlog WHERE day = $1", SPRING_FORWARD)
        first_day = await conn.fetchval("SELECT min(day) FROM metric_days")
        length = await conn.fetchval("SELECT day_end - day_start FROM metric_days WHERE day = $1", SPRING_FORWARD)
    plain = {k: float(v) if hasattr(v, "as_tuple") else v for k, v in dict(row).items()}
    assert plain.pop("day") == SPRING_FORWARD
    assert plain == expected
    assert cases["received"] == expected["received"] and cases["csat_avg"] is not None
    assert float(cases["csat_avg"]) == expected["csat_avg"]
    assert reviews["review_sla_breaches"] == expected["review_sla_breaches"]
    assert kb["drafted_cases"] == expected["drafted_cases"]
    assert backlog == expected["backlog"]
    # The series starts on the first case's local day; the day the clocks change lasts 23 hours.
    assert first_day == min(c.created for c in desk.cases).astimezone(NEW_YORK).date()
    assert length == timedelta(hours=23)


def _case(created: datetime, **values) -> Case:
    return Case(uuid.uuid4(), created, **values)


async def test_a_few_cases_written_out(pool):
    """Kolkata is 5:30 ahead of UTC: the local day 2026-05-04 is [2026-05-03 18:30Z, 2026-05-04 18:30Z)."""
    zone = ZoneInfo("Asia/Kolkata")
    day = date(2026, 5, 4)

    def local(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=zone)

    desk = Desk(cases=[
        _case(local("2026-05-03T23:59:59"), status="triaged"),  # the day before
        _case(local("2026-05-04T00:00:00"), status="resolved", resolved_at=local("2026-05-04T00:30:00"),
              first_response_at=local("2026-05-04T00:10:00"), resolution_type="self_service"),
        _case(local("2026-05-04T23:59:59"), status="triaged"),
        _case(local("2026-05-05T00:00:00"), status="triaged"),  # the day after
        # Created three days before, resolved on the day: 3 days 12 hours = 5040 minutes.
        _case(local("2026-05-01T00:00:00"), status="resolved", resolved_at=local("2026-05-04T12:00:00"),
              first_response_at=local("2026-05-03T23:00:00"), resolution_type="human", csat=4),
        # Resolved the next day, without a rating.
        _case(local("2026-05-04T10:00:00"), status="closed", resolved_at=local("2026-05-05T09:00:00"),
              closed_at=local("2026-05-05T10:00:00"), resolution_type="collaborative"),
    ])
    await load_desk(pool, desk)

    got = await compute_day(pool, day, zone)
    assert (got.received, got.resolved, got.self_service_resolved) == (3, 2, 1)
    assert got.self_service_rate == 0.5
    assert got.median_resolution_minutes == 2535.0  # median of 30 and 5040
    assert (got.csat_avg, got.csat_count) == (4.0, 1)  # the self-service one has no rating
    assert (got.first_responses, got.median_first_response_minutes) == (1, 10.0)
    # Open at the day's end: the two triaged ones of the day before and of the day, and the one resolved next day.
    assert got.backlog == 3
    assert (got.reviews, got.approve_rate, got.triage_accuracy, got.kb_match_rate) == (0, None, None, None)
    assert (got.llm_cost_usd, got.llm_cost_per_case) == (0.0, 0.0)

    next_day = await compute_day(pool, date(2026, 5, 5), zone)
    assert (next_day.received, next_day.resolved) == (1, 1)
    assert (next_day.csat_avg, next_day.csat_count) == (None, 0)  # resolved, none rated: null, not 0
    assert next_day.median_resolution_minutes == 1380.0
    assert next_day.llm_cost_per_case == 0.0 and next_day.backlog == 3

    empty = await compute_day(pool, date(2026, 4, 1), zone)
    assert (empty.received, empty.median_resolution_minutes, empty.llm_cost_per_case) == (0, None, None)


async def test_stored_days_read_back_as_computed_and_other_zones_are_recomputed(pool):
    desk = generate_desk(SPRING_FORWARD, NEW_YORK, seed=5, cases=60)
    await load_desk(pool, desk)
    metrics = await compute_day(pool, SPRING_FORWARD, NEW_YORK)
    await store_day(pool, SPRING_FORWARD, metrics, NEW_YORK)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT received, cost_per_case, extra FROM daily_metrics WHERE metric_date = $1",
                                  SPRING_FORWARD)
    extra = json.loads(row["extra"])
    assert row["received"] == metrics.received
    assert extra["backlog"] == metrics.backlog and extra["timezone"] == "America/New_York"
    assert "received" not in extra  # a column of its own

    read = await history(pool, [SPRING_FORWARD], NEW_YORK, store=False)
    assert read == {SPRING_FORWARD: metrics}
    # A row cut in another zone is not that zone's day: computed again (and not stored without `store`).
    utc = await history(pool, [SPRING_FORWARD], ZoneInfo("UTC"), store=False)
    assert utc[SPRING_FORWARD] == await compute_day(pool, SPRING_FORWARD, ZoneInfo("UTC"))
    # Days before the first case are not part of the desk's history.
    assert await history(pool, [SPRING_FORWARD - timedelta(days=30)], NEW_YORK, store=True) == {}
