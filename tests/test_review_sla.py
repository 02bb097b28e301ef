"""The review SLA job against the fake Slack Web API: a reminder in the card's thread 30 minutes
before the review is due, an alert in the alerts channel when it is due, each once. Time is passed
in as `now`; asserts on the Slack calls made and on the database."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from slack_sdk.web.async_client import AsyncWebClient

from bot.services.review_sla import ReviewSlaService
from bot.settings import Settings
from db import intake as intake_db
from db import review as review_db
from db.pool import transaction
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import draft_case
from pipelines.jobs import ReviewAction
from pipelines.review import decisions as review
from pipelines.review import sla as review_sla
from pipelines.triage.step import triage_case
from tests.fakes.slack import FakeSlack
from tests.support.cases import POLICY, SENDER, review_case
from tests.support.review import click
from tests.support.slack import REVIEWERS
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

REVIEW_CHANNEL = "C0REVIEW"
ALERTS_CHANNEL = "C0ALERTS"
CARD_TS = "1700000000.000100"


def sla_job(pool, slack: FakeSlack, *, group: str | None = REVIEWERS) -> ReviewSlaService:
    settings = Settings(_env_file=None, slack_review_channel=REVIEW_CHANNEL, slack_alerts_channel=ALERTS_CHANNEL,
                        slack_reviewer_group=group, review_timeout_hours=2)
    return ReviewSlaService(pool, AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/"), settings)


async def case_in_review(pool, *, card: bool = True, another: bool = False) -> tuple[UUID, datetime]:
    """A case awaiting review, its review opened with a two-hour timeout; returns it and its due time.
    `another`: a second customer's case, for tests that need two."""
    case_id = await another_review_case(pool) if another else (await review_case(pool))[0]
    async with pool.acquire() as conn:
        facts = await review.prepare_card(conn, case_id, timeout_hours=2)
    assert facts is not None and facts.review_status == "pending"
    if card:
        async with pool.acquire() as conn:
            await review.record_card(conn, case_id, REVIEW_CHANNEL, CARD_TS)
    return case_id, await pool.fetchval("SELECT due_at FROM review_queue WHERE case_id = $1", case_id)


async def another_review_case(pool) -> UUID:
    async with transaction(pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email="leo@example.com", customer_name="Leo Park", channel="email",
            subject="Where is my card", description="My new card has not arrived after two weeks.",
            interaction_type="email_in", email_message_id="<q2@mail.example.com>", gmail_thread_id=None,
        )
    await triage_case(pool, ScriptedLocal(0.7, "card_arrival"), TAXONOMY, THRESHOLDS, stored.case_id)
    drafter = FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85))
    assert await draft_case(pool, drafter, None, TAXONOMY, POLICY, stored.case_id) is not None
    return stored.case_id


async def sla_row(pool, case_id: UUID) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, reminder_sent_at, escalated_at FROM review_queue WHERE case_id = $1", case_id)
    return dict(row)


async def test_a_reminder_in_the_cards_thread_then_an_alert_at_the_timeout_each_once(pool, slack):
    case_id, due = await case_in_review(pool)
    job = sla_job(pool, slack)

    early = await job.run(due - timedelta(minutes=31))
    assert (early.reminders, early.timeouts, slack.messages) == ((), (), [])

    at = due - timedelta(minutes=29)
    run = await job.run(at)
    assert [n.case_id for n in run.reminders] == [case_id] and run.timeouts == ()
    (reminder,) = slack.messages
    assert (reminder["channel"], reminder["thread_ts"]) == (REVIEW_CHANNEL, CARD_TS)
    assert reminder["text"].startswith(f"<!subteam^{REVIEWERS}>")
    short_id = await pool.fetchval("SELECT short_id FROM cases WHERE case_id = $1", case_id)
    assert f"CX-{short_id}" in reminder["text"]
    assert reminder["blocks"][0]["text"]["verbatim"] is True
    assert await sla_row(pool, case_id) == {"status": "pending", "reminder_sent_at": at, "escalated_at": None}

    again = await job.run(due - timedelta(minutes=1))
    assert (again.reminders, again.timeouts) == ((), ())
    assert len(slack.messages) == 1

    late = due + timedelta(minutes=1)
    run = await job.run(late)
    assert run.reminders == () and [n.case_id for n in run.timeouts] == [case_id]
    assert len(slack.messages) == 2
    alert = slack.messages[1]
    assert alert["channel"] == ALERTS_CHANNEL and alert["thread_ts"] is None
    # The card's permalink, built from the workspace URL auth.test gives.
    assert f"<https://fake-workspace.slack.com/archives/{REVIEW_CHANNEL}/p1700000000000100|Open the card>" \
        in alert["text"]
    assert f"CX-{short_id}" in alert["text"]
    # The review stays open for a reviewer to act on; the timeline says the SLA was missed.
    assert await sla_row(pool, case_id) == {"status": "pending", "reminder_sent_at": at, "escalated_at": late}
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "awaiting_review"
    note = await pool.fetchrow(
        "SELECT actor_type, actor_id, message, metadata FROM case_interactions "
        "WHERE case_id = $1 AND interaction_type = 'note'", case_id)
    assert (note["actor_type"], note["actor_id"]) == ("system", "review_sla")
    assert "escalated to the alerts channel" in note["message"]
    assert json.loads(note["metadata"])["event"] == "review_timeout"

    for later in (late + timedelta(minutes=1), late + timedelta(hours=5)):
        run = await job.run(later)
        assert (run.reminders, run.timeouts, run.failed) == ((), (), ())
    assert len(slack.messages) == 2
    assert await pool.fetchval("SELECT count(*) FROM case_interactions WHERE interaction_type = 'note'") == 1


