"""Two drafters behind one interface: Claude over retrieved articles, and an offline extractive
draft from the best article. Citations outside the retrieved set are removed here, in one place."""

from __future__ import annotations

import re
from dataclasses import replace
from uuid import UUID

from pydantic import BaseModel, Field

from db.kb import Hit
from pipelines.ports import Draft, Drafter, DraftInput, LLMError, SimilarCase, StructuredLLM
from prompts import Prompt, quote_data


class ClaudeDraft(BaseModel):
    """What Claude may say: the reply and what a reviewer or the policy needs to judge it."""

    reply: str = Field(min_length=1, max_length=6000)
    cited_article_ids: list[str] = Field(default_factory=list, max_length=10)
    confidence: float = Field(ge=0.0, le=1.0)
    questions: list[str] = Field(default_factory=list, max_length=10)
    risks: list[str] = Field(default_factory=list, max_length=10)


def check_citations(cited: list[str], retrieved: list[Hit]) -> tuple[list[UUID], list[str]]:
    """Keep the cited ids that were retrieved (in order, once each); return them and the dropped rest."""
    known = {str(h.article_id): h.article_id for h in retrieved}
    kept: list[UUID] = []
    dropped: list[str] = []
    for raw in cited:
        article_id = known.get(raw.strip().lower())
        if article_id is None:
            dropped.append(raw)
        elif article_id not in kept:
            kept.append(article_id)
    return kept, dropped


def _articles_text(hits: list[Hit]) -> str:
    if not hits:
        return "(no article matched)"
    return "\n".join(
        f'<article id="{h.article_id}" title="{quote_data(h.title)}">\n{quote_data(h.heading)}\n'
        f"{quote_data(h.content)}\n</article>"
        for h in hits
    )


def _similar_text(similar: list[SimilarCase]) -> str:
    return "\n".join(f"- Request: {quote_data(s.description[:400])}\n  Reply: {quote_data(s.reply[:800])}"
                     for s in similar) or "(none)"


class ClaudeDrafter:
    name = "claude"

    def __init__(self, llm: StructuredLLM, *, model: str, system: Prompt, request: Prompt, company: str) -> None:
        self._llm, self._model, self._system, self._request, self._company = llm, model, system, request, company

    async def draft(self, item: DraftInput) -> Draft:
        user = self._request.render(
            case_ref=item.case_ref,
            customer_name=quote_data(item.customer_name or "unknown"),
            tier=item.tier,
            category=item.category or "-",
            subcategory=item.subcategory or "-",
            priority=item.priority or "-",
            subject=quote_data(item.subject or "(none)"),
            body=quote_data(item.body),
            articles=_articles_text(item.articles),
            similar=_similar_text(item.similar),
        )
        answer, usage = await self._llm.complete(
            step="draft", model=self._model, system=self._system.render(company=self._company), user=user,
            output=ClaudeDraft, max_tokens=2048, prompt_version=self._system.ref,
        )
        cited, dropped = check_citations(answer.cited_article_ids, item.articles)
        return Draft(
            reply=answer.reply, cited=cited, dropped=dropped, confidence=answer.confidence,
            questions=answer.questions, risks=answer.risks, drafter=self.name, model=usage.model,
            prompt_version=self._system.ref, usage=[usage],
        )


def _first_name(name: str | None) -> str:
    if not name:
        return "there"
    first = name.split()[0].strip(",")
    return first if first.isalpha() else "there"


def _clean(markdown: str) -> str:
    """Article text as plain email text: no bold markers, no heading hashes."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)
    text = re.sub(r"^#+\s*", "", text, flags=re.M)
    return text.strip()


class ExtractiveDrafter:
    """Offline: the best article's best chunk, quoted with its link. It cannot judge whether the
    article answers the request, so its confidence stays below HIGH and a person always reviews."""

    name = "extractive"

    def __init__(self, *, company: str, high: float) -> None:
        self._company, self._cap = company, round(high - 0.01, 4)

    async def draft(self, item: DraftInput) -> Draft:
        greeting = f"Hi {_first_name(item.customer_name)},"
        sign_off = f"Best regards,\n{self._company} Support"
        if not item.articles:
            reply = (f"{greeting}\n\nThank you for getting in touch. A member of our team is looking into your "
                     f"request and will get back to you shortly.\n\n{sign_off}")
            return Draft(reply, [], [], 0.0, [], ["no knowledge-base article matched"], self.name)
        best = item.articles[0]
        link = f"\n\nThe full article: {best.url}" if best.url else ""
        reply = (f"{greeting}\n\nThank you for getting in touch. Our help article \"{best.title}\" covers this:"
                 f"\n\n{_clean(best.content)}{link}\n\nIf this does not solve it, just reply to this email."
                 f"\n\n{sign_off}")
        # The fused search score is a rank statistic, not a probability: it only orders articles.
        return Draft(reply, [best.article_id], [], self._cap, [], [], self.name)


class FallbackDrafter:
    """Claude when it answers; the extractive draft when it fails after the SDK's retries."""

    name = "cascade"

    def __init__(self, claude: Drafter | None, extractive: Drafter) -> None:
        self._claude, self._extractive = claude, extractive

    async def draft(self, item: DraftInput) -> Draft:
        if self._claude is None:
            return await self._extractive.draft(item)
        try:
            return await self._claude.draft(item)
        except LLMError as exc:
            fallback = await self._extractive.draft(item)
            return replace(fallback, risks=[*fallback.risks, f"Claude failed: {exc}"], usage=[exc.usage])
