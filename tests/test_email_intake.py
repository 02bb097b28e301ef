from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from db.cases import ActorType, CaseStatus, transition
from db.pool import transaction
from pipelines.intake.email import EmailSource, intake_email
from pipelines.models import IntakeOutcome

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "inbox"


def mail(subject: str, body: str, *, msg_id: str, sender="bob@example.com", in_reply_to=None) -> bytes:
    m = EmailMessage()
    m["From"] = f"Bob <{sender}>"
    m["To"] = "support@demo-bank.example"
    m["Subject"] = subject
    m["Message-ID"] = msg_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    return bytes(m)


async def table_counts(pool):
    async with pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("cases", "case_interactions", "pgqueuer")}


async def test_the_sample_inbox_becomes_cases_threads_and_skips(pool):
    outcomes = {}
    for path in sorted(SAMPLES.glob("*.eml")):
        outcomes[path.name] = await intake_email(pool, path.read_bytes(), own_addresses={"support@demo-bank.example"})
    kinds = [o.outcome for o in outcomes.values()]
    assert kinds.count(IntakeOutcome.CREATED) == 9
    assert kinds.count(IntakeOutcome.APPENDED) == 1
    assert kinds.count(IntakeOutcome.SKIPPED) == 2
    follow_up = outcomes["07-transfer-not-received-follow-up.eml"]
    assert follow_up.outcome is IntakeOutcome.APPENDED
    assert follow_up.case_id == outcomes["06-transfer-not-received.eml"].case_id
    assert "bounce" in outcomes["12-bounce-mailer-daemon.eml"].reason
    before = await table_counts(pool)
    assert before == {"cases": 9, "case_interactions": 10, "pgqueuer": 9}

    # The same inbox again changes nothing.
    for path in sorted(SAMPLES.glob("*.eml")):
        again = await intake_email(pool, path.read_bytes(), own_addresses={"support@demo-bank.example"})
        assert again.outcome in (IntakeOutcome.DUPLICATE, IntakeOutcome.SKIPPED)
    assert await table_counts(pool) == before


async def test_prompt_injection_is_stored_as_plain_data(pool):
    raw = (SAMPLES / "09-refund-not-showing.eml").read_bytes()
    result = await intake_email(pool, raw)
    async with pool.acquire() as conn:
        description = await conn.fetchval("SELECT description FROM cases WHERE case_id = $1", result.case_id)
        status = await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", result.case_id)
    assert "Ignore previous instructions" in description
    assert status == "new"


async def test_a_reply_to_a_recently_resolved_case_reopens_it(pool):
    first = await intake_email(pool, mail("Card blocked", "My card is blocked.", msg_id="<a1@example.com>"))
    async with transaction(pool) as conn:
        for to in (CaseStatus.TRIAGED, CaseStatus.HUMAN_OWNED, CaseStatus.RESOLVED):
            await transition(conn, first.case_id, to, actor_type=ActorType.SYSTEM, actor_id="test")
    reply = await intake_email(
        pool, mail("Re: Card blocked", "Still blocked!", msg_id="<a2@example.com>", in_reply_to="<a1@example.com>")
    )
    assert reply.outcome is IntakeOutcome.APPENDED and reply.case_id == first.case_id
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", first.case_id)
        moves = await conn.fetch(
            "SELECT to_status FROM case_interactions WHERE case_id = $1 AND interaction_type = 'status_change' "
            "ORDER BY created_at", first.case_id,
        )
        jobs = await conn.fetch("SELECT entrypoint FROM pgqueuer ORDER BY id")
    assert status == "human_owned"
    assert [m["to_status"] for m in moves][-2:] == ["reopened", "human_owned"]
    assert [j["entrypoint"] for j in jobs] == ["case.triage", "case.review_card"]


async def test_a_reply_after_the_reopen_window_opens_a_new_case(pool):
    first = await intake_email(pool, mail("Card blocked", "My card is blocked.", msg_id="<b1@example.com>"))
    async with transaction(pool) as conn:
        for to in (CaseStatus.TRIAGED, CaseStatus.HUMAN_OWNED, CaseStatus.RESOLVED):
            await transition(conn, first.case_id, to, actor_type=ActorType.SYSTEM, actor_id="test")
    later = datetime.now(UTC) + timedelta(days=30)
    reply = await intake_email(
        pool,
        mail("Re: Card blocked", "Blocked again.", msg_id="<b2@example.com>", in_reply_to="<b1@example.com>"),
        now=later,
    )
    assert reply.outcome is IntakeOutcome.CREATED and reply.case_id != first.case_id


async def test_gmail_thread_id_links_a_reply_without_headers(pool):
    first = await intake_email(pool, mail("PIN", "PIN blocked", msg_id="<c1@example.com>"),
                               source=EmailSource(gmail_message_id="g1", gmail_thread_id="t-77"))
    second = await intake_email(pool, mail("PIN", "any news?", msg_id="<c2@example.com>"),
                                source=EmailSource(gmail_message_id="g2", gmail_thread_id="t-77"))
    assert second.outcome is IntakeOutcome.APPENDED and second.case_id == first.case_id


async def test_a_message_without_message_id_is_imported_once(pool):
    raw = b"From: carl@example.org\r\nSubject: Top-up\r\n\r\nMy top-up is pending.\r\n"
    first = await intake_email(pool, raw, source=EmailSource(channel="import"))
    second = await intake_email(pool, raw, source=EmailSource(channel="import"))
    assert first.outcome is IntakeOutcome.CREATED
    assert second.outcome is IntakeOutcome.DUPLICATE and second.case_id == first.case_id
