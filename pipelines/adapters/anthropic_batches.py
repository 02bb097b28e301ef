"""MessageBatches over Anthropic's Message Batches API: the same requests a direct call sends
(pipelines/adapters/anthropic_llm.py), submitted together and answered within 24 hours at half price."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pipelines.adapters.anthropic_llm import message_params, message_usage, tool_answer
from pipelines.ports import BatchResult, BatchSubmitted, LLMRequest, LLMUsage

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types.messages import MessageBatchIndividualResponse

# An errored request of these kinds may succeed in a later batch; any other (an invalid request, a
# refused key) would fail the same way.
RETRYABLE_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error", "timeout_error"})


class AnthropicBatches:
    def __init__(self, client: AsyncAnthropic) -> None:
        self._client = client

    async def submit(self, requests: Sequence[tuple[str, LLMRequest]]) -> str:
        batch = await self._client.messages.batches.create(
            requests=[{"custom_id": custom_id, "params": message_params(request)} for custom_id, request in requests]
        )
        return batch.id

    async def ended(self, batch_id: str) -> bool:
        batch = await self._client.messages.batches.retrieve(batch_id)
        return batch.processing_status == "ended"

    async def results(self, batch_id: str) -> list[BatchResult]:
        return [_result(item) async for item in await self._client.messages.batches.results(batch_id)]

    async def cancel(self, batch_id: str) -> None:
        await self._client.messages.batches.cancel(batch_id)

    async def recent(self, since: datetime) -> list[BatchSubmitted]:
        found: list[BatchSubmitted] = []
        async for batch in self._client.messages.batches.list(limit=100):  # newest first
            if batch.created_at < since:
                break
            counts = batch.request_counts
            total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            found.append(BatchSubmitted(batch_id=batch.id, created_at=batch.created_at, request_count=total))
        return found


def _result(item: MessageBatchIndividualResponse) -> BatchResult:
    result = item.result
    if result.type == "succeeded":
        message = result.message
        # The step is not known here: the caller names it from its own record of the request.
        usage = message_usage(message, LLMUsage(step="", provider="anthropic", model=message.model))
        answer = tool_answer(message)
        if answer is None:
            return BatchResult(custom_id=item.custom_id, outcome="errored", usage=usage,
                               error="the model answered without the tool")
        return BatchResult(custom_id=item.custom_id, outcome="succeeded", answer=answer, usage=usage)
    if result.type == "errored":
        error = result.error.error
        return BatchResult(custom_id=item.custom_id, outcome="errored", error=f"{error.type}: {error.message}"[:500],
                           retryable=error.type in RETRYABLE_ERRORS)
    return BatchResult(custom_id=item.custom_id, outcome=result.type)
