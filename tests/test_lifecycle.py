"""Case lifecycle: a replied case resolves after RESOLVE_AFTER_HOURS of customer silence, once; a
customer's reply keeps it open or reopens it; the resolution type follows what happened; the first
response time is the first reply that went out. Replies go out through the real Gmail adapter
against the fake Gmail; asserts on the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from uuid import UUID

from bot.runtime.scheduler import schedules
from bot.settings import Settings
from db import lifecycle as lifecycle_db
from db.pool import transaction
from pipelines.drafting.step import draft_case
from pipelines.intake.email import intake_email
from pipelines.jobs import ReviewAction
from pipelines.lifecycle.resolve import resolve_quiet
from pipelines.ports import DeliveryRefused, Draft, DraftInput, Escalation, IssueRef
from pipelines.replies.outbox import Channels, SendResult, send_reply
from pipelines.review import decisions as review
from tests.support.cases import POLICY, SENDER, drafting_case, import_demo_kb, review_case
from tests.support.review import click
from tests.support.triage import TAXONOMY

SILENCE = timedelta(hours=72)


class ConfidentDrafter:
    """A Drafter whose cited, confident Claude-like draft passes the auto-send policy."""

    name = "claude"
    wants_house_examples = False

    async def draft(self, item: DraftInput) -> Draft:
        return Draft(reply="Hi Mia,\n\nCards arrive within 5-7 working days.\n\nNorthwind Bank Support",
                     cited=[item.articles[0].article_id], dropped=[], confidence=0.93, questions=[], risks=[],
                     drafter="claude", model="claude-sonnet-4-6")


class Tracker:
    def __init__(self) -> None:
        self.filed: list[Escalation] = []

    async def escalate(self, escalation: Escalation) -> IssueRef:
        self.filed.append(escalation)
        return IssueRef("SUP-1", "https://jira.example/browse/SUP-1")


async def send_all(pool, mailbox) -> int:
    """Deliver every pending reply, as the SEND_REPLY jobs would."""
    sent = 0
    for outbox_id in [r["outbox_id"] for r in await pool.fetch("SELECT outbox_id FROM reply_outbox "
                                                                  "WHERE status = 'pending'")]:
        assert await send_reply(pool, Channels(mailbox, None), SENDER, outbox_id) == SendResult.SENT
        sent += 1
    return sent


async def auto_sent_case(pool, mailbox) -> UUID:
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.95)
    outcome = await draft_case(pool, ConfidentDrafter(), None, TAXONOMY, POLICY, case_id)
    assert outcome is not None and outcome.decision.auto_send, outcome.decision.reason
    assert await send_all(pool, mailbox) == 1
    return case_id


async def approved_case(pool, mailbox, action: ReviewAction = ReviewAction.APPROVE, **fields) -> UUID:
    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)  # the card job opens the review
    result = await review.apply(pool, SENDER, click(action, "U0ALICE", case_id, draft_id, **fields))
    assert result.done
    assert await send_all(pool, mailbox) == 1
    return case_id


async def case_row(pool, case_id: UUID):
    return await pool.fetchrow("SELECT status, resolution_type, resolved_at, first_response_at FROM cases "
                               "WHERE case_id = $1", case_id)


async def resolved_moves(pool, case_id: UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT actor_type, actor_id FROM case_interactions WHERE case_id = $1 "
                            "AND interaction_type = 'status_change' AND to_status = 'resolved'", case_id)
    return [(r["actor_type"], r["actor_id"]) for r in rows]


async def last_reply_at(pool, case_id: UUID) -> datetime:
    at: datetime = await pool.fetchval("SELECT max(created_at) FROM case_interactions WHERE case_id = $1 "
                                       "AND interaction_type = 'email_out'", case_id)
    return at


def customer_reply(fake_gmail, text: str = "It still has not arrived.") -> bytes:
    """The customer's answer to the reply we sent, threaded on its Message-ID."""
    ours = fake_gmail.sent[-1].message
    message = EmailMessage()
    message["From"] = "Mia Wong <mia@example.com>"
    message["To"] = "support@northwind.example"
    message["Subject"] = "Re: Card not here"
    message["Message-ID"] = f"<answer-{len(fake_gmail.sent)}@mail.example.com>"
    message["In-Reply-To"] = ours["Message-ID"]
    message["References"] = ours["Message-ID"]
    message.set_content(text)
    return message.as_bytes()


# ---- quiet resolution -----------------------------------------------------------------------------------


