"""Three triagers behind one interface: local (labelled history), Claude, and the cascade of both."""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, Field

from pipelines.models import Sentiment, Severity, TriageResult
from pipelines.ports import LLMError, SimilarExamples, StructuredLLM, Triaged, TriageInput, Triager, TriageUnavailable
from pipelines.privacy.policy import PiiPolicy
from pipelines.taxonomy import Taxonomy
from prompts import Prompt, quote_data


class ClaudeTriage(BaseModel):
    """What Claude may say; the tool schema narrows category and subcategory to the taxonomy."""

    category: str
    subcategory: str | None
    priority: Severity
    sentiment: Sentiment
    language: str = Field(min_length=2, max_length=8)
    summary: str = Field(max_length=400)
    error_codes: list[str] = Field(default_factory=list, max_length=20)
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(max_length=1000)


def _taxonomy_text(taxonomy: Taxonomy) -> str:
    lines = []
    for name, spec in taxonomy.categories.items():
        lines.append(f"- {name}: {spec.description}")
        lines.extend(f"  - {sub}: {text}" for sub, text in spec.subcategories.items())
    return "\n".join(lines)


def _schema(taxonomy: Taxonomy) -> dict[str, object]:
    schema = ClaudeTriage.model_json_schema()
    props = schema["properties"]
    props["category"] = {"type": "string", "enum": list(taxonomy.categories)}
    subs = [s for spec in taxonomy.categories.values() for s in spec.subcategories]
    props["subcategory"] = {"anyOf": [{"type": "string", "enum": subs}, {"type": "null"}]}
    return schema


class ClaudeTriager:
    name = "claude"

    def __init__(
        self,
        llm: StructuredLLM,
        taxonomy: Taxonomy,
        *,
        model: str,
        system: Prompt,
        request: Prompt,
        similar: SimilarExamples | None = None,
        company: str = "our customers",
        shots: int = 8,
        pii: PiiPolicy | None = None,
    ) -> None:
        self._llm, self._taxonomy, self._model = llm, taxonomy, model
        self._request, self._similar, self._shots = request, similar, shots
        self._system_template = system
        self._schema = _schema(taxonomy)
        self._taxonomy_text = _taxonomy_text(taxonomy)
        self._company, self._pii = company, pii

    async def triage(self, item: TriageInput) -> Triaged:
        if self._pii is not None:
            # Subject then body, from an empty map: the numbering the drafting step stores for the case.
            subject = self._pii.redact(item.subject) if item.subject else None
            body = self._pii.redact(item.body, subject.mapping if subject else None)
            item = replace(item, subject=subject.text if subject else None, body=body.text)
        examples, similar_usage = await self._similar(item.text, self._shots) if self._similar else ([], None)
        shots = "\n".join(f"- {quote_data(self._private(e.text))!r} → {e.label}" for e in examples) or "(none yet)"
        # The similar examples differ per case, so they go in the user turn: the system prompt stays the
        # same for every case and is read from Anthropic's prompt cache.
        system = self._system_template.render(company=self._company, taxonomy=self._taxonomy_text)
        user = self._request.render(
            examples=shots,
            tier=item.tier,
            history=item.history,
            severity=item.severity or "not given",
            product=item.product or "not given",
            channel=item.channel,
            subject=quote_data(item.subject or "(none)"),
            body=quote_data(item.body),
        )
        answer, usage = await self._llm.complete(
            step="triage",
            model=self._model,
            system=system,
            user=user,
            output=ClaudeTriage,
            schema=self._schema,
            prompt_version=self._system_template.ref,
        )
        if not self._taxonomy.is_valid(answer.category, answer.subcategory):
            rejected = usage.model_copy(update={"success": False, "error": "label outside the taxonomy"})
            raise LLMError(
                f"Claude answered {answer.category}/{answer.subcategory}, which the taxonomy lacks",
                rejected,
            )
        result = TriageResult(
            **answer.model_dump(),
            triager=self.name,
            model=usage.model,
            prompt_version=self._system_template.ref,
        )
        return Triaged(result, [u for u in (similar_usage, usage) if u is not None])


    def _private(self, text: str) -> str:
        return self._pii.redact(text).text if self._pii is not None else text


class CascadeTriager:
    """Local first; Claude only below HIGH. If Claude fails or is absent, keep the local answer
    with its confidence capped below HIGH, so it is reviewed and never auto-sent. With no local
    model yet (a fresh install), Claude alone; with neither, TriageUnavailable: a person takes the case."""

    name = "cascade"

    def __init__(self, local: Triager, claude: Triager | None, *, high: float) -> None:
        self._local, self._claude, self._high = local, claude, high

    async def triage(self, item: TriageInput) -> Triaged:
        try:
            local = await self._local.triage(item)
        except TriageUnavailable as missing:
            return await self._claude_alone(item, missing)
        if local.result.confidence >= self._high:
            return local
        if self._claude is None:
            return self._capped(local, "no Anthropic key: local answer kept")
        try:
            remote = await self._claude.triage(item)
        except LLMError as exc:
            capped = self._capped(local, f"Claude failed ({exc}): local answer kept")
            return Triaged(capped.result, [*local.usage, exc.usage])
        return Triaged(remote.result, [*local.usage, *remote.usage])

    async def _claude_alone(self, item: TriageInput, missing: TriageUnavailable) -> Triaged:
        if self._claude is None:
            raise TriageUnavailable(f"no triage model yet ({missing}; or set ANTHROPIC_API_KEY)", missing.usage)
        try:
            remote = await self._claude.triage(item)
        except LLMError as exc:
            # After the SDK's own retries: a person takes the case rather than its job failing until held.
            raise TriageUnavailable(f"Claude failed ({exc}), and there is no local model yet ({missing})",
                                    [*missing.usage, exc.usage]) from exc
        return Triaged(remote.result, [*missing.usage, *remote.usage])

    def _capped(self, local: Triaged, why: str) -> Triaged:
        result = local.result
        capped = min(result.confidence, round(self._high - 0.01, 4))
        reason = f"{result.reason} {why}".strip()[:1000]
        return Triaged(result.model_copy(update={"confidence": capped, "reason": reason}), local.usage)
