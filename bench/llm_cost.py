"""What the AI costs per 1,000 cases, measured on the whole flow against the fake Anthropic.

    python bench/llm_cost.py [--cases 500] [--per-hour 60] [--seed 0] [--embeddings local|none] [--keep] [--json]

The product as it runs, on a scratch database of the embedded server (or DATABASE_URL's server), dropped
afterwards: banking77's train.csv is split (seeded, 80/20); the 80% is the labelled history the local triager
is trained on (`train_local`, local embeddings when sentence-transformers is installed, else none) and the demo
knowledge base (samples/kb) is ingested; each run's copy then gets 3 resolved cases per subcategory with the
reply that went out (written as the fake writes drafts), so drafting shows similar replies and house-style
examples as on a desk that has been answering for a while. Then `--cases` rows of the other 20% each arrive as an email
(`intake_email`), are triaged (`triage_case`, the cascade of bot/ai.py `build_triager`: the local model first,
Claude on ANTHROPIC_FAST_MODEL only below CONFIDENCE_THRESHOLD_HIGH) and, when routed to a draft, drafted
(`draft_case`, bot/ai.py `build_drafter`: Claude on ANTHROPIC_MODEL over the 5 retrieved articles), inline,
without the job queue. PII redaction stays on, as by default. The cases arrive at random (Poisson) at
`--per-hour` on a virtual clock that the fake's prompt cache and the drafter's "is the desk busy" estimate
both read, so the cache lives and expires as it would at that rate.

Two runs, each on its own copy of the prepared database so their figures do not mix:
- `optimised`: the product's defaults (triage on claude-haiku-4-5, drafts on claude-sonnet-4-6, the prompt-cache
  breakpoint on);
- `baseline`: ANTHROPIC_PROMPT_CACHE=false (no cache breakpoint, no house-style examples) and no tiering
  (claude-sonnet-4-6 for both).

The fake Anthropic (tests/fakes/anthropic.py) counts tokens from the request text at 4 characters a token,
output tokens from the tool_use JSON it answers, and accounts cache reads and writes as the API does (minimum
prefix per model, 5-minute lifetime). Its answers: the triage of a case is the row's true banking77 label (a
Claude that is right); a draft is a 120-200-word reply (seeded per case: greeting, 3-5 numbered steps, sign-off)
citing one or two of the article ids in the request.

Cost, tokens and the cache hit ratio are read back from llm_usage, as `cx usage` reports them (db/usage.py,
priced by SQL from api_pricing at list prices). Hit ratio: cache-read tokens / (input + cache-read + cache-write
tokens) of Anthropic calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.ai import build_drafter, build_embedder, build_triager  # noqa: E402
from bot.cli.usage import usage_json  # noqa: E402
from bot.model_tiers import model_for  # noqa: E402
from bot.runtime.database import migrate_database, resolve_dsn, with_database  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from db import admin  # noqa: E402
from db import examples as examples_db  # noqa: E402
from db import intake as intake_db  # noqa: E402
from db import usage as usage_db  # noqa: E402
from db.pool import create_pool, transaction  # noqa: E402
from pipelines.adapters.anthropic_llm import TOOL_NAME  # noqa: E402
from pipelines.adapters.local_embedder import local_embeddings_available  # noqa: E402
from pipelines.drafting.step import DraftPolicy, draft_case  # noqa: E402
from pipelines.intake.email import EmailSource, intake_email  # noqa: E402
from pipelines.kb.documents import collect, read_file  # noqa: E402
from pipelines.kb.ingest import ingest  # noqa: E402
from pipelines.ports import Embedder  # noqa: E402
from pipelines.replies.outbox import Sender  # noqa: E402
from pipelines.taxonomy import Taxonomy, load_taxonomy  # noqa: E402
from pipelines.triage.history import LabelledRow, read_history  # noqa: E402
from pipelines.triage.local.triager import train_local  # noqa: E402
from pipelines.triage.routing import Thresholds  # noqa: E402
from pipelines.triage.step import triage_case  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
TAXONOMY = ROOT / "prompts" / "taxonomy-banking.yaml"
KNOWLEDGE_BASE = ROOT / "samples" / "kb"
SUPPORT = "support@demo-bank.example"
GOAL_USD_PER_1000 = 9.0
TRAIN_SHARE = 0.8
CUSTOMERS = 200  # distinct senders, so some cases have earlier ones, as on a real desk
ANSWERED_PER_TOPIC = 3  # resolved cases with their reply per subcategory, before the replay
SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"
ARTICLE_ID = re.compile(r'<article id="([0-9a-f-]{36})"')
FIRST = ("Mia", "Olivia", "Noah", "Liam", "Ava", "Lucas", "Sofia", "Arjun", "Chen", "Fatima", "Jonas", "Elena")
LAST = ("Wong", "Bennett", "Garcia", "Okafor", "Schmidt", "Rossi", "Kowalski", "Haddad", "Tanaka", "Silva")
STEPS = (
    "Open the app and sign in with your usual passcode or biometrics.",
    "Tap the Cards tab at the bottom of the home screen and choose the card in question.",
    "Check the status shown under the card details; it tells you whether the action went through.",
    "If the status looks wrong, tap Help, then Report a problem, and pick the option that matches your situation.",
    "Confirm your details on the next screen so we can verify it is really you.",
    "Keep the app open for a minute while the change takes effect, then refresh the screen.",
    "If you still see the same result after 24 hours, reply to this email and we will look into it straight away.",
    "Make sure the app is updated to the latest version from the App Store or Google Play.",
)
FILLER = (
    "I understand how frustrating this can be, and I am sorry for the trouble it has caused.",
    "Here is what you can do right now to sort it out.",
    "Most customers find this resolves the issue within a few minutes.",
    "You will find more detail in the help article linked below.",
    "For your security, we will never ask for your full card number or passcode by email.",
)


@dataclass
class Replay:
    """What the fake Anthropic needs to answer like a model that read the case: the case in flight."""

    taxonomy: Taxonomy
    seed: int
    index: int = 0
    row: LabelledRow | None = None
    customer: str = "Mia Wong"
    served: dict[str, int] = field(default_factory=lambda: {"triage": 0, "draft": 0})
    clock: float = 0.0  # the fake's clock, in seconds: cases arrive at --per-hour, not as fast as the replay runs

    def now(self) -> float:
        return self.clock

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.row is not None
        rng = random.Random(f"{self.seed}:{self.index}")
        if "reply" in body["tools"][0]["input_schema"]["properties"]:
            self.served["draft"] += 1
            return FakeAnthropic.tool_use(TOOL_NAME, self._draft(body, rng))
        self.served["triage"] += 1
        category = self.taxonomy.categories[self.row.category]
        triage: dict[str, Any] = {"category": self.row.category, "subcategory": self.row.subcategory,
                  "priority": category.default_priority, "sentiment": rng.choice(["neutral", "negative"]),
                  "language": "en", "summary": f"Customer asks: {self.row.text[:120]}", "error_codes": [],
                  "confidence": round(rng.uniform(0.82, 0.97), 2),
                  "reason": f"The message is about {(self.row.subcategory or self.row.category).replace('_', ' ')}."}
        return FakeAnthropic.tool_use(TOOL_NAME, triage)

    def _draft(self, body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        user = body["messages"][0]["content"]
        ids = list(dict.fromkeys(ARTICLE_ID.findall(user if isinstance(user, str) else json.dumps(user))))
        cited = ids[: rng.choice([1, 2])] if ids else []
        target = rng.randint(120, 200)
        steps = rng.sample(STEPS, rng.randint(3, 5))
        intro = [f"Thank you for getting in touch about your {self.row.subcategory.replace('_', ' ')} question."
                 if self.row and self.row.subcategory else "Thank you for getting in touch."]
        extra = list(FILLER)
        rng.shuffle(extra)

        def text() -> str:
            numbered = "\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1))
            return (f"Hi {self.customer.split()[0]},\n\n{' '.join(intro)}\n\n{numbered}\n\n"
                    "If anything is unclear, just reply to this email.\n\nBest regards,\nNorthwind Bank Support")

        while extra and len(text().split()) < target:
            intro.append(extra.pop())
        return {"reply": text(), "cited_article_ids": cited, "confidence": round(rng.uniform(0.6, 0.95), 2),
                "questions": [], "risks": []}


async def answered_history(pool: asyncpg.Pool, state: Replay, history: list[LabelledRow]) -> int:
    """The desk's past: ANSWERED_PER_TOPIC resolved cases per subcategory, each with the reply that went out
    (written as the fake writes drafts). Drafting shows the latest of these as "replies that resolved
    similar cases", as it does on a desk that has been answering for a while."""
    taken: dict[str | None, int] = {}
    rows = []
    for row in history:
        if taken.get(row.subcategory, 0) < ANSWERED_PER_TOPIC:
            taken[row.subcategory] = taken.get(row.subcategory, 0) + 1
            rows.append(row)
    for n, row in enumerate(rows):
        customer = _customer(CUSTOMERS + n)
        state.row, state.customer, state.index = row, customer, -1 - n
        reply = state._draft({"messages": [{"content": ""}]}, random.Random(f"history:{n}"))["reply"]
        address = f"{customer.lower().replace(' ', '.')}@example.com"
        async with transaction(pool) as conn:
            case = await intake_db.create_case(conn, customer_email=address, customer_name=customer, channel="email",
                                               subject=row.text[:60], description=f"Hi,\n\n{row.text}\n\nThanks",
                                               interaction_type="email_in")
            await conn.execute("UPDATE cases SET category = $2, subcategory = $3, status = 'human_owned', "
                               "created_at = now() - interval '2 days' WHERE case_id = $1",
                               case.case_id, row.category, row.subcategory)
            await conn.execute("UPDATE cases SET status = 'resolved' WHERE case_id = $1", case.case_id)
            await conn.execute(
                "INSERT INTO reply_outbox (case_id, draft_key, channel, to_address, subject, body, status, sent_at) "
                "VALUES ($1, $2, 'email', $3, 'Re: your question', $4, 'sent', now() - interval '1 day')",
                case.case_id, f"bench:{case.case_id}", address, reply)
    return len(rows)


