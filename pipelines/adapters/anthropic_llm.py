"""StructuredLLM over the Anthropic Messages API: forced tool use, validated by pydantic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from pydantic import ValidationError

from pipelines.ports import LLMError, LLMRequest, LLMUsage, M

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message, TextBlockParam
    from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
    from anthropic.types.tool_param import InputSchema

TOOL_NAME = "record_answer"
# The shortest prefix each model caches, in tokens (Anthropic's prompt-caching docs, "Cache limitations"):
# a shorter one marked for caching is processed, and billed, as if it were not. Longest model prefix wins.
CACHE_MINIMUM_TOKENS = {
    "claude-opus-4-6": 4096, "claude-opus-4-5": 4096, "claude-haiku-4-5": 4096,
    "claude-sonnet-4-6": 2048, "claude-3-5-haiku": 2048, "claude-3-haiku": 2048,
}
DEFAULT_CACHE_MINIMUM = 1024  # Sonnet 4.5, Sonnet 4, Opus 4.1, Opus 4


def cache_minimum(model: str) -> int:
    matches = [prefix for prefix in CACHE_MINIMUM_TOKENS if model.startswith(prefix)]
    return CACHE_MINIMUM_TOKENS[max(matches, key=len)] if matches else DEFAULT_CACHE_MINIMUM


class AnthropicLLM:
    """Requests go out in the API's processing order, tools, system, then the user turn, with one cache
    breakpoint at the end of the system prompt: the tool schema and the system prompt (instructions,
    taxonomy) are the same for every case of a step and form the cached prefix; the per-case text comes
    after it, uncached. `cache=False` sends the same request without the breakpoint (to measure the saving)."""

    def __init__(self, client: AsyncAnthropic, *, cache: bool = True) -> None:
        self._client, self._cache = client, cache

    async def complete(
        self,
        *,
        step: str,
        model: str,
        system: str,
        user: str,
        output: type[M],
        schema: dict[str, object] | None = None,
        max_tokens: int = 1024,
        prompt_version: str | None = None,
    ) -> tuple[M, LLMUsage]:
        import anthropic

        request = LLMRequest(step=step, model=model, system=system, user=user, max_tokens=max_tokens,
                             output_schema=schema or output.model_json_schema(), prompt_version=prompt_version)
        usage = LLMUsage(step=step, provider="anthropic", model=model, prompt_version=prompt_version)
        started = time.perf_counter()
        try:
            message = await self._client.messages.create(**message_params(request, cache=self._cache))
        except anthropic.APIError as exc:
            usage = usage.model_copy(
                update={"success": False, "error": f"{type(exc).__name__}: {exc}"[:500], "latency_ms": _ms(started)}
            )
            raise LLMError(f"Anthropic call failed: {type(exc).__name__}", usage) from exc
        usage = message_usage(message, usage.model_copy(update={"latency_ms": _ms(started)}))
        answer = tool_answer(message)
        if answer is None:
            raise LLMError("the model answered without the tool", usage.model_copy(update={"success": False}))
        try:
            return output.model_validate(answer), usage
        except ValidationError as exc:
            bad = usage.model_copy(update={"success": False, "error": str(exc)[:500]})
            raise LLMError("the model's answer did not fit the output model", bad) from exc


def message_params(request: LLMRequest, *, cache: bool = True) -> MessageCreateParamsNonStreaming:
    """The Messages request for one structured call, as a direct call and a batch both send it."""
    system_block: TextBlockParam = {"type": "text", "text": request.system}
    if cache:
        system_block["cache_control"] = {"type": "ephemeral"}
    return {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "system": [system_block],
        "messages": [{"role": "user", "content": request.user}],
        "tools": [{
            "name": TOOL_NAME,
            "description": "Record your answer. This is the only way to answer.",
            "input_schema": cast("InputSchema", request.output_schema),
        }],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def message_usage(message: Message, usage: LLMUsage) -> LLMUsage:
    return usage.model_copy(update={
        "model": message.model,
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
        "cached_tokens": message.usage.cache_read_input_tokens or 0,
        "cache_write_tokens": message.usage.cache_creation_input_tokens or 0,
    })


def tool_answer(message: Message) -> dict[str, object] | None:
    """The fields of the forced tool call; None when the model answered without it."""
    block = next((b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME), None)
    return dict(block.input) if block is not None else None


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