async def test_a_replied_case_resolves_after_the_silence_and_only_once(pool, gmail):
    _, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    replied_at = await last_reply_at(pool, case_id)
    assert (await case_row(pool, case_id))["status"] == "replied"

    before = await resolve_quiet(pool, now=replied_at + SILENCE - timedelta(minutes=1), silence=SILENCE)
    assert before == [] and (await case_row(pool, case_id))["status"] == "replied"

    after = await resolve_quiet(pool, now=replied_at + SILENCE, silence=SILENCE)
    assert [(r.case_id, r.resolution_type) for r in after] == [(case_id, "self_service")]
    row = await case_row(pool, case_id)
    assert row["status"] == "resolved" and row["resolution_type"] == "self_service" and row["resolved_at"]
    assert await resolved_moves(pool, case_id) == [("system", "lifecycle")]

    assert await resolve_quiet(pool, now=replied_at + 2 * SILENCE, silence=SILENCE) == []
    assert await resolved_moves(pool, case_id) == [("system", "lifecycle")]


async def test_replicas_running_at_once_resolve_each_case_once(pool, gmail):
    _, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    now = await last_reply_at(pool, case_id) + SILENCE
    runs = await asyncio.gather(*(resolve_quiet(pool, now=now, silence=SILENCE) for _ in range(4)))
    assert sorted(len(r) for r in runs) == [0, 0, 0, 1]
    assert await resolved_moves(pool, case_id) == [("system", "lifecycle")]


async def test_a_customer_reply_before_the_window_keeps_the_case_open(pool, gmail):
    fake, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    replied_at = await last_reply_at(pool, case_id)
    intake = await intake_email(pool, customer_reply(fake))
    assert intake.case_id == case_id
    assert await resolve_quiet(pool, now=replied_at + 3 * SILENCE, silence=SILENCE) == []
    row = await case_row(pool, case_id)
    assert row["status"] == "human_owned" and row["resolved_at"] is None and row["resolution_type"] is None


async def test_a_customer_message_after_the_last_reply_breaks_the_silence(pool, gmail):
    """Even on a case left `replied` (a message appended without a move), silence counts from the
    last reply and any customer message after it."""
    _, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    replied_at = await last_reply_at(pool, case_id)
    await pool.execute("INSERT INTO case_interactions (case_id, actor_type, interaction_type, message, created_at) "
                       "VALUES ($1, 'customer', 'webhook_in', 'one more thing', $2)",
                       case_id, replied_at + timedelta(hours=1))
    assert await resolve_quiet(pool, now=replied_at + SILENCE + timedelta(hours=2), silence=SILENCE) == []
    assert (await case_row(pool, case_id))["status"] == "replied"


async def test_after_resolution_a_customer_reply_reopens_the_case(pool, gmail):
    fake, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    await resolve_quiet(pool, now=await last_reply_at(pool, case_id) + SILENCE, silence=SILENCE)
    assert (await case_row(pool, case_id))["status"] == "resolved"
    intake = await intake_email(pool, customer_reply(fake, "Sorry, it never came."))
    assert intake.case_id == case_id
    row = await case_row(pool, case_id)
    assert row["status"] == "human_owned" and row["resolved_at"] is None and row["resolution_type"] is None
    moves = await pool.fetch("SELECT from_status, to_status FROM case_interactions WHERE case_id = $1 "
                             "AND interaction_type = 'status_change' ORDER BY created_at", case_id)
    assert [tuple(m) for m in moves][-2:] == [("resolved", "reopened"), ("reopened", "human_owned")]


async def test_imported_replied_cases_without_a_reply_of_ours_are_left_alone(pool):
    await pool.execute("ALTER TABLE cases DISABLE TRIGGER cases_initial_status")
    customer = await pool.fetchval("INSERT INTO customers (email) VALUES ('old@example.com') RETURNING customer_id")
    case_id = await pool.fetchval(
        "INSERT INTO cases (customer_id, channel, description, status, created_at) "
        "VALUES ($1, 'import', 'old case', 'replied', now() - interval '90 days') RETURNING case_id", customer)
    assert await resolve_quiet(pool, now=datetime.now(UTC), silence=SILENCE) == []
    assert (await case_row(pool, case_id))["status"] == "replied"


def test_the_quiet_resolve_job_is_scheduled_hourly():
    plan = {s.job: s for s in schedules(Settings(_env_file=None), gmail=False)}
    hourly = plan["case.resolve_quiet"]
    at = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    assert hourly.period_of(at) == hourly.period_of(at + timedelta(minutes=50))
    assert hourly.period_of(at) != hourly.period_of(at + timedelta(hours=1))


# ---- resolution types -----------------------------------------------------------------------------------


async def resolution_of(pool, case_id: UUID) -> str:
    return (await case_row(pool, case_id))["resolution_type"]


async def test_an_approved_ai_draft_resolves_as_collaborative(pool, gmail):
    _, mailbox = gmail
    case_id = await approved_case(pool, mailbox)
    now = await last_reply_at(pool, case_id) + SILENCE
    assert [r.resolution_type for r in await resolve_quiet(pool, now=now, silence=SILENCE)] == ["collaborative"]


async def test_an_edited_ai_draft_resolves_as_collaborative(pool, gmail):
    _, mailbox = gmail
    case_id = await approved_case(pool, mailbox, ReviewAction.EDIT, reply="Hi Mia, it is on its way.")
    now = await last_reply_at(pool, case_id) + SILENCE
    assert [r.resolution_type for r in await resolve_quiet(pool, now=now, silence=SILENCE)] == ["collaborative"]