def _email(row: LabelledRow, index: int, customer: str) -> bytes:
    message = EmailMessage()
    address = f"{customer.lower().replace(' ', '.')}@example.com"
    message["From"] = f"{customer} <{address}>"
    message["To"] = SUPPORT
    message["Subject"] = row.text if len(row.text) <= 60 else row.text[:57].rsplit(" ", 1)[0] + "..."
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(idstring=f"bench{index}", domain="mail.example.com")
    message.set_content(f"Hi,\n\n{row.text}\n\nThanks,\n{customer.split()[0]}\n")
    return message.as_bytes()


def _customer(index: int) -> str:
    n = index % CUSTOMERS
    return f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]}"


@asynccontextmanager
async def copy_of(server: str, template: str, name: str) -> AsyncIterator[asyncpg.Pool]:
    """A fresh copy of the prepared database, dropped on the way out."""
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    try:
        pool = await create_pool(with_database(server, name), min_size=1, max_size=4)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        await _drop(server, name)


async def _drop(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await admin.drop_database(conn, name)
    finally:
        await conn.close()


async def prepared(server: str, name: str, history: list[LabelledRow], embedder: Embedder | None) -> dict[str, Any]:
    """The template both runs copy: migrated, the local model trained, the knowledge base ingested.
    Kept from an earlier `--keep` run when it is there (training fine-tunes the encoder: minutes)."""
    conn = await asyncpg.connect(server)
    try:
        if await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            return {"reused": True}
        await admin.create_database(conn, name)
    finally:
        await conn.close()
    try:
        dsn = with_database(server, name)
        await migrate_database(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=4)
        try:
            return await prepare(pool, history, embedder)
        finally:
            await pool.close()
    except BaseException:
        await _drop(server, name)
        raise


async def prepare(pool: asyncpg.Pool, history: list[LabelledRow], embedder: Embedder | None) -> dict[str, Any]:
    started = time.perf_counter()
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [(r.text, r.category, r.subcategory, r.priority) for r in history],
                                       source="import")
    report = await train_local(pool, embedder)
    articles = [a for path, root in collect([KNOWLEDGE_BASE]) for a in read_file(path, root)]
    await ingest(pool, articles, embedder)
    return {"training_examples": report.examples, "labels": report.labels, "model_kind": report.kind,
            "kb_articles": len(articles), "seconds": round(time.perf_counter() - started, 1)}


