"""Budgets: the period math in TIMEZONE, and a budget reached mid-run — every case still triaged and
reviewed, the warning and the "reached" notice posted once each, Claude back the next day."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

from anthropic import AsyncAnthropic
from prometheus_client import generate_latest
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime.metrics import Metrics, refresh_budgets
from bot.runtime.scheduler import schedules
from bot.services.budgets import BudgetAlertService
from bot.services.home import SlackHomeService
from db import budgets as budgets_db
from db import intake as intake_db
from db.pool import transaction
from handlers.home_views import home_view
from pipelines.adapters.anthropic_llm import TOOL_NAME, AnthropicLLM
from pipelines.budgets import BudgetedLLM, BudgetGate, budget_states, period_bounds
from pipelines.drafting.drafters import ClaudeDrafter, ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import draft_case
from pipelines.jobs import JobName
from pipelines.triage.step import triage_case
from pipelines.triage.triagers import CascadeTriager, ClaudeTriager
from prompts import load
from tests.cli_runner import cx, cx_env
from tests.fakes.anthropic import FakeAnthropic
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import POLICY, import_demo_kb, new_case
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal, answer

NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---- periods: TIMEZONE's local day and month ------------------------------------------------------------

def test_a_day_is_the_local_day_not_the_utc_one():
    # 03:00 UTC on 1 March is still 28 February in New York (UTC-5).
    day = period_bounds("daily", utc(2026, 3, 1, 3), NEW_YORK)
    assert (day.start, day.end, day.first_day.isoformat()) == (utc(2026, 2, 28, 5), utc(2026, 3, 1, 5), "2026-02-28")
    month = period_bounds("monthly", utc(2026, 3, 1, 3), NEW_YORK)
    assert (month.start, month.end, month.first_day.isoformat()) == (utc(2026, 2, 1, 5), utc(2026, 3, 1, 5),
                                                                     "2026-02-01")
    # East of UTC: 11:30 UTC on 30 June is already 1 July in Auckland (UTC+12 in winter).
    july = period_bounds("monthly", utc(2026, 6, 30, 12, 30), AUCKLAND)
    assert (july.start, july.first_day.isoformat()) == (utc(2026, 6, 30, 12), "2026-07-01")


def test_daylight_saving_days_and_the_year_end():
    spring = period_bounds("daily", utc(2026, 3, 8, 12), NEW_YORK)  # clocks go forward: a 23-hour day
    assert (spring.start, spring.end) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))
    autumn = period_bounds("daily", utc(2026, 11, 1, 12), NEW_YORK)  # clocks go back: 25 hours
    assert autumn.end - autumn.start == timedelta(hours=25)
    december = period_bounds("monthly", utc(2026, 12, 31, 23), NEW_YORK)
    assert (december.start, december.end) == (utc(2026, 12, 1, 5), utc(2027, 1, 1, 5))


async def add_spend(pool, at: datetime, usd: str, step: str = "draft", provider: str = "anthropic") -> None:
    await pool.execute("INSERT INTO llm_usage (step, provider, model, cost_usd, created_at) "
                       "VALUES ($1, $2, 'm', $3::numeric, $4)", step, provider, usd, at)


async def only_budget(pool, name: str, **kwargs) -> None:
    async with transaction(pool) as conn:
        await conn.execute("UPDATE token_budgets SET is_active = false")
        await budgets_db.set_budget(conn, name, **kwargs)


async def test_spend_counts_the_local_period_and_the_budgets_scope(pool):
    await only_budget(pool, "drafts", period="daily", limit_usd=Decimal("10"), warn_at=Decimal("0.8"), step="draft")
    await add_spend(pool, utc(2026, 3, 1, 4), "5")  # 23:00 on 28 Feb in New York: the day before
    await add_spend(pool, utc(2026, 3, 1, 6), "7")  # 01:00 on 1 March: today
    await add_spend(pool, utc(2026, 3, 1, 7), "100", step="triage")  # another step's spend
    await add_spend(pool, utc(2026, 3, 2, 6), "1")  # tomorrow
    async with pool.acquire() as conn:
        [today] = await budget_states(conn, utc(2026, 3, 1, 20), NEW_YORK)
        [day_before] = await budget_states(conn, utc(2026, 3, 1, 4, 30), NEW_YORK)
    assert (today.spent_usd, today.state) == (Decimal("7"), "ok")
    assert (day_before.spent_usd, day_before.state) == (Decimal("5"), "ok")
    await add_spend(pool, utc(2026, 3, 1, 8), "1.5")
    async with pool.acquire() as conn:
        [today] = await budget_states(conn, utc(2026, 3, 1, 20), NEW_YORK)
    assert (today.spent_usd, today.state) == (Decimal("8.5"), "warning")
    await add_spend(pool, utc(2026, 3, 1, 9), "1.5")
    async with pool.acquire() as conn:
        [today] = await budget_states(conn, utc(2026, 3, 1, 20), NEW_YORK)
    assert (today.spent_usd, today.state) == (Decimal("10.0"), "exhausted"), "reached at exactly the limit"


async def drafting(n: int, pool) -> UUID:
    """A new case, triaged with confidence for drafting (by the local stand-in: no budget involved)."""
    async with transaction(pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email="mia@example.com", customer_name="Mia Wong", channel="email",
            subject="Card not here", description=f"Order {n}: I ordered my card ten days ago, it has not arrived.",
            interaction_type="email_in", email_message_id=f"<q{n}@mail.example.com>", gmail_thread_id=None,
        )
    await triage_case(pool, ScriptedLocal(0.97), TAXONOMY, THRESHOLDS, stored.case_id)
    return stored.case_id


# ---- a budget reached mid-run ----------------------------------------------------------------------------

DRAFT = {"reply": "Hi Mia,\n\nCards arrive within 5-7 working days.\n\nBest regards,\nNorthwind Bank Support",
         "cited_article_ids": [], "confidence": 0.93, "questions": [], "risks": []}


def claude_answers(fake: FakeAnthropic):
    # The cascade escalates on the fast model, drafts are written by the main one.
    return lambda body: fake.tool_use(TOOL_NAME, answer() if body["model"].startswith("claude-haiku") else DRAFT)


async def test_a_budget_reached_mid_run_degrades_without_dropping_a_case(pool, slack):
    await import_demo_kb(pool)
    await only_budget(pool, "AI overall", period="daily", limit_usd=Decimal("1000"), warn_at=Decimal("0.8"))
    now = [datetime.now(UTC)]
    gate = BudgetGate(pool, NEW_YORK, ttl=0, clock=lambda: now[0])  # ttl 0: every call reads the spend
    alerts = BudgetAlertService(pool, AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/"),
                                "#support-alerts", NEW_YORK, clock=lambda: now[0])

    async with FakeAnthropic() as fake:
        fake.default = claude_answers(fake)
        llm = BudgetedLLM(AnthropicLLM(AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=0)), gate)
        claude_triager = ClaudeTriager(llm, TAXONOMY, model="claude-haiku-4-5", system=load("triage"),
                                       request=load("triage_request"))
        triager = CascadeTriager(ScriptedLocal(0.5), claude_triager, high=0.85)  # unsure: every case escalates
        drafter = FallbackDrafter(ClaudeDrafter(llm, model="claude-sonnet-4-6", system=load("draft"),
                                                request=load("draft_request"), company="Northwind Bank"),
                                  ExtractiveDrafter(company="Northwind Bank", high=0.85))

        async def triage(n: int) -> dict:
            """A new case triaged; its outcome as stored."""
            case_id = await new_case(pool, f"Case {n}: my salary transfer has not arrived and I need it today.")
            await triage_case(pool, triager, TAXONOMY, THRESHOLDS, case_id)
            return dict(await pool.fetchrow("SELECT status, triage_model, confidence_score::float8 AS confidence "
                                            "FROM cases WHERE case_id = $1", case_id))

        async def draft(n: int) -> dict:
            """A case ready for drafting, drafted; the draft and the case's status as stored."""
            case_id = await drafting(n, pool)
            await draft_case(pool, drafter, None, TAXONOMY, POLICY, case_id)
            return dict(await pool.fetchrow("SELECT d.drafter, d.decision, c.status FROM case_drafts d "
                                            "JOIN cases c USING (case_id) WHERE case_id = $1", case_id))

        async def run(n: int) -> tuple[dict, dict]:
            return await triage(n), await draft(n)

        async def spent() -> Decimal:
            return await pool.fetchval("SELECT sum(cost_usd) FROM llm_usage")

        async def check(times: int) -> None:
            for _ in range(times):
                await alerts.check()

        # Round 1 with Claude; the budget is then sized from its real cost so that it sits at 85%.
        triaged, drafted = await run(1)
        assert triaged["triage_model"] == "claude-haiku-4-5" and drafted["drafter"] == "claude"
        first = await spent()
        await only_budget(pool, "AI overall", period="daily", limit_usd=first / Decimal("0.85"),
                          warn_at=Decimal("0.8"))
        await check(3)
        assert [m["text"] for m in slack.messages if "reached" in m["text"]] == []
        [warning] = slack.messages
        assert warning["channel"] == "#support-alerts" and ":warning: AI budget *AI overall*" in warning["text"]

        # The next case starts below the limit, so Claude is still called; its cost crosses the limit.
        assert (await triage(2))["triage_model"] == "claude-haiku-4-5"
        async with pool.acquire() as conn:
            [state] = await budget_states(conn, now[0], NEW_YORK)
        assert state.state == "exhausted"
        await check(5)
        assert len(slack.messages) == 2 and "is reached" in slack.messages[1]["text"]
        assert "every case goes to review" in slack.messages[1]["text"]

        # Rounds 3 and 4: no call reaches Anthropic; every case is triaged and drafted, for review.
        calls = len(fake.requests_to("/v1/messages"))
        for n in (3, 4):
            triaged, drafted = await run(n)
            assert triaged["triage_model"] == "test-local" and triaged["confidence"] < 0.85
            assert triaged["status"] != "new"
            assert (drafted["drafter"], drafted["decision"], drafted["status"]) == ("extractive", "review",
                                                                                    "awaiting_review")
        assert len(fake.requests_to("/v1/messages")) == calls
        refused = await pool.fetch("SELECT step, cost_usd FROM llm_usage WHERE error = 'budget exhausted'")
        assert sorted(r["step"] for r in refused) == ["draft", "draft", "triage", "triage"]
        assert all(r["cost_usd"] == 0 for r in refused)
        await check(5)
        assert len(slack.messages) == 2, "each notice once per period, however often the check runs"

        # The next local day the spend starts from zero: Claude again, and no notice.
        now[0] += timedelta(days=1)
        triaged, drafted = await run(5)
        assert triaged["triage_model"] == "claude-haiku-4-5" and drafted["drafter"] == "claude"
        assert len(fake.requests_to("/v1/messages")) == calls + 2
        await check(2)
        assert len(slack.messages) == 2
    statuses = await pool.fetch("SELECT status FROM cases")
    assert len(statuses) == 9 and all(r["status"] != "new" for r in statuses), "no case dropped"


