"""Multilingual KB search: USE multilingual puts a German or French question next to the English
article that answers it; the import keeps a multilingual vector per chunk, refreshed by the same
content-hash rule as the other vector; search adds that ranking for non-English questions only,
and records the embedding it cost."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from db import kb as kb_db
from db.pool import create_pool
from pipelines.adapters.multilingual_embedder import MultilingualEmbedder
from pipelines.kb.documents import collect, read_file
from pipelines.kb.ingest import ingest, reembed
from pipelines.kb.search import search
from pipelines.ports import LLMUsage
from tests.cli_runner import ROOT
from tests.conftest import TEMPLATE, _scratch_database

SAMPLES = ROOT / "samples" / "kb"

# Questions the English-only ranking misses at 5 (measured), each with the article (file stem) it needs.
FOREIGN = [
    ("Meine Überweisung ist nicht angekommen", "transfer-not-received"),
    ("J'ai perdu ma carte, que dois-je faire ?", "lost-or-stolen-card"),
    ("Hallo, ich habe vor zehn Tagen meine Karte bestellt und sie ist immer noch nicht da. Wie lange dauert der "
     "Versand nach Deutschland normalerweise?", "card-arrival"),
]


class Recording:
    """The real multilingual embedder, remembering what it was asked to embed."""

    provider, model, dimensions = "local", "use-multilingual-v3", 512

    def __init__(self, inner: MultilingualEmbedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        self.texts += texts
        return await self.inner.embed(texts)


@pytest.fixture(scope="module")
def use_m() -> MultilingualEmbedder:
    return MultilingualEmbedder()


@pytest.fixture(scope="module")
async def kb(pg_admin_url: str, template_url: str, minilm, use_m) -> AsyncIterator[asyncpg.Pool]:
    """samples/kb imported with both embedders, once for the module (MiniLM's first load is most of its time)."""
    async for url in _scratch_database(pg_admin_url, "kbmulti", TEMPLATE):
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            articles = [a for path, root in collect([SAMPLES]) for a in read_file(path, root)]
            report = await ingest(pool, articles, minilm, multilingual=use_m)
            assert report.chunks_embedded == report.chunks_embedded_multilingual > 24
            yield pool
        finally:
            await pool.close()


async def rank(pool: asyncpg.Pool, minilm, question: str, expected: str, multilingual=None) -> int | None:
    hits = await search(pool, minilm, question, 5, multilingual=multilingual)
    async with pool.acquire() as conn:
        names = await kb_db.source_ids(conn)
    stems = [names[h.article_id].removesuffix(".md") for h in hits]
    return stems.index(expected) + 1 if expected in stems else None


async def test_german_and_english_share_one_space(use_m):
    vectors, usage = await use_m.embed(["Meine Karte ist noch nicht angekommen", "When will my card arrive?",
                                        "How do I reset my passcode?"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    german, its_title, unrelated = vectors
    assert float(german @ its_title) > float(german @ unrelated) + 0.2
    assert (usage.provider, usage.model, usage.step) == ("local", "use-multilingual-v3", "embedding")


async def test_import_fills_every_chunk_and_a_change_refreshes_only_changed_chunks(pool, tmp_path: Path, use_m,
                                                                                    minilm):
    folder = tmp_path / "kb"
    folder.mkdir()
    for name in ("card-arrival.md", "pin-blocked.md", "refunds.md"):
        shutil.copy(SAMPLES / name, folder / name)
    recording = Recording(use_m)

    def load() -> list:
        return [a for path, root in collect([folder]) for a in read_file(path, root)]

    first = await ingest(pool, load(), None, multilingual=recording)
    async with pool.acquire() as conn:
        before = {r["chunk_id"]: (r["content_hash"], np.asarray(r["embedding_multilingual"].to_numpy()))
                  for r in await conn.fetch("SELECT chunk_id, content_hash, embedding_multilingual FROM kb_chunks")}
    assert first.chunks_embedded_multilingual == len(before) == len(recording.texts) > 3
    assert all(v.shape == (512,) for _, v in before.values())
    # The text embedded is the chunk's heading and content, as for the other vector.
    assert any(t.startswith("When will my card arrive?") and "\n\n" in t for t in recording.texts)

    assert (await ingest(pool, load(), None, multilingual=recording)).chunks_embedded_multilingual == 0

    path = folder / "pin-blocked.md"
    path.write_text(path.read_text() + "\nA new closing sentence about PIN reminders in the app.\n")
    recording.texts.clear()
    edited = await ingest(pool, load(), None, multilingual=recording)
    assert edited.changes == {"updated": 1, "unchanged": 2} and edited.chunks_embedded_multilingual == 1
    assert len(recording.texts) == 1 and "PIN reminders" in recording.texts[0]
    async with pool.acquire() as conn:
        after = {r["content_hash"]: np.asarray(r["embedding_multilingual"].to_numpy())
                 for r in await conn.fetch("SELECT content_hash, embedding_multilingual FROM kb_chunks")}
        missing = await conn.fetchval("SELECT count(*) FROM kb_chunks WHERE embedding_multilingual IS NULL")
    assert missing == 0 and len(after) == len(before)
    kept = [h for h, _ in before.values() if h in after]
    assert len(kept) == len(before) - 1  # one chunk changed, every other vector kept as it was
    assert all(np.array_equal(after[h], v) for h, v in before.values() if h in after)

    # `cx kb reembed` drops both kinds of vector and fills both again.
    recording.texts.clear()
    assert await reembed(pool, minilm, multilingual=recording) == len(after) == len(recording.texts)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM kb_chunks WHERE embedding_multilingual IS NULL "
                                   "OR embedding IS NULL") == 0


@pytest.mark.parametrize(("question", "expected"), FOREIGN)
async def test_a_foreign_question_finds_its_english_article_through_the_multilingual_ranking(
    kb, minilm, use_m, question: str, expected: str
):
    with_leg = await rank(kb, minilm, question, expected, multilingual=use_m)
    without = await rank(kb, minilm, question, expected)
    assert with_leg is not None and with_leg <= 3, (question, with_leg)
    assert without is None or without > 3, (question, without)


async def test_without_the_deployment_embedder_full_text_and_the_multilingual_ranking_still_fuse(kb, use_m):
    question, expected = FOREIGN[0]
    assert await rank(kb, None, question, expected) is None
    assert await rank(kb, None, question, expected, multilingual=use_m) <= 3


async def test_an_english_question_is_ranked_as_without_the_multilingual_embedder(kb, minilm, use_m):
    recording = Recording(use_m)
    question = "my card stopped working on holiday in Spain"
    plain = await search(kb, minilm, question, 5)
    with_embedder = await search(kb, minilm, question, 5, multilingual=recording)
    assert recording.texts == []  # not even embedded
    assert [(h.chunk_id, h.score, h.vector_rank, h.text_rank) for h in with_embedder] == [
        (h.chunk_id, h.score, h.vector_rank, h.text_rank) for h in plain]


async def test_usage_is_recorded_for_the_multilingual_embeddings(kb, minilm, use_m):
    async def calls() -> dict[str, int]:
        async with kb.acquire() as conn:
            rows = await conn.fetch("SELECT step, count(*) AS n FROM llm_usage WHERE model = 'use-multilingual-v3' "
                                    "AND provider = 'local' GROUP BY step")
        return {r["step"]: r["n"] for r in rows}

    before = await calls()
    assert before.get("kb_embed", 0) >= 1  # the import's batches
    await search(kb, minilm, "Ich habe meine PIN vergessen", 3, multilingual=use_m)
    await search(kb, minilm, "I forgot my PIN", 3, multilingual=use_m)
    after = await calls()
    assert after.get("kb_search", 0) == before.get("kb_search", 0) + 1
