"""`cx demo`: the product on the embedded defaults, offline: history, a knowledge base, a sample inbox,
triage, drafts and the auto-send decision."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from uuid import UUID

import asyncpg
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from bot.ai import build_drafter, build_embedder, build_multilingual_embedder, build_triager
from bot.cli.triage import training_outcome, training_progress
from bot.detection import detect
from bot.services.incidents import IncidentAlertService
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
from pipelines.intake.case_history import import_cases, read_past_cases
from pipelines.intake.email import EmailSource, intake_email
from pipelines.kb.documents import collect, read_file
from pipelines.kb.ingest import ingest
from pipelines.ports import Embedder
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
        has_model = await triage_models.active_id(conn) is not None
    if added or not has_model:
        out.print(f"Training the local triager ({'embeddings: ' + embedder.model if embedder else 'no embeddings'})…")
        with training_progress() as progress:
            report = await train_local(pool, embedder, progress=progress, taxonomy=taxonomy)
        out.print(training_outcome(report, settings), highlight=False)

    articles = [a for path, root in collect([KNOWLEDGE_BASE]) for a in read_file(path, root)]
    multilingual = build_multilingual_embedder(settings)
    kb = await ingest(pool, articles, embedder, multilingual=multilingual)
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

    drafter = build_drafter(settings, pool)
    policy = DraftPolicy(settings.confidence_threshold_high, settings.always_review,
                         Sender(DEMO_SUPPORT_ADDRESS, settings.company_name), settings.pii_policy)
    async with pool.acquire() as conn:
        drafting = await ids_in_status(conn, CaseStatus.DRAFTING)
    for case_id in drafting:
        await draft_case(pool, drafter, embedder, taxonomy, policy, case_id, multilingual=multilingual)

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
    recorder = RecordingSlack()
    if slack_out is not None:
        review = SlackReviewService(pool, recorder, settings, policy.sender, taxonomy=taxonomy)
        for case in cases:
            await review.post_card(case["case_id"])
    await _show_incident(settings, pool, taxonomy, embedder, recorder if slack_out is not None else None, out)
    if slack_out is not None:
        _write_slack(recorder, slack_out, out)
        await _show_daily_report(settings, pool, embedder, slack_out / "daily-report", out)


def _demo_history(now: datetime) -> list[dict[str, object]]:
    """Two weeks of ordinary requests (daytime, a few an hour, from the sample history), then a burst
    in the last hour: one new failure, in the customers' own words, that triage files three ways.
    The external ids carry the hour, so a rerun within it imports nothing twice."""
    rows = list(csv.DictReader(SAMPLE_HISTORY.open(encoding="utf-8")))
    random = Random(11)
    stamp = now.strftime("%Y%m%d%H")
    lines: list[dict[str, object]] = []
    for day in range(14, 0, -1):
        for hour in range(8, 19):
            for n in range(random.randint(0, 2)):
                at = (now - timedelta(days=day)).replace(hour=hour, minute=random.randint(0, 59))
                row = random.choice(rows)
                answered = min(at + timedelta(minutes=random.randint(2, 240)), now)
                line: dict[str, object] = {
                    "external_id": f"demo-{stamp}-{day}-{hour}-{n}", "received_at": at.isoformat(),
                    "customer_email": f"customer{random.randint(1, 400)}@example.com",
                    "description": row["text"], "subcategory": row["category"],
                    "first_response_at": answered.isoformat(),
                    "resolved_at": min(answered + timedelta(hours=random.randint(1, 30)), now).isoformat(),
                    "resolution_type": random.choice(_RESOLUTIONS),
                }
                if random.random() < 0.4:  # about the share of customers who rate
                    line["csat"] = random.choice((3, 4, 4, 5, 5, 5))
                lines.append(line)
    for n, (text, label) in enumerate(_BURST):
        lines.append({"external_id": f"demo-{stamp}-burst-{n}",
                      "received_at": (now - timedelta(minutes=55 - 7 * n)).isoformat(),
                      "customer_email": f"burst{n}@example.com", "subject": "Card declined",
                      "description": text, "subcategory": label, "status": "new"})
    return lines


_RESOLUTIONS = ("self_service", "self_service", "collaborative", "collaborative", "human", "escalated")

_BURST = [
    ("My card keeps getting declined at every shop since this morning, the app shows ERR_CARD_3051.",
     "declined_card_payment"),
    ("Card payment declined again with error ERR_CARD_3051 although I have plenty of money.", "card_not_working"),
    ("All my card payments are declined today. Error code ERR_CARD_3051.", "declined_card_payment"),
    ("Why is my card declined everywhere? The terminal says declined and the app says ERR_CARD_3051.",
     "contactless_not_working"),
    ("My card is declined at the supermarket and online since this morning, what is going on?",
     "declined_card_payment"),
    ("Every card payment I try today gets declined, ERR_CARD_3051 each time.", "card_not_working"),
]


async def _show_incident(settings: Settings, pool: asyncpg.Pool, taxonomy: Taxonomy, embedder: Embedder | None,
                         recorder: RecordingSlack | None, out: Console) -> None:
    """Workflow 3 on a short history: past cases imported as cases (`cx cases import --as-cases`), a
    burst, one detection pass (`cx detect run`), and the alert it would post."""
    now = datetime.now(UTC)
    path = settings.cx_data_dir / "demo-history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in _demo_history(now)), encoding="utf-8")
    imported = await import_cases(pool, read_past_cases(path, taxonomy), embedder)
    out.print(f"History for detection: {imported.created} past cases imported as cases from {path} "
              f"({imported.existing} already there, {imported.embedded} embedded).")
    report = await detect(pool, settings, now, embedder)
    for note in report.notes:
        out.print(f"  {note}")
    table = Table("this run", "severity", "kind", "title", "cases", title="Detection (cx detect run)")
    for alert in report.alerts:
        table.add_row(report.outcomes[alert.alert_id], alert.severity, alert.kind, escape(alert.title),
                      str(len(alert.case_ids)))
    out.print(table if report.alerts else "Detection: no alerts.")
    if recorder is not None:
        alerts = IncidentAlertService(pool, recorder, settings)
        for alert in report.alerts:
            await alerts.post(alert.alert_id)


def _write_slack(recorder: RecordingSlack, slack_out: Path, out: Console) -> None:
    """Every Slack call the demo made (review cards, the alert), written to `slack_out` instead of sent."""
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


async def _show_daily_report(settings: Settings, pool: asyncpg.Pool, embedder: Embedder | None, out_dir: Path,
                             out: Console) -> None:
    """Workflow 5's report of the demo's day so far (`cx report daily --date TODAY --out DIR`): the
    chart, the leadership email and the Slack calls, written instead of sent."""
    from bot.cli.report import write_daily_report

    day = datetime.now(settings.zone).date()
    report = await write_daily_report(settings, pool, day, out_dir, embedder)
    m = report.metrics
    csat = f"{m.csat_avg:.2f}" if m.csat_avg is not None else "none yet"
    out.print(f"Daily report for {day} (cx report daily): received {m.received}, resolved {m.resolved} "
              f"({m.self_service_resolved} self-service), CSAT {csat}, backlog {m.backlog}, "
              f"{len(report.kb_gaps)} KB gaps, a {len(report.trend)}-day trend; chart, email and Slack calls "
              f"written to {out_dir}.", soft_wrap=True)
