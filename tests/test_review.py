"""Workflow 4's decisions on the database: approve, reject, take; one winner of two at once; a
redelivered click queues nothing; each decision leaves its feedback and review row."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from bot.slack.click_inbox import ClickInbox
from pipelines.jobs import ActionRequest, ReviewAction
from pipelines.ports import IssueRef
from pipelines.review import decisions as review
from tests.support.cases import SENDER, drafting_case, import_demo_kb, jobs_queued, review_case
from tests.support.review import click


async def facts(pool, case_id):
    async with pool.acquire() as conn:
        opened = await review.prepare_card(conn, case_id, timeout_hours=2)
    assert opened is not None and opened.review_status == "pending"
    return opened


async def test_a_card_opens_one_pending_review_with_the_drafts_reason(pool):
    case_id, draft_id = await review_case(pool)
    first = await facts(pool, case_id)
    again = await facts(pool, case_id)
    assert first.review_id == again.review_id and first.draft_id == draft_id
    row = await pool.fetchrow("SELECT draft, review_reason, due_at - created_at AS due FROM review_queue")
    assert row["draft"] == first.draft and "extractive" in row["review_reason"]
    assert row["due"].total_seconds() == 2 * 3600 or abs(row["due"].total_seconds() - 7200) < 5
    assert first.citations and first.citations[0][1].startswith("https://")


async def test_approve_queues_the_reply_and_records_the_decision(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    result = await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id))
    assert result.done
    review_row = await pool.fetchrow("SELECT status, reviewed_by FROM review_queue")
    feedback = await pool.fetch("SELECT feedback_type, reviewer, field FROM agent_feedback")
    assert tuple(review_row) == ("approved", "U_ALICE")
    assert [tuple(f) for f in feedback] == [("approval", "U_ALICE", "draft")]
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "sending"
    assert [j for j, _ in await jobs_queued(pool)].count("reply.send") == 1


async def test_approve_and_reject_at_once_have_one_winner_and_the_other_is_told(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    approve = click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id)
    reject = click(ReviewAction.REJECT, "U_BOB", case_id, draft_id, reason="tone")
    results = await asyncio.gather(review.apply(pool, SENDER, approve), review.apply(pool, SENDER, reject))
    assert sorted(r.done for r in results) == [False, True]
    winner = "U_ALICE" if results[0].done else "U_BOB"
    loser = results[1] if results[0].done else results[0]
    assert loser.winner == winner
    decided = await pool.fetch("SELECT status, reviewed_by FROM review_queue")
    assert len(decided) == 1 and decided[0]["reviewed_by"] == winner
    outbox = await pool.fetchval("SELECT count(*) FROM reply_outbox")
    assert outbox == (1 if winner == "U_ALICE" else 0)
    assert await pool.fetchval("SELECT count(*) FROM agent_feedback") == 1


async def test_reject_hands_the_case_to_the_reviewer_and_sends_nothing(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    request = click(ReviewAction.REJECT, "U_BOB", case_id, draft_id, reason="inaccurate", note="wrong card")
    assert (await review.apply(pool, SENDER, request)).done
    case = await pool.fetchrow("SELECT status, owner_slack_user_id FROM cases WHERE case_id = $1", case_id)
    assert tuple(case) == ("human_owned", "U_BOB")
    feedback = await pool.fetchrow("SELECT feedback_type, comment, ai_value FROM agent_feedback")
    assert feedback["feedback_type"] == "rejection" and feedback["comment"] == "inaccurate: wrong card"
    assert feedback["ai_value"].startswith("Hi Mia,")
    assert await pool.fetchval("SELECT count(*) FROM reply_outbox") == 0
    again = await review.apply(pool, SENDER, click(ReviewAction.REJECT, "U_CAROL", case_id, draft_id))
    assert not again.done and again.winner == "U_BOB" and again.winner_action == "rejected"


async def test_take_assigns_the_first_clicker_only(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    first = await review.apply(pool, SENDER, click(ReviewAction.TAKE, "U_ALICE", case_id, draft_id))
    second = await review.apply(pool, SENDER, click(ReviewAction.TAKE, "U_BOB", case_id, draft_id))
    assert first.done and not second.done and second.winner == "U_ALICE"
    case = await pool.fetchrow("SELECT status, owner_slack_user_id FROM cases WHERE case_id = $1", case_id)
    assert tuple(case) == ("human_owned", "U_ALICE")
    assert await pool.fetchval("SELECT assigned_to FROM review_queue") == "U_ALICE"
    # The owner may still approve the draft.
    assert (await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id))).done


async def test_a_redelivered_click_is_queued_once(pool):
    case_id, draft_id = await review_case(pool)
    request = click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id, channel="C1", ts="1.2")
    assert await review.submit_many(pool, [("click:U_ALICE:1700000000.1", request)]) == [True]
    assert await review.submit_many(pool, [("click:U_ALICE:1700000000.1", request)]) == [False]
    queued = [p for j, p in await jobs_queued(pool) if j == "review.action"]
    assert queued == [json.loads(request.payload())]
    assert ActionRequest.from_payload(request.payload()) == request


async def test_a_reviewer_writes_the_reply_for_a_case_without_a_draft(pool):
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.3)  # below MEDIUM: a person owns it, no AI draft
    async with pool.acquire() as conn:
        opened = await review.prepare_card(conn, case_id, timeout_hours=2)
    assert opened is not None and opened.status == "human_owned" and opened.draft_id is None
    request = click(ReviewAction.EDIT, "U_ALICE", case_id, None, reply="Hi Mia, I have reordered your card.")
    assert (await review.apply(pool, SENDER, request)).done
    draft = await pool.fetchrow("SELECT drafter, body FROM case_drafts WHERE case_id = $1", case_id)
    assert tuple(draft) == ("reviewer", "Hi Mia, I have reordered your card.")
    out = await pool.fetchrow("SELECT body, approved_by FROM reply_outbox")
    assert out["approved_by"] == "U_ALICE" and "I have reordered your card" in out["body"]
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "sending"


async def test_a_batch_of_clicks_is_one_commit_and_drops_repeats_within_it(pool):
    case_id, draft_id = await review_case(pool)
    take = click(ReviewAction.TAKE, "U_ALICE", case_id, draft_id)
    assert await review.submit_many(pool, [("click:seen-before", take)]) == [True]
    queued = await review.submit_many(pool, [("click:a", take), ("click:seen-before", take), ("click:b", take),
                                             ("click:a", take)])
    assert queued == [True, False, True, False]
    assert [j for j, _ in await jobs_queued(pool)].count("review.action") == 3


async def test_clicks_arriving_during_a_write_share_the_next_one():
    batches: list[int] = []

    async def write(clicks):
        batches.append(len(clicks))
        await asyncio.sleep(0.01)  # a commit
        return [not delivery_id.endswith("dup") for delivery_id, _ in clicks]

    inbox = ClickInbox(write)
    request = click(ReviewAction.TAKE, "U1", uuid.uuid4())
    results = await asyncio.gather(*(inbox.submit(f"click:{i}" + ("dup" if i % 10 == 0 else ""), request)
                                     for i in range(50)))
    assert results == [i % 10 != 0 for i in range(50)]
    assert sum(batches) == 50 and len(batches) <= 3  # one lone click, then the rest together

    async def broken(clicks):
        raise ConnectionError("database gone")

    with pytest.raises(ConnectionError):
        await ClickInbox(broken).submit("click:x", request)


async def test_after_a_reject_the_new_owner_can_still_send_their_own_reply(pool):
    case_id, draft_id = await review_case(pool)
    opened = await facts(pool, case_id)
    await review.apply(pool, SENDER, click(ReviewAction.REJECT, "U_BOB", case_id, draft_id, review_id=opened.review_id))
    late = await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id))
    assert not late.done and late.winner == "U_BOB"
    edit = click(ReviewAction.EDIT, "U_BOB", case_id, draft_id, review_id=opened.review_id, reply="Hi Mia, sorted.")
    assert (await review.apply(pool, SENDER, edit)).done
    assert (await pool.fetchval("SELECT body FROM reply_outbox")).startswith("Hi Mia, sorted.")


async def test_editing_a_draft_that_already_went_out_sends_a_new_one(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    assert (await review.apply(pool, SENDER, click(ReviewAction.APPROVE, "U_ALICE", case_id, draft_id))).done
    # The customer wrote again and a person owns the case; the card still shows the sent draft.
    await pool.execute("UPDATE reply_outbox SET status = 'sent', sent_at = now(), provider_message_id = 'gmail-1'")
    for status in ("replied", "reopened", "human_owned"):
        await pool.execute("UPDATE cases SET status = $2 WHERE case_id = $1", case_id, status)
    edit = click(ReviewAction.EDIT, "U_BOB", case_id, draft_id, reply="Hi Mia, here is an update.")
    assert (await review.apply(pool, SENDER, edit)).done
    bodies = [r["body"] for r in await pool.fetch("SELECT body FROM reply_outbox ORDER BY created_at")]
    assert len(bodies) == 2 and bodies[1].startswith("Hi Mia, here is an update.")
    assert await pool.fetchval("SELECT drafter FROM case_drafts ORDER BY created_at DESC LIMIT 1") == "reviewer"


class ForgetfulTracker:
    """A tracker whose duplicate search never sees a fresh issue (Jira's index lags creates)."""

    def __init__(self) -> None:
        self.filed: list[str] = []

    async def escalate(self, escalation):
        await asyncio.sleep(0.05)  # the HTTP round trip, during which the other click arrives
        self.filed.append(f"SUP-{len(self.filed) + 1}")
        return IssueRef(self.filed[-1], f"https://jira.example/browse/{self.filed[-1]}")


async def test_two_escalations_at_once_file_one_issue_even_if_the_tracker_cannot_tell(pool):
    case_id, draft_id = await review_case(pool)
    await facts(pool, case_id)
    tracker = ForgetfulTracker()
    results = await asyncio.gather(*(review.apply(pool, SENDER, click(ReviewAction.ESCALATE, who, case_id, draft_id),
                                                  tracker)
                                     for who in ("U_ALICE", "U_BOB")))
    assert tracker.filed == ["SUP-1"]
    assert sorted(r.done for r in results) == [False, True]
    loser = next(r for r in results if not r.done)
    case = await pool.fetchrow("SELECT status, jira_issue_key FROM cases WHERE case_id = $1", case_id)
    assert tuple(case) == ("escalated", "SUP-1") and loser.winner_action == "escalated"


async def test_a_cancelled_write_fails_its_clicks_instead_of_leaving_them_waiting():
    started = asyncio.Event()

    async def slow(clicks):
        started.set()
        await asyncio.sleep(60)
        return [True] * len(clicks)

    inbox = ClickInbox(slow)
    request = click(ReviewAction.TAKE, "U1", uuid.uuid4())
    first = asyncio.create_task(inbox.submit("click:1", request))
    await started.wait()
    second = asyncio.create_task(inbox.submit("click:2", request))  # arrives during the write
    await asyncio.sleep(0)
    inbox._flushing.cancel()  # noqa: SLF001 (what a shutdown does to the task)
    for task in (first, second):
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 1)