async def replay(settings: Settings, pool: asyncpg.Pool, state: Replay, taxonomy: Taxonomy,
                 embedder: Embedder | None, cases: list[LabelledRow], per_hour: float) -> dict[str, Any]:
    started = time.perf_counter()
    triager, drafter = build_triager(settings, pool, taxonomy, embedder), build_drafter(settings, pool, clock=state.now)
    thresholds = Thresholds(settings.confidence_threshold_high, settings.confidence_threshold_medium)
    policy = DraftPolicy(settings.confidence_threshold_high, settings.always_review,
                         Sender(SUPPORT, settings.company_name), settings.pii_policy)
    state.served = {"triage": 0, "draft": 0}
    drafted = escalated = 0
    arrivals = random.Random(f"{state.seed}:arrivals")
    for index, row in enumerate(cases):
        state.index, state.row, state.customer = index, row, _customer(index)
        state.clock += arrivals.expovariate(per_hour / 3600)
        intake = await intake_email(pool, _email(row, index, state.customer), source=EmailSource(channel="email"),
                                    own_addresses={SUPPORT}, reopen_window=settings.reopen_window)
        assert intake.case_id is not None, intake
        triaged = await triage_case(pool, triager, taxonomy, thresholds, intake.case_id)
        if triaged is not None and triaged.result is not None and triaged.result.triager == "claude":
            escalated += 1
        if await draft_case(pool, drafter, embedder, taxonomy, policy, intake.case_id) is not None:
            drafted += 1
    seconds = time.perf_counter() - started
    async with pool.acquire() as conn:
        usage = usage_json(await usage_db.usage_summary(conn, 1), 1)
    return _figures(usage, len(cases), escalated=escalated, drafted=drafted, served=state.served, seconds=seconds,
                    models={"triage": model_for(settings, "triage"), "draft": model_for(settings, "draft")},
                    cache=settings.anthropic_prompt_cache)


