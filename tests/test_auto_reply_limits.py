"""Auto-responders must not loop with the desk. The whole loop runs through the real job handlers:
Gmail sync -> triage -> draft -> send -> the correspondent's auto-reply arrives as new mail -> ...
against a mailbox whose every correspondent auto-replies (tests/fakes/mailbox.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from email.message import EmailMessage

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from pipelines.drafting.send_policy import PolicyInput, decide
from pipelines.drafting.step import draft_case
from pipelines.jobs import JobName
from pipelines.ports import Draft, DraftInput
from pipelines.replies.outbox import approve_draft
from tests.fakes.mailbox import AutoReplyMailbox
from tests.support.cases import POLICY, drafting_case, import_demo_kb
from tests.support.jobs import run_jobs
from tests.support.triage import TAXONOMY, ScriptedLocal

LIMIT = 5
CUSTOMER = "dana@example.net"


class CitingDrafter:
    """A confident drafter that cites the first article retrieved, as Claude does on a good day."""

    name = "claude"
    wants_house_examples = False

    async def draft(self, item: DraftInput) -> Draft:
        return Draft(reply="Hi,\n\nNew cards arrive within 5-7 working days.\n\nBest regards",
                     cited=[item.articles[0].article_id] if item.articles else [], dropped=[], confidence=0.93,
                     questions=[], risks=[], drafter="claude", model="scripted")


def first_mail() -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = CUSTOMER, AutoReplyMailbox.address, "Card not here"
    m["Message-ID"] = "<first@mail.example.net>"
    m.set_content("I ordered my card ten days ago and it still has not arrived. Where is my card?")
    return bytes(m)


async def desk(pool, make_settings, mailbox: AutoReplyMailbox) -> Deps:
    await import_demo_kb(pool)
    settings = make_settings(support_email=mailbox.address, auto_replies_per_customer_per_day=LIMIT)
    return Deps(settings=settings, pool=pool, metrics=Metrics(), taxonomy=TAXONOMY, triager=ScriptedLocal(0.95),
                mailbox=mailbox, drafter=CitingDrafter())


async def run_until_quiet(deps: Deps, mailbox: AutoReplyMailbox, rounds: int = 3 * LIMIT) -> int:
    """Rounds of sync, triage, draft and send until a round brings no new mail; returns the rounds run."""
    for n in range(1, rounds + 1):
        before = len(mailbox.inbox)
        await job_handlers(deps)[JobName.GMAIL_SYNC](b"{}")
        for job in (JobName.TRIAGE, JobName.DRAFT, JobName.SEND_REPLY):
            await run_jobs(deps, job)
        if len(mailbox.inbox) == before:
            return n
    raise AssertionError(f"still mailing after {rounds} rounds: {len(mailbox.sent)} sent")


def auto_submitted(message: EmailMessage) -> str:
    return str(message["Auto-Submitted"])


async def test_an_unmarked_unthreaded_auto_responder_gets_at_most_the_daily_limit(pool, make_settings):
    mailbox = AutoReplyMailbox("bare")
    mailbox.receive(first_mail())
    deps = await desk(pool, make_settings, mailbox)

    await run_until_quiet(deps, mailbox)

    assert len(mailbox.sent) == LIMIT
    assert {str(m["To"]) for m in mailbox.sent} == {CUSTOMER}
    assert {auto_submitted(m) for m in mailbox.sent} == {"auto-replied"}  # RFC 3834: do not answer this
    cases = await pool.fetch("SELECT c.case_id, c.status, d.decision, d.decision_reason FROM cases c "
                             "JOIN case_drafts d USING (case_id) ORDER BY c.created_at")
    assert [c["decision"] for c in cases] == ["auto_send"] * LIMIT + ["review"]
    assert [c["status"] for c in cases] == ["replied"] * LIMIT + ["awaiting_review"]
    assert cases[-1]["decision_reason"].startswith(
        f"{LIMIT} automatic replies went to this customer in the last 24 hours, the limit "
        f"(AUTO_REPLIES_PER_CUSTOMER_PER_DAY={LIMIT})")
    # Mail the desk took is labelled in the inbox: the question and the 5 auto-replies, each a case.
    assert len(mailbox.inbox) == LIMIT + 1 and mailbox.labels["CX/processed"] == {m.id for m in mailbox.inbox}

    # A person may still answer: an approved reply is not limited, and says it is not automatic.
    approval = await approve_draft(pool, await pool.fetchval(
        "SELECT draft_id FROM case_drafts WHERE case_id = $1", cases[-1]["case_id"]), "U_REVIEWER", deps.sender)
    assert approval.outbox_id is not None
    await run_jobs(deps, JobName.SEND_REPLY)
    assert len(mailbox.sent) == LIMIT + 1 and auto_submitted(mailbox.sent[-1]) == "no"


async def test_a_marked_auto_reply_is_never_answered(pool, make_settings):
    mailbox = AutoReplyMailbox("marked")
    mailbox.receive(first_mail())
    deps = await desk(pool, make_settings, mailbox)

    await run_until_quiet(deps, mailbox)

    assert len(mailbox.sent) == 1 and len(mailbox.inbox) == 2
    assert await pool.fetchval("SELECT count(*) FROM cases") == 1
    seen = await pool.fetchrow("SELECT outcome, reason, case_id FROM gmail_messages_seen WHERE gmail_message_id = $1",
                               mailbox.inbox[1].id)
    assert dict(seen) == {"outcome": "skipped", "reason": "auto_reply: Auto-Submitted: auto-replied", "case_id": None}
    assert mailbox.inbox[1].id not in mailbox.labels["CX/processed"]


async def test_an_unmarked_threaded_auto_reply_goes_to_a_person_not_back_out(pool, make_settings):
    mailbox = AutoReplyMailbox("threaded")
    mailbox.receive(first_mail())
    deps = await desk(pool, make_settings, mailbox)

    await run_until_quiet(deps, mailbox)

    assert len(mailbox.sent) == 1
    (case,) = await pool.fetch("SELECT status FROM cases")
    assert case["status"] == "human_owned"  # the reply reopened its case, and reopened cases go to a person


async def test_two_rfc_3834_auto_responders_do_not_answer_each_other(pool, make_settings):
    mailbox = AutoReplyMailbox("bare", honours_auto_submitted=True)
    mailbox.receive(first_mail())
    deps = await desk(pool, make_settings, mailbox)

    await run_until_quiet(deps, mailbox)

    assert len(mailbox.sent) == 1 and len(mailbox.inbox) == 1  # ours said Auto-Submitted, theirs stayed silent
    assert auto_submitted(mailbox.sent[0]) == "auto-replied"


async def test_concurrent_drafts_for_one_customer_take_the_limit_once_and_it_is_a_rolling_24_hours(pool):
    await import_demo_kb(pool)
    cases = [await drafting_case(pool, confidence=0.95, message_id=f"<q{n}@mail.example.com>") for n in range(8)]
    policy = replace(POLICY, auto_replies_per_day=LIMIT)
    drafter = CitingDrafter()

    outcomes = await asyncio.gather(*(draft_case(pool, drafter, None, TAXONOMY, policy, c) for c in cases))

    assert sorted(o.decision.auto_send for o in outcomes) == [False] * 3 + [True] * LIMIT
    assert await pool.fetchval("SELECT count(*) FROM reply_outbox WHERE approved_by IS NULL") == LIMIT

    await pool.execute("UPDATE reply_outbox SET created_at = created_at - interval '24 hours 1 minute'")
    later = await drafting_case(pool, confidence=0.95, message_id="<next-day@mail.example.com>")
    outcome = await draft_case(pool, drafter, None, TAXONOMY, policy, later)
    assert outcome is not None and outcome.decision.auto_send, outcome.decision.reason


def test_the_limit_is_the_last_rule_and_absent_without_a_limit():
    item = PolicyInput(triage_confidence=0.95, draft_confidence=0.92, category="card_delivery",
                       category_auto_send=True, tier="standard", valid_citations=1, drafter="claude",
                       auto_replies_today=LIMIT)
    assert decide(item, high=0.85, always_review_tiers=frozenset()).auto_send
    assert not decide(item, high=0.85, always_review_tiers=frozenset(), max_auto_replies=LIMIT).auto_send
    assert decide(replace(item, auto_replies_today=LIMIT - 1), high=0.85, always_review_tiers=frozenset(),
                  max_auto_replies=LIMIT).auto_send
    # A draft that fails an earlier rule shows that rule, not the limit.
    low = decide(replace(item, draft_confidence=0.5), high=0.85, always_review_tiers=frozenset(),
                 max_auto_replies=LIMIT)
    assert low.reason.startswith("draft confidence 0.50")