async def test_the_gate_reads_the_spend_once_per_ttl(pool):
    await only_budget(pool, "triage only", period="monthly", limit_usd=Decimal("1"), warn_at=Decimal("0.8"),
                      step="triage")
    gate = BudgetGate(pool, NEW_YORK, ttl=3600)
    assert await gate.exhausted("triage", "anthropic") is None
    await add_spend(pool, datetime.now(UTC), "2", step="triage")
    assert await gate.exhausted("triage", "anthropic") is None, "still the cached state"
    fresh = BudgetGate(pool, NEW_YORK, ttl=3600)
    spent = await fresh.exhausted("triage", "anthropic")
    assert spent is not None and spent.budget.name == "triage only"
    assert await fresh.exhausted("draft", "anthropic") is None, "a step budget covers only its step"


# ---- where the state shows: `cx usage` and /metrics ------------------------------------------------------

async def test_cx_usage_and_metrics_show_each_budget_in_its_current_period(pool, dsn, tmp_path):
    async with transaction(pool) as conn:
        await conn.execute("UPDATE token_budgets SET is_active = false")
        await budgets_db.set_budget(conn, "drafts today", period="daily", limit_usd=Decimal("2"),
                                    warn_at=Decimal("0.8"), step="draft")
        await budgets_db.set_budget(conn, "all this month", period="monthly", limit_usd=Decimal("100"),
                                    warn_at=Decimal("0.8"), provider="anthropic")
    await add_spend(pool, datetime.now(UTC), "2.5")
    await add_spend(pool, datetime.now(UTC), "1", step="triage", provider="openai")
    env = cx_env(DATABASE_URL=dsn, CX_DATA_DIR=str(tmp_path), TIMEZONE="Pacific/Auckland")

    result = cx("usage", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = {b["name"]: b for b in json.loads(result.stdout)["budgets"]}
    today = datetime.now(AUCKLAND).date()
    assert shown["drafts today"] == {
        "name": "drafts today", "period": "daily", "period_start": today.isoformat(), "step": "draft",
        "provider": None, "limit_usd": 2.0, "spent_usd": 2.5, "used_ratio": 1.25, "state": "exhausted"}
    assert (shown["all this month"]["period_start"], shown["all this month"]["spent_usd"],
            shown["all this month"]["state"]) == (today.replace(day=1).isoformat(), 2.5, "ok")
    table = cx("usage", env=env)
    assert table.returncode == 0 and "drafts today" in table.stdout and "exhausted" in table.stdout, table.stderr

    metrics = Metrics()
    await refresh_budgets(metrics, pool, AUCKLAND)
    scraped = generate_latest(metrics.registry).decode()
    assert 'cx_budget_used_ratio{budget="drafts today",period="daily"} 1.25' in scraped
    assert 'cx_budget_used_ratio{budget="all this month",period="monthly"} 0.025' in scraped


def test_the_check_is_scheduled_every_five_minutes_with_slack(make_settings):
    names = [s.job for s in schedules(make_settings(slack_bot_token="xoxb-test"), gmail=False)]
    assert JobName.BUDGET_CHECK in names
    assert JobName.BUDGET_CHECK not in [s.job for s in schedules(make_settings(), gmail=False)]


def test_cx_budget_sets_replaces_and_switches_off_a_budget(dsn, tmp_path):
    env = cx_env(DATABASE_URL=dsn, CX_DATA_DIR=str(tmp_path))
    for args in (["--limit-usd", "5"], ["--limit-usd", "7.5", "--period", "monthly", "--step", "draft",
                                        "--provider", "anthropic", "--warn-at", "0.5"]):
        result = cx("budget", "set", "drafts", *args, env=env)
        assert result.returncode == 0, result.stderr
    [drafts] = [b for b in json.loads(cx("usage", "--json", env=env).stdout)["budgets"] if b["name"] == "drafts"]
    assert (drafts["limit_usd"], drafts["period"], drafts["step"], drafts["provider"]) == (7.5, "monthly", "draft",
                                                                                          "anthropic")
    for bad, reason in ((["--limit-usd", "0"], "more than 0"), (["--limit-usd", "x"], "not a number"),
                        (["--limit-usd", "1", "--period", "weekly"], "daily or monthly"),
                        (["--limit-usd", "1", "--step", "drafts"], "--step 'drafts'"),
                        (["--limit-usd", "1", "--warn-at", "1.5"], "at most 1")):
        result = cx("budget", "set", "x", *bad, env=env)
        assert result.returncode == 2 and reason in result.stderr, result.stderr
    assert cx("budget", "off", "drafts", env=env).returncode == 0
    assert "drafts" not in {b["name"] for b in json.loads(cx("usage", "--json", env=env).stdout)["budgets"]}
    missing = cx("budget", "off", "drafts", env=env)
    assert missing.returncode == 2 and "no active budget" in missing.stderr


async def test_app_home_shows_budgets_near_or_past_their_limit(pool, slack, make_settings):
    async with transaction(pool) as conn:
        await conn.execute("UPDATE token_budgets SET is_active = false")
        for name, limit in (("drafts <b>", "2"), ("calm", "1000"), ("near", "3")):
            await budgets_db.set_budget(conn, name, period="daily", limit_usd=Decimal(limit), warn_at=Decimal("0.8"))
    await add_spend(pool, datetime.now(UTC), "2.5")
    home = SlackHomeService(pool, AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/"),
                            make_settings(timezone="America/New_York"))
    facts = await home.home("U0ALICE")
    assert {(b.name, b.exhausted) for b in facts.budgets} == {("drafts <b>", True), ("near", False)}
    view = home_view(facts)
    assert_valid_blocks(view["blocks"], max_blocks=100)
    [budgets] = [b for b in view["blocks"] if b["block_id"] == "home_budgets"]
    assert "*drafts &lt;b&gt;* (daily) is reached" in budgets["text"]["text"]
    assert "*near* (daily) is at 83%" in budgets["text"]["text"]