def _figures(usage: dict[str, Any], cases: int, *, escalated: int, drafted: int, served: dict[str, int],
             seconds: float, models: dict[str, str], cache: bool) -> dict[str, Any]:
    def per_case(tokens: int) -> float:
        return round(tokens / cases, 1)

    by_step = {}
    for step in usage["by_step"]:
        if step["step"] not in ("triage", "draft"):
            continue
        anthropic_calls = served[step["step"]]
        by_step[step["step"]] = {
            "model": models[step["step"]],
            "claude_calls": anthropic_calls,
            "calls_per_case": round(anthropic_calls / cases, 3),
            "input_tokens_per_case": per_case(step["input_tokens"]),
            "output_tokens_per_case": per_case(step["output_tokens"]),
            "cache_read_tokens_per_case": per_case(step["cache_read_tokens"]),
            "cache_write_tokens_per_case": per_case(step["cache_write_tokens"]),
            "usd_per_1000_cases": round(step["cost_usd"] / cases * 1000, 3),
        }
    usd = usage["totals"]["cost_usd"] / cases * 1000
    return {
        "cases": cases,
        "usd_per_1000_cases": round(usd, 3),
        "goal_usd_per_1000": GOAL_USD_PER_1000,
        "meets_goal": usd <= GOAL_USD_PER_1000,
        "by_step": by_step,
        "cache_hit_ratio": usage["cache"]["hit_ratio"],
        "escalation_rate": round(escalated / cases, 4),
        "escalated_to_claude": escalated,
        "drafted": drafted,
        "cache_breakpoint": cache,
        "models": models,
        "failed_calls": usage["totals"]["failed_calls"],
        "cases_received": usage["per_case"]["cases_received"],
        "wall_seconds": round(seconds, 1),
    }


