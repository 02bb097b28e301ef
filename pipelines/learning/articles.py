"""Article drafts for KB gaps (the KB_DRAFT job): Claude writes one from the gap's cases and the
replies that resolved them, or offline a template is built from those replies. Either way the
material is redacted first (pipelines.learning.redaction) and the customers' words reach the model
only as quoted data; the draft is stored once per gap and waits for a reviewer (nothing here
publishes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from uuid import UUID

import asyncpg
import structlog
from pydantic import BaseModel, Field

from db import article_drafts as drafts_db
from db import kb_gaps as gaps_db
from db.pool import transaction
from pipelines.detection.summary import worth_retrying
from pipelines.learning.redaction import redact
from pipelines.ports import LLMError, StructuredLLM
from pipelines.replies.answer import answer_text
from pipelines.usage import failed_calls_recorded, record_usage
from prompts import Prompt, quote_data

log = structlog.get_logger(__name__)

STEP = "kb_article"
CASES = 8  # cases (with their replies) the drafter reads
CASE_CHARS = 800
REPLY_CHARS = 1500
MAX_TOKENS = 2500
TITLE_CHARS = 150
TEMPLATE_REPLIES = 3
TEMPLATE_QUESTIONS = 5


class ArticleDraft(BaseModel):
    """What Claude may write for a gap, and nothing else."""

    title: str = Field(min_length=3, max_length=TITLE_CHARS)
    summary: str | None = Field(default=None, max_length=500)
    body: str = Field(min_length=20, max_length=12_000, description="Markdown")
    tags: list[str] = Field(default_factory=list, max_length=8)


class _Material(BaseModel):
    """A gap's cases as the drafter sees them: redacted."""

    questions: list[str]
    replies: list[str]


def material(cases: Sequence[gaps_db.ResolvedCase]) -> _Material:
    names = [c.customer_name for c in cases]
    questions = [redact(c.query, names) for c in cases]
    replies = [redact(c.reply, names) for c in cases if c.reply]
    return _Material(questions=questions, replies=replies)


async def draft_article(
    pool: asyncpg.Pool, llm: StructuredLLM | None, opportunity_id: UUID, *, model: str, system: Prompt,
    request: Prompt, company: str,
) -> UUID | None:
    """The gap's draft id: drafted now, or found from an earlier run (no second call). None when the
    gap is gone. With `llm`, Claude drafts; without it, or when its answer is unusable, the template
    does. A failure worth retrying (rate limit, overload, network) raises."""
    async with pool.acquire() as conn:
        existing = await drafts_db.draft_for(conn, opportunity_id)
        if existing is not None:
            return existing
        gap = await gaps_db.gap(conn, opportunity_id)
        if gap is None:
            log.warning("kb_article.no_gap", opportunity_id=str(opportunity_id))
            return None
        cases = await gaps_db.resolved_cases(conn, gap.case_ids, CASES)
    seen = material(cases)
    title = redact(gap.title, [c.customer_name for c in cases])
    article, drafter, usage = None, "template", None
    if llm is not None:
        user = request_text(request, gap, title, seen)
        try:
            async with failed_calls_recorded(pool, step=STEP):
                article, usage = await llm.complete(step=STEP, model=model, system=system.render(company=company),
                                                    user=user, output=ArticleDraft, max_tokens=MAX_TOKENS,
                                                    prompt_version=system.ref)
            drafter = "claude"
        except LLMError as exc:
            if worth_retrying(exc):
                raise
            log.warning("kb_article.template_instead", opportunity_id=str(opportunity_id), error=str(exc))
    if article is None:
        article = template_article(title, seen, company)
    else:
        # Whatever the model did with the placeholders or any detail it kept, the draft is redacted too.
        names = [c.customer_name for c in cases]
        article = ArticleDraft(title=redact(article.title, names)[:TITLE_CHARS],
                               summary=redact(article.summary, names) if article.summary else None,
                               body=redact(article.body, names), tags=[t.strip().lower() for t in article.tags])
    async with transaction(pool) as conn:
        draft_id = await drafts_db.insert(conn, drafts_db.NewDraft(
            opportunity_id=opportunity_id, title=article.title, summary=article.summary, body=article.body,
            tags=article.tags, category=gap.category, subcategory=gap.subcategory, case_ids=gap.case_ids,
            drafter=drafter, model=usage.model if usage else None,
            prompt_version=system.ref if drafter == "claude" else None,
        ))
        await record_usage(conn, [usage])
    log.info("kb_article.drafted", opportunity_id=str(opportunity_id), draft_id=str(draft_id), drafter=drafter)
    return draft_id


def request_text(request: Prompt, gap: gaps_db.GapCases, title: str, seen: _Material) -> str:
    """The user turn: every customer's and agent's text is quoted data inside the prompt's tags."""
    blocks = []
    for i, question in enumerate(seen.questions):
        blocks.append(f"<case>\n{quote_data(_cut(question, CASE_CHARS))}\n</case>")
        if i < len(seen.replies):
            blocks.append(f"<reply>\n{quote_data(_cut(seen.replies[i], REPLY_CHARS))}\n</reply>")
    labels = " / ".join(x for x in (gap.category, gap.subcategory) if x) or "not triaged"
    return request.render(
        title=quote_data(_line(title)), labels=quote_data(labels), case_count=str(len(gap.case_ids)),
        best_article=f"“{quote_data(_line(gap.best_article))}”" if gap.best_article else "(none: the knowledge base is empty)",
        shown=(f"{len(seen.questions)} of its cases as the customers wrote them (personal data replaced), "
               f"with the replies that resolved {len(seen.replies)} of them"),
        cases="\n".join(blocks) or "(none)",
    )


def template_article(title: str, seen: _Material, company: str) -> ArticleDraft:
    """The offline draft: the customers' questions and the answers our replies gave, for a reviewer
    to shape into an article."""
    answers = list(dict.fromkeys(a for a in (answer_text(r) for r in seen.replies) if a))[:TEMPLATE_REPLIES]
    questions = list(dict.fromkeys(_line(q) for q in seen.questions if q.strip()))[:TEMPLATE_QUESTIONS]
    parts = ["## What customers asked", *(f"- {_cut(q, 200)}" for q in questions)]
    if answers:
        parts += ["", "## How we answered"]
        for i, answer in enumerate(answers, 1):
            parts += ["", f"### Answer {i}" if len(answers) > 1 else "", _cut(answer, REPLY_CHARS)]
    else:
        parts += ["", "## How we answered", "",
                  f"No reply has resolved these cases yet. Write the answer {company} gives before publishing."]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).strip()
    return ArticleDraft(title=_cut(_line(title), TITLE_CHARS) or "Untitled", body=body, tags=[])


def _line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, space, _ = text[: limit - 2].rpartition(" ")
    return (head if space and len(head) > limit // 2 else text[: limit - 2]).rstrip() + " …"