async def test_a_rejected_draft_answered_by_a_person_resolves_as_human(pool, gmail):
    _, mailbox = gmail
    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)
    assert (await review.apply(pool, SENDER, click(ReviewAction.REJECT, "U0BOB", case_id, draft_id,
                                                   reason="inaccurate"))).done
    assert (await review.apply(pool, SENDER, click(ReviewAction.EDIT, "U0BOB", case_id, draft_id,
                                                   reply="Hi Mia, I have reordered your card."))).done
    assert await send_all(pool, mailbox) == 1
    now = await last_reply_at(pool, case_id) + SILENCE
    assert [r.resolution_type for r in await resolve_quiet(pool, now=now, silence=SILENCE)] == ["human"]


async def test_mark_resolved_records_the_reviewer_and_the_type(pool):
    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)
    assert (await review.apply(pool, SENDER, click(ReviewAction.TAKE, "U0BOB", case_id, draft_id))).done
    first = await review.apply(pool, SENDER, click(ReviewAction.RESOLVE, "U0BOB", case_id, draft_id))
    second = await review.apply(pool, SENDER, click(ReviewAction.RESOLVE, "U0ALICE", case_id, draft_id))
    assert first.done and not second.done and second.winner == "U0BOB"
    assert await resolution_of(pool, case_id) == "human"  # nothing went out: a person dealt with it
    assert await resolved_moves(pool, case_id) == [("reviewer", "U0BOB")]
    assert await pool.fetchval("SELECT count(*) FROM reply_outbox") == 0


async def test_mark_resolved_on_a_case_awaiting_review_is_refused(pool):
    case_id, draft_id = await review_case(pool)
    result = await review.apply(pool, SENDER, click(ReviewAction.RESOLVE, "U0BOB", case_id, draft_id))
    assert not result.done and result.state == "awaiting_review"
    assert (await case_row(pool, case_id))["status"] == "awaiting_review"


async def test_an_escalated_case_resolves_as_escalated(pool):
    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)
    tracker = Tracker()
    assert (await review.apply(pool, SENDER, click(ReviewAction.ESCALATE, "U0BOB", case_id, draft_id),
                               tracker)).done
    assert (await review.apply(pool, SENDER, click(ReviewAction.RESOLVE, "U0ALICE", case_id, draft_id))).done
    assert await resolution_of(pool, case_id) == "escalated"


async def test_the_rule_is_the_one_the_resolve_function_applies(pool, gmail):
    """A reviewer's Mark resolved on an auto-sent case: the answer was the AI's, so self_service."""
    _, mailbox = gmail
    case_id = await auto_sent_case(pool, mailbox)
    async with transaction(pool) as conn:
        kind = await lifecycle_db.resolve(conn, case_id, actor_type=lifecycle_db.ActorType.REVIEWER,
                                          actor_id="U0ALICE", note="marked resolved")
    assert kind == "self_service" == await resolution_of(pool, case_id)


# ---- first response -------------------------------------------------------------------------------------


async def test_first_response_is_the_first_reply_that_went_out(pool, gmail):
    fake, mailbox = gmail
    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)
    assert (await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U0ALICE", case_id, draft_id))).done
    assert (await case_row(pool, case_id))["first_response_at"] is None  # queued is not sent
    assert await send_all(pool, mailbox) == 1
    first = (await case_row(pool, case_id))["first_response_at"]
    assert first is not None and first >= await last_reply_at(pool, case_id) - timedelta(seconds=1)

    await intake_email(pool, customer_reply(fake))  # reopened: a person answers again
    assert (await review.apply(pool, SENDER, click(ReviewAction.EDIT, "U0ALICE", case_id, draft_id,
                                                   reply="Hi Mia, a new card is on its way."))).done
    assert await send_all(pool, mailbox) == 1
    assert len(fake.sent) == 2
    assert (await case_row(pool, case_id))["first_response_at"] == first


async def test_a_reply_the_channel_refuses_sets_no_first_response(pool):
    class Refusing:
        address = "support@northwind.example"

        async def send(self, raw: bytes, thread_id: str | None) -> str:
            raise DeliveryRefused("mailbox does not exist")

        async def find_sent(self, message_id: str) -> str | None:
            return None

    case_id, draft_id = await review_case(pool)
    async with pool.acquire() as conn:
        await review.prepare_card(conn, case_id, 2)
    await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U0ALICE", case_id, draft_id))
    outbox_id = await pool.fetchval("SELECT outbox_id FROM reply_outbox")
    assert await send_reply(pool, Channels(Refusing(), None), SENDER, outbox_id) == SendResult.REFUSED
    row = await case_row(pool, case_id)
    assert row["first_response_at"] is None and row["status"] == "awaiting_review"