def split(rows: list[LabelledRow], seed: int) -> tuple[list[LabelledRow], list[LabelledRow]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = int(len(rows) * TRAIN_SHARE)
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    taxonomy = load_taxonomy(TAXONOMY)
    history, held = split(read_history(args.data, taxonomy), args.seed)
    if args.cases > len(held):
        raise SystemExit(f"--cases: at most {len(held)} rows are held out of training")
    cases = held[: args.cases]
    base = load_settings()
    if base.database_url is None and "CX_DATA_DIR" not in os.environ:
        data_dir = (Path(tempfile.gettempdir()) / "cx-bench-cost" if args.keep
                    else Path(tempfile.mkdtemp(prefix="cx-bench-cost-")))
        base = load_settings(cx_data_dir=data_dir)
    server = await resolve_dsn(base)
    embeddings = args.embeddings or ("local" if local_embeddings_available() else "none")
    template = (f"cx_bench_cost_{args.seed}_{embeddings}" if args.keep
                else f"cx_bench_cost_{uuid.uuid4().hex[:10]}")
    state = Replay(taxonomy, args.seed)
    async with FakeAnthropic(default=state.answer, clock=state.now) as fake:
        common: dict[str, Any] = {
            "anthropic_api_key": "bench", "anthropic_base_url": fake.url, "anthropic_max_retries": 0,
            "openai_api_key": None, "embeddings": embeddings, "cx_data_dir": base.cx_data_dir,
            "pii_redaction": True}
        if base.database_url is not None:
            common["database_url"] = base.database_url
        optimised = load_settings(**common, anthropic_model=SONNET, anthropic_fast_model=HAIKU)
        baseline = load_settings(**common, anthropic_model=SONNET, anthropic_fast_model=SONNET,
                                 anthropic_prompt_cache=False)
        embedder = build_embedder(optimised)
        runs: dict[str, dict[str, Any]] = {}
        try:
            preparation = await prepared(server, template, history, embedder)
            for name, settings in (("optimised", optimised), ("baseline", baseline)):
                async with copy_of(server, template, f"{template}_{name}") as pool:
                    await answered_history(pool, state, history)
                    runs[name] = await replay(settings, pool, state, taxonomy, embedder, cases, args.per_hour)
        finally:
            if not args.keep:
                await _drop(server, template)
    result = runs["optimised"]
    base_usd = runs["baseline"]["usd_per_1000_cases"]
    return {
        **result,
        "baseline": runs["baseline"],
        "saving_ratio": round(1 - result["usd_per_1000_cases"] / base_usd, 4) if base_usd else None,
        "token_counting": "chars/4 of the request text",
        "cases_per_hour": args.per_hour,
        "models": {"optimised": result["models"], "baseline": runs["baseline"]["models"]},
        "embeddings": embedder.model if embedder else "none",
        "prepared": preparation,
        "held_out_rows": len(held),
        "total_wall_seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
    }


def _print(result: dict[str, Any]) -> None:
    print(f"{result['cases']} cases, embeddings {result['embeddings']}, wall {result['total_wall_seconds']} s "
          f"(token counting: {result['token_counting']})")
    for name, run in (("optimised", result), ("baseline", result["baseline"])):
        hit = run["cache_hit_ratio"]
        print(f"\n{name}: ${run['usd_per_1000_cases']:.2f} per 1,000 cases (goal ${run['goal_usd_per_1000']:.2f}, "
              f"{'met' if run['meets_goal'] else 'NOT met'}), cache hit ratio {0 if hit is None else hit:.1%}, "
              f"escalated to Claude {run['escalation_rate']:.1%}, drafted {run['drafted']}, {run['wall_seconds']} s")
        print(f"  {'step':7} {'model':18} {'calls/case':>10} {'input':>8} {'output':>8} {'c.read':>8} "
              f"{'c.write':>8} {'$/1000':>8}   (tokens per case)")
        for step, s in run["by_step"].items():
            print(f"  {step:7} {s['model']:18} {s['calls_per_case']:10.3f} {s['input_tokens_per_case']:8.1f} "
                  f"{s['output_tokens_per_case']:8.1f} {s['cache_read_tokens_per_case']:8.1f} "
                  f"{s['cache_write_tokens_per_case']:8.1f} {s['usd_per_1000_cases']:8.2f}")
    if result["saving_ratio"] is not None:
        print(f"\nsaving over the baseline: {result['saving_ratio']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-hour", type=float, default=60.0,
                        help="cases a hour, arriving at random (Poisson): how warm the prompt cache stays")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--embeddings", choices=["local", "none"],
                        help="the local model's and the search's embeddings (default: local when installed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the prepared database (named after --seed and --embeddings) for the next run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    configure_logging("warning", "console")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    _print(result)


if __name__ == "__main__":
    main()