async def test_a_review_decided_before_it_is_due_gets_neither(pool, slack):
    case_id, due = await case_in_review(pool)
    result = await review.apply(pool, SENDER, click(ReviewAction.REJECT, "U0ALICE", case_id, reason="inaccurate"))
    assert result.done
    job = sla_job(pool, slack)
    for now in (due - timedelta(minutes=29), due + timedelta(minutes=1), due + timedelta(hours=3)):
        run = await job.run(now)
        assert (run.reminders, run.timeouts) == ((), ())
    assert slack.messages == []
    assert await sla_row(pool, case_id) == {"status": "rejected", "reminder_sent_at": None, "escalated_at": None}


async def test_a_failed_post_is_not_claimed_and_goes_out_on_the_next_run(pool, slack):
    case_id, due = await case_in_review(pool)
    job = sla_job(pool, slack)

    slack.fail_next("chat.postMessage", "ratelimited")
    run = await job.run(due - timedelta(minutes=29))
    assert run.reminders == () and [f.notice.case_id for f in run.failed] == [case_id]
    assert "ratelimited" in run.failed[0].error
    assert slack.messages == [] and (await sla_row(pool, case_id))["reminder_sent_at"] is None

    run = await job.run(due - timedelta(minutes=28))
    assert [n.case_id for n in run.reminders] == [case_id] and run.failed == ()
    assert [m["thread_ts"] for m in slack.messages] == [CARD_TS]

    slack.fail_next("chat.postMessage", "channel_not_found")
    run = await job.run(due + timedelta(minutes=1))
    assert run.timeouts == () and len(run.failed) == 1
    # Rolled back with its claim: no escalation mark and no timeline note.
    assert (await sla_row(pool, case_id))["escalated_at"] is None
    assert await pool.fetchval("SELECT count(*) FROM case_interactions WHERE interaction_type = 'note'") == 0

    run = await job.run(due + timedelta(minutes=2))
    assert [n.case_id for n in run.timeouts] == [case_id]
    assert [m["channel"] for m in slack.messages] == [REVIEW_CHANNEL, ALERTS_CHANNEL]
    assert await pool.fetchval("SELECT count(*) FROM case_interactions WHERE interaction_type = 'note'") == 1


async def test_one_failed_post_does_not_hold_up_the_others(pool, slack):
    first, due = await case_in_review(pool)
    second, _ = await case_in_review(pool, card=False, another=True)
    async with pool.acquire() as conn:
        await review.record_card(conn, second, REVIEW_CHANNEL, "1700000000.000200")
    slack.fail_next("chat.postMessage")
    run = await sla_job(pool, slack).run(due - timedelta(minutes=29))
    assert len(run.failed) == 1 and len(run.reminders) == 1
    assert {run.failed[0].notice.case_id, run.reminders[0].case_id} == {first, second}
    assert len(slack.messages) == 1


async def test_two_schedulers_at_once_remind_once_and_alert_once(pool, slack):
    case_id, due = await case_in_review(pool)
    jobs = [sla_job(pool, slack), sla_job(pool, slack)]
    for now in (due - timedelta(minutes=29), due + timedelta(minutes=1)):
        runs = await asyncio.gather(*(job.run(now) for job in jobs))
        assert sum(len(r.reminders) + len(r.timeouts) for r in runs) == 1
    assert [m["channel"] for m in slack.messages] == [REVIEW_CHANNEL, ALERTS_CHANNEL]


