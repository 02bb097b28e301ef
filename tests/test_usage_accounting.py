"""Every AI call is in llm_usage, priced: embeddings for a search, for the knowledge base and for the
labelled history, the local models (at zero cost, not unpriced), and Claude's prompt-cache writes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from pydantic import BaseModel

from db import examples as examples_db
from db.pool import transaction
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.kb.documents import Article, ArticleMeta
from pipelines.kb.ingest import ingest
from pipelines.kb.search import search
from pipelines.ports import LLMUsage
from pipelines.triage.local.triager import LocalTriager, train_local
from pipelines.triage.step import triage_case
from pipelines.triage.triagers import CascadeTriager
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import new_case
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal, answer, claude_for


class BilledEmbedder:
    """An in-repo embedder that bills like OpenAI: one token per word, deterministic unit vectors."""

    provider = "openai"
    model = "text-embedding-3-small"
    dimensions = 16

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).normal(size=self.dimensions)
            rows.append(v / np.linalg.norm(v))
        tokens = sum(len(t.split()) for t in texts)
        return np.asarray(rows, dtype=np.float32), LLMUsage(step="embedding", provider=self.provider,
                                                             model=self.model, input_tokens=tokens)


class LocalEmbedder(BilledEmbedder):
    provider = "local"
    model = "in-repo-local"


class Row(BaseModel):
    step: str
    provider: str
    model: str
    input_tokens: int
    cost_usd: float | None
    case_id: object = None


async def usage_rows(pool) -> list[Row]:
    rows = await pool.fetch("SELECT step, provider, model, input_tokens, cost_usd::float8 AS cost_usd, case_id "
                            "FROM llm_usage ORDER BY created_at")
    return [Row(**dict(r)) for r in rows]


async def test_knowledge_base_embeddings_and_searches_are_accounted_and_priced(pool):
    articles = [Article("import", f"a{i}", ArticleMeta(title=f"Article {i}"), f"# Article {i}\n\nCard delivery "
                        f"takes {i} days once the card is ordered from the app.") for i in range(3)]
    embedder = BilledEmbedder()
    await ingest(pool, articles, embedder)
    [embedded] = [r for r in await usage_rows(pool) if r.step == "kb_embed"]
    assert (embedded.provider, embedded.model) == ("openai", "text-embedding-3-small")
    assert embedded.input_tokens > 0 and embedded.cost_usd is not None and embedded.cost_usd > 0

    case_id = await new_case(pool, "When will my new card arrive?")
    await search(pool, embedder, "When will my new card arrive?", 3, case_id=case_id)
    [searched] = [r for r in await usage_rows(pool) if r.step == "kb_search"]
    assert searched.case_id == case_id and searched.input_tokens == 6
    assert searched.cost_usd == pytest.approx(6 * 0.02 / 1e6)


async def test_local_triage_records_its_model_and_embedding_calls_at_zero_cost(pool):
    history = [(f"my card has not arrived yet, day {i}", "card_delivery", "card_arrival", None) for i in range(4)]
    history += [(f"I want to top up by bank transfer {i}", "top_up", "top_up_by_bank_transfer_charge", None)
                for i in range(4)]
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, history, source="import")
    embedder = LocalEmbedder()
    await train_local(pool, embedder)
    trained = [r for r in await usage_rows(pool) if r.step == "triage_train"]
    assert trained and all(r.provider == "local" and r.cost_usd == 0 for r in trained)

    case_id = await new_case(pool, "my card has still not arrived")
    cascade = CascadeTriager(LocalTriager(pool, TAXONOMY, embedder), None, high=0.85)
    await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, case_id)
    triage = [r for r in await usage_rows(pool) if r.case_id == case_id]
    assert {(r.step, r.model) for r in triage} == {("triage", "in-repo-local"), ("triage", "tfidf-svm+frozen-knn")}
    assert all(r.provider == "local" and r.cost_usd == 0 for r in triage), "local calls cost zero, not NULL"


async def test_prompt_cache_writes_are_priced(pool):
    async with FakeAnthropic() as fake:
        fake.script(fake.tool_use(TOOL_NAME, answer()), fake.tool_use(TOOL_NAME, answer()))
        # Sonnet 4.5 caches from 1,024 tokens, which triage's tools + system prompt reach; Haiku 4.5 needs 4,096.
        cascade = CascadeTriager(ScriptedLocal(0.5), claude_for(fake, model="claude-sonnet-4-5"), high=0.85)
        for text in ("My transfer has not arrived.", "My salary transfer is missing."):
            await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, await new_case(pool, text))
    rows = await pool.fetch("SELECT input_tokens, output_tokens, cached_tokens, cache_write_tokens, "
                            "cost_usd::float8 AS cost FROM llm_usage WHERE provider = 'anthropic' ORDER BY created_at")
    first, second = rows
    # claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million tokens.
    assert first["cache_write_tokens"] > 0 and first["cached_tokens"] == 0
    assert second["cached_tokens"] == first["cache_write_tokens"] and second["cache_write_tokens"] == 0
    assert first["cost"] == pytest.approx((first["input_tokens"] * 3.00 + first["output_tokens"] * 15.00
                                           + first["cache_write_tokens"] * 3.75) / 1e6)
    assert second["cost"] == pytest.approx((second["input_tokens"] * 3.00 + second["output_tokens"] * 15.00
                                            + second["cached_tokens"] * 0.30) / 1e6)
