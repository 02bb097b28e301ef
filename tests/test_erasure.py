"""`cx customers erase`: one customer's text is gone from every column of every table (found by scanning
them all for a word only that customer wrote), another customer's is untouched, the anonymous figures
are the same, and the Slack messages the desk posted about the cases (review card, its thread, the
urgent alert) say the content was erased, through the real slack_sdk against the fake Slack."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from typer.testing import CliRunner, Result

from bot.cli.main import app
from bot.deps import Deps, with_slack
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from db import drafts as drafts_db
from db import intake as intake_db
from db import kb_gaps as kb_gaps_db
from db.pool import transaction
from handlers import mrkdwn
from handlers.erasure_notice import ERASED_TEXT
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import draft_case
from pipelines.intake.webhook import intake_webhook
from pipelines.jobs import ErasureNotice, JobName, SlackMessageRef
from pipelines.models import IntakeRequest
from pipelines.privacy.erasure import UnknownCustomer, erase_customer
from pipelines.triage.step import triage_case
from tests.cli_runner import cx_env
from tests.fakes.slack import FakeSlack
from tests.support.blocks import assert_valid_blocks
from tests.support.cases import POLICY, import_demo_kb, new_case
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

ALERTS, REVIEW = "C0ALERTS", "C0REVIEW"
ZOE, EVE = "zoe@example.com", "eve@example.com"
SECRET, KEPT = "zanzibar", "kilimanjaro"  # words only Zoe's and only Eve's texts contain


@pytest.fixture
def deps(pool, slack: FakeSlack) -> Deps:
    settings = Settings(_env_file=None, slack_alerts_channel=ALERTS, slack_review_channel=REVIEW,
                        slack_reviewer_group=REVIEWERS, slack_bot_token="xoxb-test")
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    return with_slack(Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY), client)


async def _run_jobs(deps: Deps, name: str) -> int:
    rows = await deps.pool.fetch("DELETE FROM pgqueuer WHERE entrypoint = $1 RETURNING payload", name)
    for row in rows:
        await job_handlers(deps)[name](bytes(row["payload"]))
    return len(rows)


async def _erase(dsn: str, *args: str) -> Result:
    """`cx customers erase` in this process (in a thread: the command runs its own event loop); a
    subprocess would spend seconds importing."""
    return await asyncio.to_thread(partial(CliRunner().invoke, app, ["customers", "erase", *args],
                                           env=cx_env(DATABASE_URL=dsn, LOG_LEVEL="warning")))


async def _zoe(deps: Deps) -> tuple[UUID, UUID]:
    """Zoe's two cases: a critical one (urgent alert, review card with the full text in its thread) and
    one drafted for review, with every kind of derived row besides."""
    pool = deps.pool
    request = IntakeRequest(customer_email=ZOE, customer_name="Zoe Zanzibar", subject=f"Money gone {SECRET}",
                            description=f"Someone took money from my account in {SECRET}. " * 80)
    urgent = (await intake_webhook(pool, request, replay_key="delivery-1")).case_id
    await pool.execute("UPDATE customers SET account_tier = 'enterprise', company = 'Zanzibar Ltd' WHERE email = $1",
                       ZOE)
    outcome = await triage_case(pool, ScriptedLocal(0.9, priority="critical"), TAXONOMY, THRESHOLDS, urgent)
    assert outcome is not None and outcome.decision.route == "human_urgent"
    assert await _run_jobs(deps, JobName.URGENT_ALERT) == 1
    assert await _run_jobs(deps, JobName.REVIEW_CARD) == 1

    await import_demo_kb(pool)
    async with transaction(pool) as conn:
        drafted = (await intake_db.create_case(
            conn, customer_email=ZOE, customer_name="Zoe Zanzibar", channel="email",
            subject=f"Card not here {SECRET}", interaction_type="email_in", email_message_id="<z1@mail.example.com>",
            description=f"I ordered my card ten days ago in {SECRET} and it still has not arrived. Where is it?",
        )).case_id
    await triage_case(pool, ScriptedLocal(0.7, "card_arrival"), TAXONOMY, THRESHOLDS, drafted)
    assert await draft_case(pool, FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85)),
                            None, TAXONOMY, POLICY, drafted) is not None
    assert await _run_jobs(deps, JobName.REVIEW_CARD) == 1

    await pool.execute(
        f"""
        INSERT INTO case_pii (case_id, map) VALUES ($1, '{{"[CARD_1]": "4111 {SECRET}"}}');
        INSERT INTO case_embeddings (case_id, embedding, model) VALUES ($1, '[0.1, 0.2, 0.3]', 'test');
        INSERT INTO labelled_examples (text, category, source, case_id) VALUES ('card {SECRET}', 'cards', 'case', $1);
        INSERT INTO kb_searches (query, case_id) VALUES ('card {SECRET}', $1);
        INSERT INTO reply_outbox (case_id, draft_key, channel, to_address, subject, body, status, sent_at)
        VALUES ($1, 'k-sent', 'email', '{ZOE}', 'Re: {SECRET}', 'Dear Zoe of {SECRET}', 'sent', now()),
               ($1, 'k-pending', 'email', '{ZOE}', 'Re: {SECRET}', 'Again, Zoe of {SECRET}', 'pending', NULL);
        INSERT INTO agent_feedback (case_id, feedback_type, field, ai_value, human_value, comment)
        VALUES ($1, 'edit', 'draft', 'Dear {SECRET}', 'Hello {SECRET}', 'Zoe of {SECRET} is upset'),
               ($1, 'correction', 'category', 'cards', 'payments', NULL);
        INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, message)
        VALUES ($1, 'reviewer', 'U0ALICE', 'note', 'Called Zoe in {SECRET}');
        INSERT INTO workflow_executions (workflow_name, case_id, status, error_message, metadata)
        VALUES ('draft', $1, 'error', 'failed on {SECRET}', '{{"input": "{SECRET}"}}');
        -- A draft that quotes the customer, as Claude's do.
        UPDATE case_drafts SET body = body || ' Sorry about {SECRET}.', risks = '{{"{SECRET} mentioned"}}' WHERE case_id = $1;
        UPDATE review_queue SET draft = coalesce(draft, '') || ' Sorry about {SECRET}.' WHERE case_id = $1;
        INSERT INTO llm_usage (step, provider, model, cost_usd, case_id) VALUES ('draft', 'anthropic', 'claude', 0.25, $1);
        """.replace("$1", f"'{drafted}'::uuid"),
    )
    return urgent, drafted


async def _eve(pool) -> UUID:
    case_id = await new_case(pool, f"My transfer to {KEPT} has not arrived and I am furious.")
    await pool.execute(f"INSERT INTO kb_searches (query, case_id) VALUES ('transfer {KEPT}', '{case_id}'::uuid)")
    return case_id


async def _where(pool, word: str) -> set[str]:
    """Every table.column of the public schema whose text (of any text, array or JSON type) contains `word`."""
    columns = await pool.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
        "AND (c.data_type IN ('text', 'character varying', 'jsonb', 'json', 'ARRAY') OR (c.table_name, c.column_name) = ('pgqueuer', 'payload'))")
    found = set()
    for col in columns:
        table, column = col["table_name"], col["column_name"]
        value = f"convert_from({column}, 'UTF8')" if column == "payload" else f"{column}::text"
        if await pool.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {value} ILIKE $1)", f"%{word}%"):
            found.add(f"{table}.{column}")
    return found


async def _figures(pool) -> dict[str, Any]:
    """What stays: the daily metrics of today, the labels of the cases, the cost per step."""
    return {
        "daily": [dict(r) for r in await pool.fetch(
            "SELECT * FROM daily_metrics_between(now() - interval '1 day', now() + interval '1 minute')")],
        "labels": [tuple(r) for r in await pool.fetch(
            "SELECT status, category, subcategory, priority, resolution_type FROM cases ORDER BY created_at")],
        "cost": [tuple(r) for r in await pool.fetch(
            "SELECT step, count(*), sum(cost_usd) FROM llm_usage GROUP BY 1 ORDER BY 1")],
        "status_moves": await pool.fetchval(
            "SELECT count(*) FROM case_interactions WHERE interaction_type = 'status_change'"),
    }


def _erased(message: dict[str, Any]) -> bool:
    return message["text"] == ERASED_TEXT and SECRET not in json.dumps(message["blocks"]).lower()


async def test_erase_removes_every_text_of_one_customer_keeps_the_figures_and_rewrites_slack(deps, slack, dsn):
    urgent, drafted = await _zoe(deps)
    eve_case = await _eve(deps.pool)
    before = await _where(deps.pool, SECRET)
    # Where Zoe's words were: the scan itself finds them (it would pass vacuously otherwise).
    assert {"cases.subject", "cases.description", "case_interactions.message", "case_drafts.body",
            "review_queue.draft", "reply_outbox.body", "kb_searches.query", "case_pii.map",
            "labelled_examples.text", "agent_feedback.human_value", "customers.name"} <= before
    email_before = await _where(deps.pool, ZOE)
    assert {"customers.email", "reply_outbox.to_address"} <= email_before
    figures = await _figures(deps.pool)
    later = datetime.now(UTC) + timedelta(hours=1)
    async with deps.pool.acquire() as conn:
        assert any(SECRET in body for _, body in await drafts_db.sent_before(conn, later, 10))
        assert len(await kb_gaps_db.resolved_cases(conn, [drafted], 5)) == 1
    zoe_messages = [m for m in slack.messages if SECRET in (m["text"] + json.dumps(m["blocks"])).lower()]
    card = next(m for m in slack.messages if m["channel"] == REVIEW and m["thread_ts"] is None)  # the urgent case's
    thread = [m for m in slack.messages if m["thread_ts"] == card["ts"]]
    alert = next(m for m in slack.messages if m["channel"] == ALERTS)
    assert thread and {card["ts"], alert["ts"], thread[0]["ts"]} <= {m["ts"] for m in zoe_messages}
    others = await deps.pool.fetchval("SELECT count(*) FROM slack_messages")
    slack.messages.append({"type": "message", "channel": REVIEW, "ts": "1.000001", "user": "U0ALICE", "bot_id": None,
                           "text": f"a reviewer's own reply about {SECRET}", "blocks": None, "thread_ts": card["ts"]})

    result = await _erase(dsn, ZOE.upper(), "--yes")

    assert result.exit_code == 0, result.output
    counts = {(line.split("│")[1].strip(), line.split("│")[2].strip()): line.split("│")[4].strip()
              for line in result.stdout.splitlines() if line.count("│") == 5}
    assert counts[("cases", "cleared")] == "2"
    assert counts[("case_pii", "deleted")] == "1" and counts[("case_embeddings", "deleted")] == "1"
    assert counts[("labelled_examples", "deleted")] == "1"
    assert counts[("reply_outbox", "cleared")] == "2" and counts[("agent_feedback", "cleared")] == "2"
    assert int(counts[("kb_searches", "deleted")]) >= 2  # the drafting's own search and the one above
    assert int(counts[("case_interactions", "deleted")]) >= 3  # two webhook/email arrivals and a note
    assert counts[("slack_messages", "queued for rewrite")] == "3"  # two cards and the alert

    assert await _where(deps.pool, SECRET) == set()
    assert await _where(deps.pool, ZOE) == set()
    assert await _where(deps.pool, "Zoe") == set()
    assert "cases.description" in await _where(deps.pool, KEPT)  # Eve's case is untouched
    assert await deps.pool.fetchval("SELECT count(*) FROM kb_searches WHERE case_id = $1", eve_case) == 1
    assert await _figures(deps.pool) == figures
    assert await deps.pool.fetchval("SELECT count(*) FROM slack_messages") == others
    assert [r["status"] for r in await deps.pool.fetch(
        "SELECT status FROM reply_outbox WHERE case_id = $1 ORDER BY draft_key", drafted)] == ["failed", "sent"]
    erased_at = await deps.pool.fetch("SELECT metadata->>'route' AS route, metadata ? 'erased_at' AS erased "
                                      "FROM cases WHERE case_id = ANY($1::uuid[]) ORDER BY created_at", [urgent, drafted])
    assert [(r["route"], r["erased"]) for r in erased_at] == [("human_urgent", True), ("review", True)]
    # An erased case is no one's example any more: house style, similar replies, KB article drafts.
    async with deps.pool.acquire() as conn:
        assert await drafts_db.sent_before(conn, later, 10) == []
        assert await kb_gaps_db.resolved_cases(conn, [drafted], 5) == []

    updates = len(slack.calls("chat.update"))
    # The queued job rewrites the cards, the bot's reply in its thread and the alert; not the reviewer's reply.
    assert await _run_jobs(deps, JobName.ERASURE_NOTICE) == 1
    for message in (card, alert, *thread):
        assert _erased(message), message
        assert_valid_blocks(message["blocks"], max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    assert slack.messages[-1]["text"] == f"a reviewer's own reply about {SECRET}"
    assert len(slack.calls("chat.update")) - updates == 3 + len(thread)
    assert all(_erased(m) for m in slack.messages if m["bot_id"])


async def test_a_dry_run_shows_the_same_counts_and_changes_nothing(deps, slack):
    await _zoe(deps)
    before = await _where(deps.pool, SECRET)
    preview = await erase_customer(deps.pool, ZOE, dry_run=True)
    assert await _where(deps.pool, SECRET) == before
    assert await deps.pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", JobName.ERASURE_NOTICE) == 0
    done = await erase_customer(deps.pool, ZOE)
    assert (preview.cases, preview.removed, preview.slack_messages) == (done.cases, done.removed, done.slack_messages)
    assert await _where(deps.pool, SECRET) == set()
    with pytest.raises(UnknownCustomer):
        await erase_customer(deps.pool, ZOE)  # the address is gone with the rest


async def test_unknown_address_and_no_terminal_without_yes_exit_2_and_change_nothing(deps, dsn):
    case_id = await _eve(deps.pool)
    unknown = await _erase(dsn, "nobody@example.com", "--yes")
    assert unknown.exit_code == 2
    assert "no customer with the address 'nobody@example.com'" in unknown.stderr
    unconfirmed = await _erase(dsn, EVE)
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr
    assert await deps.pool.fetchval("SELECT description FROM cases WHERE case_id = $1", case_id) != ""
    assert await deps.pool.fetchval("SELECT count(*) FROM customers WHERE email = $1", EVE) == 1


async def test_the_notice_job_passes_over_a_message_someone_deleted_and_can_run_twice(deps, slack):
    posted = await deps.slack.chat_postMessage(channel=REVIEW, text=f"card about {SECRET}")
    reply = await deps.slack.chat_postMessage(channel=REVIEW, text=f"all of {SECRET}", thread_ts=posted["ts"])
    notice = ErasureNotice(messages=[SlackMessageRef(channel=REVIEW, ts="1.000009"),
                                     SlackMessageRef(channel=REVIEW, ts=posted["ts"])])
    for _ in range(2):  # a retried job
        await job_handlers(deps)[JobName.ERASURE_NOTICE](notice.payload())
    assert [m["ts"] for m in slack.messages if _erased(m)] == [posted["ts"], reply["ts"]]
    assert len(slack.messages) == 2
