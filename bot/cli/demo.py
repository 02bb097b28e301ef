"""`cx demo`: the product on the embedded defaults, offline: history, a knowledge base, a sample inbox,
triage, drafts and the auto-send decision."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import asyncpg
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from bot.ai import build_drafter, build_embedder, build_triager
from bot.services.review import SlackReviewService
from bot.settings import PROJECT_ROOT, Settings
from bot.slack.recorder import RecordingSlack, block_kit_builder_link
from db import drafts as drafts_db
from db import examples as examples_db
from db import kb as kb_db
from db import triage_models
from db.cases import CaseStatus, ids_in_status, list_cases
from db.pool import transaction
from pipelines.drafting.step import DraftPolicy, draft_case
from pipelines.intake.email import EmailSource, intake_email
from pipelines.kb.documents import collect, read_file
from pipelines.kb.ingest import ingest
from pipelines.replies.outbox import Sender
from pipelines.taxonomy import Taxonomy, load_taxonomy
from pipelines.triage.history import read_history
from pipelines.triage.local.triager import train_local
from pipelines.triage.routing import Thresholds
from pipelines.triage.step import triage_case

BANKING_TAXONOMY = PROJECT_ROOT / "prompts" / "taxonomy-banking.yaml"
FULL_HISTORY = PROJECT_ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
SAMPLE_HISTORY = PROJECT_ROOT / "samples" / "history" / "banking77-sample.csv"
INBOX = PROJECT_ROOT / "samples" / "inbox"
KNOWLEDGE_BASE = PROJECT_ROOT / "samples" / "kb"
DEMO_SUPPORT_ADDRESS = "support@demo-bank.example"


async def run_demo(settings: Settings, pool: asyncpg.Pool, out: Console, *, inbox: Path = INBOX,
                   slack_out: Path | None = None) -> None:
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

    articles = [a for path, root in collect([KNOWLEDGE_BASE]) for a in read_file(path, root)]
    kb = await ingest(pool, articles, embedder)
    out.print(f"Knowledge base: {len(articles)} articles from {KNOWLEDGE_BASE} "
              f"({kb.changes['created']} new, {kb.changes['updated']} changed, {kb.chunks_embedded} chunks embedded).")

    own = {DEMO_SUPPORT_ADDRESS}
    outcomes: dict[str, int] = {}
    for path in sorted(inbox.glob("*.eml")):
        result = await intake_email(pool, path.read_bytes(), source=EmailSource(channel="import"),
                                    own_addresses=own, reopen_window=settings.reopen_window)
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    out.print("Inbox: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + f" ({inbox}).")

    triager = build_triager(settings, pool, taxonomy, embedder)
    thresholds = Thresholds(settings.confidence_threshold_high, settings.confidence_threshold_medium)
    async with pool.acquire() as conn:
        waiting = await ids_in_status(conn, CaseStatus.NEW)
    for case_id in waiting:
        await triage_case(pool, triager, taxonomy, thresholds, case_id)

    drafter = build_drafter(settings)
    policy = DraftPolicy(settings.confidence_threshold_high, settings.always_review,
                         Sender(DEMO_SUPPORT_ADDRESS, settings.company_name))
    async with pool.acquire() as conn:
        drafting = await ids_in_status(conn, CaseStatus.DRAFTING)
    for case_id in drafting:
        await draft_case(pool, drafter, embedder, taxonomy, policy, case_id)

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
    await _show_drafts(pool, [c["case_id"] for c in cases], out)
    if slack_out is not None:
        await _record_slack(settings, pool, taxonomy, policy.sender, [c["case_id"] for c in cases], slack_out, out)


async def _record_slack(settings: Settings, pool: asyncpg.Pool, taxonomy: Taxonomy, sender: Sender,
                        case_ids: list[UUID], slack_out: Path, out: Console) -> None:
    """The review cards the product would post, through the real card job, with every Slack call
    recorded to `slack_out` instead of sent."""
    recorder = RecordingSlack()
    review = SlackReviewService(pool, recorder, settings, sender, taxonomy=taxonomy)
    for case_id in case_ids:
        await review.post_card(case_id)
    written = recorder.write(slack_out)
    out.print(f"Slack: {len(written)} calls written to {slack_out} (one JSON file each, and summary.json).")
    for call in recorder.calls:
        if call["method"] == "chat.postMessage" and call["args"].get("blocks"):
            out.print(f"  {escape(call['args'].get('text', ''))}: {block_kit_builder_link(call['args']['blocks'])}",
                      soft_wrap=True)


async def _show_drafts(pool: asyncpg.Pool, case_ids: list[UUID], out: Console) -> None:
    """Per drafted case: the knowledge-base hits, the draft, and what the auto-send policy decided."""
    async with pool.acquire() as conn:
        for case_id in case_ids:
            draft = await drafts_db.latest_draft(conn, case_id)
            if draft is None:
                continue
            case = await drafts_db.load_case(conn, case_id)
            assert case is not None  # the draft's case: case_drafts references cases
            hits = await kb_db.last_search_for_case(conn, case_id)
            lines = ["[bold]Knowledge base[/]"]
            lines += [f"  {i}. {escape(title)} ({score:.4f})" for i, (title, _, score) in enumerate(hits[:3], 1)] or ["  none"]
            verdict = "[green]auto-send[/]" if draft.decision == "auto_send" else "[yellow]review[/]"
            lines += ["", f"[bold]Decision[/] {verdict}: {escape(draft.decision_reason)}", "",
                      f"[bold]Draft[/] ({draft.drafter}, confidence {draft.confidence:.2f})", escape(draft.body)]
            title = f"{case.ref} · {case.subject or case.description[:50]} · {case.category}/{case.subcategory}"
            out.print(Panel("\n".join(lines), title=escape(title), title_align="left"))
