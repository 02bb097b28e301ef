"""Cases at each stage, in a test's database: new, triaged for drafting, drafted for review; the demo
knowledge base they draw on; the reply sender and draft policy; and the jobs queued meanwhile."""

from __future__ import annotations

import json
import uuid

from db import intake as intake_db
from db.pool import transaction
from pipelines.drafting.drafters import ExtractiveDrafter, FallbackDrafter
from pipelines.drafting.step import DraftPolicy, draft_case
from pipelines.intake.webhook import intake_webhook
from pipelines.kb.documents import collect, read_file
from pipelines.kb.ingest import IngestReport, ingest
from pipelines.models import IntakeRequest
from pipelines.replies.outbox import Sender
from pipelines.triage.step import triage_case
from tests.cli_runner import ROOT
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal

SENDER = Sender("support@northwind.example", "Northwind Bank", "callback-secret")
POLICY = DraftPolicy(0.85, frozenset({"enterprise"}), SENDER)


async def new_case(pool, text="My transfer to my landlord has not arrived and I am furious.", **extra):
    request = IntakeRequest(customer_email="eve@example.com", description=text, **extra)
    return (await intake_webhook(pool, request, replay_key="k-" + text[:20])).case_id


async def import_demo_kb(pool, embedder=None) -> IngestReport:
    articles = [a for path, root in collect([ROOT / "samples" / "kb"]) for a in read_file(path, root)]
    return await ingest(pool, articles, embedder)


async def drafting_case(pool, *, confidence: float, label: str = "card_arrival", tier: str = "standard",
                        text: str = "I ordered my card ten days ago and it still has not arrived. Where is it?",
                        message_id: str = "<q1@mail.example.com>"):
    async with transaction(pool) as conn:
        stored = await intake_db.create_case(
            conn, customer_email="mia@example.com", customer_name="Mia Wong", channel="email",
            subject="Card not here", description=text, interaction_type="email_in",
            email_message_id=message_id, gmail_thread_id=None,
        )
        await conn.execute("UPDATE customers SET account_tier = $1 WHERE lower(email) = 'mia@example.com'", tier)
    await triage_case(pool, ScriptedLocal(confidence, label), TAXONOMY, THRESHOLDS, stored.case_id)
    return stored.case_id


async def review_case(pool) -> tuple[uuid.UUID, uuid.UUID]:
    await import_demo_kb(pool)
    case_id = await drafting_case(pool, confidence=0.7)
    outcome = await draft_case(pool, FallbackDrafter(None, ExtractiveDrafter(company="Northwind Bank", high=0.85)),
                               None, TAXONOMY, POLICY, case_id)
    assert outcome is not None
    return case_id, outcome.draft_id


async def jobs_queued(pool) -> list[tuple[str, dict]]:
    rows = await pool.fetch("SELECT entrypoint, payload FROM pgqueuer ORDER BY id")
    return [(r["entrypoint"], json.loads(bytes(r["payload"]))) for r in rows]
