"""Choosing and building the AI parts from settings: the embedder, the triager cascade, the drafter.

The parts are imported where they are built: the local triager brings scikit-learn and SciPy,
which a command that only names the configured models (`cx health-check`) should not load."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg

from bot import clients
from bot.model_tiers import model_for
from bot.settings import Settings
from pipelines.adapters.local_embedder import local_embeddings_available
from pipelines.adapters.multilingual_embedder import multilingual_available
from pipelines.jobs import BulkJob
from pipelines.ports import Drafter, Embedder, StructuredLLM, Triager
from pipelines.privacy.policy import guard_embedder
from pipelines.taxonomy import Taxonomy
from prompts import load

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic


def embedding_mode(settings: Settings, mode: str | None = None) -> str:
    """OpenAI with a key, else local if installed, else none (full-text only); or as asked."""
    mode = mode or settings.embeddings
    if mode == "auto":
        mode = "openai" if settings.openai_api_key else ("local" if local_embeddings_available() else "none")
    return mode


def embedding_model(settings: Settings) -> str | None:
    """The model the deployment embeds with, named without loading it."""
    return {"openai": settings.openai_embedding_model,
            "local": settings.local_embedding_model}.get(embedding_mode(settings))


def build_embedder(settings: Settings, mode: str | None = None) -> Embedder | None:
    from pipelines.adapters.local_embedder import LocalEmbedder
    from pipelines.adapters.openai_embedder import OpenAIEmbedder

    mode = embedding_mode(settings, mode)
    if mode == "openai":
        client = clients.openai_client(settings)
        if client is None:
            raise ValueError("EMBEDDINGS=openai needs OPENAI_API_KEY")
        return guard_embedder(OpenAIEmbedder(client, settings.openai_embedding_model), settings.pii_policy)
    if mode == "local":
        return LocalEmbedder(settings.local_embedding_model)
    return None


def build_multilingual_embedder(settings: Settings) -> Embedder | None:
    """The multilingual embedder for KB search, when MULTILINGUAL_SEARCH is on and it is installed."""
    from pipelines.adapters.multilingual_embedder import MultilingualEmbedder

    return MultilingualEmbedder() if settings.multilingual_search and multilingual_available() else None


def budgeted(llm: StructuredLLM, settings: Settings, pool: asyncpg.Pool) -> StructuredLLM:
    """Claude within the budgets (token_budgets): a spent budget refuses the call and the step falls back."""
    from pipelines.budgets import BudgetedLLM, BudgetGate

    return BudgetedLLM(llm, BudgetGate(pool, settings.zone))


def claude(client: AsyncAnthropic, settings: Settings, pool: asyncpg.Pool) -> StructuredLLM:
    """Claude as every step calls it directly: the prompt cache as ANTHROPIC_PROMPT_CACHE says, within
    the budgets."""
    from pipelines.adapters.anthropic_llm import AnthropicLLM

    return budgeted(AnthropicLLM(client, cache=settings.anthropic_prompt_cache), settings, pool)


async def bulk_models(
    settings: Settings, pool: asyncpg.Pool, client: AsyncAnthropic, job: BulkJob, resume_job: str,
) -> tuple[StructuredLLM, StructuredLLM | None]:
    """The models a bulk step (pipelines/batching) is given: the one for a call made now, and the one for
    a call that can wait (None when none may: the job is to call directly, or batches are off). Run with
    a batch's answer, both are that answer."""
    from pipelines.batching.calls import BatchAnswer, BatchQueue

    if job.answer is not None:
        answer = await BatchAnswer.load(pool, job.answer)
        if answer is not None:
            return answer, answer
    direct = claude(client, settings, pool)
    if job.sync or job.answer is not None or not settings.anthropic_batches:
        return direct, None
    return direct, budgeted(BatchQueue(pool, subject_id=job.subject_id, resume_job=resume_job), settings, pool)


def build_triager(
    settings: Settings, pool: asyncpg.Pool, taxonomy: Taxonomy, embedder: Embedder | None
) -> Triager:
    from pipelines.triage.local.triager import LocalTriager, similar_examples
    from pipelines.triage.triagers import CascadeTriager, ClaudeTriager

    local = LocalTriager(pool, taxonomy, embedder)
    anthropic = clients.anthropic_client(settings)
    escalation = None
    if anthropic is not None:
        escalation = ClaudeTriager(
            claude(anthropic, settings, pool),
            taxonomy,
            model=model_for(settings, "triage"),
            system=load("triage"),
            request=load("triage_request"),
            similar=similar_examples(pool, embedder) if embedder else None,
            pii=settings.pii_policy,
        )
    return CascadeTriager(local, escalation, high=settings.confidence_threshold_high)


def build_drafter(settings: Settings, pool: asyncpg.Pool, clock: Callable[[], float] = time.monotonic) -> Drafter:
    """Claude with a key, held to the budgets and falling back to the extractive draft; the extractive
    draft alone without. `clock` tells Claude how busy the desk is (see ClaudeDrafter)."""
    from pipelines.adapters.anthropic_llm import cache_minimum
    from pipelines.drafting.drafters import ClaudeDrafter, ExtractiveDrafter, FallbackDrafter

    extractive = ExtractiveDrafter(company=settings.company_name, high=settings.confidence_threshold_high)
    anthropic = clients.anthropic_client(settings)
    drafter = None
    if anthropic is not None:
        model = model_for(settings, "draft")
        drafter = ClaudeDrafter(claude(anthropic, settings, pool), model=model, system=load("draft"),
                                request=load("draft_request"), company=settings.company_name,
                                cache_minimum=cache_minimum(model) if settings.anthropic_prompt_cache else None,
                                clock=clock)
    return FallbackDrafter(drafter, extractive)