async def test_while_one_run_posts_another_finds_the_review_claimed_and_after_a_failure_may_claim_it(pool):
    """Deterministic interleaving: the second run happens inside the first one's post."""
    case_id, due = await case_in_review(pool)
    now = due - timedelta(minutes=29)
    seen_by_second: list[review_sla.SlaRun] = []

    async def second_post(notice: review_sla.SlaNotice) -> None:
        raise AssertionError("the second run claimed a review the first was posting about")

    async def first_post(notice: review_sla.SlaNotice) -> None:
        seen_by_second.append(await review_sla.run_due(pool, now, second_post))
        raise review_sla.PostFailed("slack said no")

    first = await review_sla.run_due(pool, now, first_post)
    assert [f.notice.case_id for f in first.failed] == [case_id] and first.reminders == ()
    assert seen_by_second == [review_sla.SlaRun((), (), ())]
    assert (await sla_row(pool, case_id))["reminder_sent_at"] is None

    posted: list[review_sla.SlaNotice] = []

    async def record(notice: review_sla.SlaNotice) -> None:
        posted.append(notice)

    third = await review_sla.run_due(pool, now, record)
    assert [n.case_id for n in third.reminders] == [n.case_id for n in posted] == [case_id]
    assert posted[0].card_channel == REVIEW_CHANNEL and posted[0].card_ts == CARD_TS and posted[0].due_at == due


async def test_a_case_a_reviewer_is_deciding_is_skipped_without_waiting_and_alerted_next_run(pool, slack):
    case_id, due = await case_in_review(pool)
    job = sla_job(pool, slack)
    late = due + timedelta(minutes=1)
    async with transaction(pool) as conn:
        # A reviewer's decision holds the case row from its first statement to its commit.
        assert await review_db.card_facts(conn, case_id, lock=True) is not None
        run = await asyncio.wait_for(job.run(late), timeout=5)
        assert (run.timeouts, run.failed, slack.messages) == ((), (), [])
    run = await job.run(late + timedelta(minutes=1))
    assert [n.case_id for n in run.timeouts] == [case_id]
    assert [m["channel"] for m in slack.messages] == [ALERTS_CHANNEL]


async def test_a_review_without_a_posted_card_waits_for_its_card(pool, slack):
    case_id, due = await case_in_review(pool, card=False)
    job = sla_job(pool, slack)
    run = await job.run(due - timedelta(minutes=29))
    assert (run.reminders, slack.messages) == ((), [])
    async with pool.acquire() as conn:
        await review.record_card(conn, case_id, REVIEW_CHANNEL, CARD_TS)
    run = await job.run(due - timedelta(minutes=28))
    assert [n.case_id for n in run.reminders] == [case_id]
    assert slack.messages[0]["thread_ts"] == CARD_TS


async def test_a_review_reached_only_after_its_due_time_is_escalated_without_a_late_reminder(pool, slack):
    case_id, due = await case_in_review(pool)
    run = await sla_job(pool, slack).run(due + timedelta(minutes=5))
    assert run.reminders == () and [n.case_id for n in run.timeouts] == [case_id]
    assert [m["channel"] for m in slack.messages] == [ALERTS_CHANNEL]


async def test_the_subject_is_escaped_and_without_a_group_the_reminder_names_reviewers(pool, slack):
    case_id, due = await case_in_review(pool)
    await pool.execute("UPDATE cases SET subject = $2 WHERE case_id = $1", case_id,
                       "<!channel> refund & <https://evil.example|your bank> <@U0BOSS>")
    job = sla_job(pool, slack, group=None)
    await job.run(due - timedelta(minutes=29))
    await job.run(due + timedelta(minutes=1))
    reminder, alert = slack.messages
    assert reminder["text"].startswith("Reviewers,") and "subteam" not in reminder["text"]
    escaped = "&lt;!channel&gt; refund &amp; &lt;https://evil.example|your bank&gt; &lt;@U0BOSS&gt;"
    for message in (reminder, alert):
        for text in (message["text"], message["blocks"][0]["text"]["text"]):
            assert escaped in text
            assert "<!channel>" not in text and "<https://evil" not in text and "<@U0BOSS>" not in text


async def test_a_taken_case_reminds_the_reviewer_who_took_it(pool, slack):
    case_id, due = await case_in_review(pool)
    assert (await review.apply(pool, SENDER, click(ReviewAction.TAKE, "U0BOB", case_id))).done
    job = sla_job(pool, slack)
    await job.run(due - timedelta(minutes=29))
    await job.run(due + timedelta(minutes=1))
    reminder, alert = slack.messages
    assert reminder["text"].startswith("<@U0BOB>,") and "subteam" not in reminder["text"]
    assert "taken by <@U0BOB>" in alert["text"]
