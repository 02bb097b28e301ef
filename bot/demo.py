"""`cx demo`: the product on the embedded defaults, offline: history, a sample inbox, triage."""

from __future__ import annotations


import asyncpg
from rich.console import Console
from rich.table import Table

from bot.ai import build_embedder, build_triager
from bot.settings import PROJECT_ROOT, Settings
from db import examples as examples_db
from db import triage_models
from db.cases import CaseStatus, ids_in_status, list_cases
from db.pool import transaction
from pipelines.email_intake import EmailSource, intake_email
from pipelines.history_import import read_history
from pipelines.local_triage import train_local
from pipelines.routing import Thresholds
from pipelines.taxonomy import load_taxonomy
from pipelines.triage import triage_case

BANKING_TAXONOMY = PROJECT_ROOT / "prompts" / "taxonomy-banking.yaml"
FULL_HISTORY = PROJECT_ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
SAMPLE_HISTORY = PROJECT_ROOT / "samples" / "history" / "banking77-sample.csv"
INBOX = PROJECT_ROOT / "samples" / "inbox"
DEMO_SUPPORT_ADDRESS = "support@demo-bank.example"


async def run_demo(settings: Settings, pool: asyncpg.Pool, out: Console) -> None:
    taxonomy = load_taxonomy(BANKING_TAXONOMY)
    history = FULL_HISTORY if FULL_HISTORY.exists() else SAMPLE_HISTORY
    rows = read_history(history, taxonomy)
    async with transaction(pool) as conn:
        added = await examples_db.add_examples(
            conn, [(r.text, r.category, r.subcategory, r.priority) for r in rows], source="import"
        )
    out.print(f"History: {len(rows)} labelled BANKING77 requests from {history} ({added} new).")

    embedder = build_embedder(settings)
    async with pool.acquire() as conn:
        has_model = await triage_models.newest_id(conn) is not None
    if added or not has_model:
        out.print(f"Training the local triager ({'embeddings: ' + embedder.model if embedder else 'no embeddings'})…")
        report = await train_local(pool, embedder)
        out.print(f"Trained on {report.examples} examples, {report.labels} labels, in {report.seconds:.0f} s.")

    own = {DEMO_SUPPORT_ADDRESS}
    outcomes: dict[str, int] = {}
    for path in sorted(INBOX.glob("*.eml")):
        result = await intake_email(pool, path.read_bytes(), source=EmailSource(channel="import"),
                                    own_addresses=own, reopen_window=settings.reopen_window)
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    out.print("Inbox: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + f" ({INBOX}).")

    triager = build_triager(settings, pool, taxonomy, embedder)
    thresholds = Thresholds(settings.confidence_threshold_high, settings.confidence_threshold_medium)
    async with pool.acquire() as conn:
        waiting = await ids_in_status(conn, CaseStatus.NEW)
    for case_id in waiting:
        await triage_case(pool, triager, taxonomy, thresholds, case_id)

    async with pool.acquire() as conn:
        cases = await list_cases(conn)
    table = Table("case", "customer", "subject", "category / subcategory", "conf.", "priority", "route", "status",
                  title="Cases (offline triage: local model, no API keys)")
    for c in cases:
        label = f"{c['category']} / {c['subcategory']}" if c["category"] else "-"
        conf = f"{float(c['confidence_score']):.2f}" if c["confidence_score"] is not None else "-"
        table.add_row(f"CX-{c['short_id']}", c["customer_email"], (c["subject"] or "")[:40], label, conf,
                      c["priority"] or "-", c["route"] or "-", c["status"])
    out.print(table)


