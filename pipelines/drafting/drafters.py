"""Two drafters behind one interface: Claude over retrieved articles, and an offline extractive
draft from the best article. Citations outside the retrieved set are removed here, in one place."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from uuid import UUID

from pydantic import BaseModel, Field

from db.kb import Hit
from pipelines.ports import Draft, Drafter, DraftInput, LLMError, SimilarCase, StructuredLLM
from pipelines.replies.answer import answer_text
from prompts import Prompt, quote_data


class ClaudeDraft(BaseModel):
    """What Claude may say: the reply and what a reviewer or the policy needs to judge it."""

    reply: str = Field(min_length=1, max_length=6000)
    cited_article_ids: list[str] = Field(default_factory=list, max_length=10)
    confidence: float = Field(ge=0.0, le=1.0)
    questions: list[str] = Field(default_factory=list, max_length=10)
    risks: list[str] = Field(default_factory=list, max_length=10)


# The tool's schema: with the instructions, the cached prefix of every draft request.
_SCHEMA = json.dumps(ClaudeDraft.model_json_schema())


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
    return "\n".join(f"- Request: {quote_data(s.description[:300])}\n  Reply: {quote_data(answer_text(s.reply)[:600])}"
                     for s in similar) or "(none)"


# Chars per token is an estimate: the examples aim this far past the cache minimum.
_CACHE_MARGIN = 1.15
# The examples pay only while the cache stays warm: written at 1.25x the input price, read at 0.1x, kept 5
# minutes. A long prefix beats a short uncached one when about 9 drafts in 10 come within 5 minutes of the
# one before, which Poisson arrivals give from about 26 drafts an hour; near that rate the estimate below
# flips on and off and each flip is a write, so the examples wait for 40 an hour: 20 in the last half hour
# (bench/llm_cost.py: at 30 an hour, 14 in the half hour cost more than none).
WARM_WINDOW_SECONDS = 1800.0
WARM_DRAFTS = 20


class ClaudeDrafter:
    """`cache_minimum`: the model's minimum cacheable prefix in tokens when prompts are cached (None when
    not): house-style examples are added to the cached prefix only when they take it past that, and only
    while this process drafts often enough to keep it in the cache. `clock` (seconds) is for tests."""

    name = "claude"

    def __init__(self, llm: StructuredLLM, *, model: str, system: Prompt, request: Prompt, company: str,
                 cache_minimum: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._llm, self._model, self._system, self._request, self._company = llm, model, system, request, company
        self._cache_minimum, self._clock = cache_minimum, clock
        self._recent: deque[float] = deque()

    @property
    def wants_house_examples(self) -> bool:
        """Whether the next draft would send examples: prompts are cached and the desk is busy."""
        return self._cache_minimum is not None and self._busy(self._clock())

    def _busy(self, now: float) -> bool:
        """Whether the desk drafts often enough for a cached prefix to be read, not rewritten."""
        while self._recent and self._recent[0] < now - WARM_WINDOW_SECONDS:
            self._recent.popleft()
        return len(self._recent) >= WARM_DRAFTS

    def _warm(self) -> bool:
        """Record this draft; whether the desk was busy before it."""
        now = self._clock()
        busy = self._busy(now)
        self._recent.append(now)
        return busy

    def system_prompt(self, examples: tuple[str, ...], *, warm: bool = True) -> str:
        """The instructions, with as many of the desk's examples as make the cached prefix (the tool schema
        and this) reach the model's minimum, or none when all of them would not or the desk is quiet."""
        bare = self._system.render(company=self._company, house_style="")
        if self._cache_minimum is None or not examples or not warm:
            return bare
        target = self._cache_minimum * _CACHE_MARGIN * 4 - len(bare) - len(_SCHEMA)
        shown: list[str] = []
        for example in examples:
            if target <= 0:
                break
            shown.append(f"<example>\n{quote_data(example)}\n</example>")
            target -= len(shown[-1]) + 1
        if target > 0:
            return bare
        block = ("Replies this desk sent recently, for their tone and layout only (greeting and sign-off left "
                 "out; their facts may not fit this request, and names or numbers in them are never to be "
                 "reused):\n" + "\n".join(shown))
        return self._system.render(company=self._company, house_style=block)

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
            step="draft", model=self._model, system=self.system_prompt(item.house_examples, warm=self._warm()), user=user,
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
    wants_house_examples = False

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

    @property
    def wants_house_examples(self) -> bool:
        return self._claude is not None and self._claude.wants_house_examples

    async def draft(self, item: DraftInput) -> Draft:
        if self._claude is None:
            return await self._extractive.draft(item)
        try:
            return await self._claude.draft(item)
        except LLMError as exc:
            fallback = await self._extractive.draft(item)
            return replace(fallback, risks=[*fallback.risks, f"Claude failed: {exc}"], usage=[exc.usage])
