"""The two StructuredLLMs a batched step is given: one that queues its call, one that answers it."""

from __future__ import annotations

import json
from typing import NoReturn
from uuid import UUID

import asyncpg
import structlog
from pydantic import ValidationError

from db import batches as batches_db
from pipelines.ports import LLMError, LLMRequest, LLMUsage, M

log = structlog.get_logger(__name__)


class Deferred(Exception):
    """The call waits in the next Message Batch: the step stops here and runs again with the answer."""


class BatchQueue:
    """Queues the call for the next batch (once per step and subject, however often the job runs) and
    raises Deferred."""

    def __init__(self, pool: asyncpg.Pool, *, subject_id: UUID, resume_job: str) -> None:
        self._pool, self._subject_id, self._resume_job = pool, subject_id, resume_job

    async def complete(
        self, *, step: str, model: str, system: str, user: str, output: type[M],
        schema: dict[str, object] | None = None, max_tokens: int = 1024, prompt_version: str | None = None,
    ) -> NoReturn:
        request = LLMRequest(step=step, model=model, system=system, user=user, max_tokens=max_tokens,
                             output_schema=schema or output.model_json_schema(), prompt_version=prompt_version)
        async with self._pool.acquire() as conn:
            queued = await batches_db.queue(conn, step=step, subject_id=self._subject_id,
                                            resume_job=self._resume_job, request=request.model_dump_json())
        log.info("batch.queued", step=step, subject_id=str(self._subject_id), already_waiting=not queued)
        raise Deferred(step)


class BatchAnswer:
    """The answer a batch gave to the step's call, handed over as a direct call would: validated against
    the step's output model (a misfit is an LLMError the step falls back from). Its usage is already
    recorded, at half price, from the batch's results."""

    def __init__(self, request: LLMRequest, answer: dict[str, object], usage: LLMUsage) -> None:
        self._request, self._answer, self._usage = request, answer, usage

    @classmethod
    async def load(cls, pool: asyncpg.Pool, request_id: UUID) -> BatchAnswer | None:
        async with pool.acquire() as conn:
            found = await batches_db.answer(conn, request_id)
        if found is None or found.answer is None or found.usage is None:
            return None
        return cls(LLMRequest.model_validate_json(found.request), json.loads(found.answer),
                   LLMUsage.model_validate_json(found.usage))

    async def complete(
        self, *, step: str, model: str, system: str, user: str, output: type[M],
        schema: dict[str, object] | None = None, max_tokens: int = 1024, prompt_version: str | None = None,
    ) -> tuple[M, LLMUsage]:
        if step != self._request.step:
            raise RuntimeError(f"a {self._request.step} answer was asked for by the {step} step")
        try:
            return output.model_validate(self._answer), self._usage
        except ValidationError as exc:
            bad = self._usage.model_copy(update={"success": False, "error": str(exc)[:500]})
            raise LLMError("the model's answer did not fit the output model", bad) from exc
