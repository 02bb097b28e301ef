"""The `local` extra for real: the shipped MiniLM weights, and the full local recipe (fine-tuned
encoder included) trained on a small history."""

from __future__ import annotations

import numpy as np

from db import examples as examples_db
from db.pool import transaction
from pipelines.adapters.local_embedder import LocalEmbedder
from pipelines.triage.local.model import LocalModel
from pipelines.triage.local.triager import LocalTriager, train_local
from tests.support.triage import CATEGORY, HISTORY, TAXONOMY


async def test_the_shipped_minilm_embeds_offline():
    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    vectors, usage = await embedder.embed(["my card has not arrived", "my new card is not here yet", "what is the FX rate"])
    assert vectors.shape == (3, 384) and embedder.dimensions == 384
    # A local model's call is accounted too (at zero cost: llm_usage prices provider local at 0).
    assert (usage.step, usage.provider, usage.model) == ("embedding", "local", "all-MiniLM-L6-v2")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


async def test_the_full_local_recipe_trains_and_classifies(pool):
    async with transaction(pool) as conn:
        await examples_db.add_examples(
            conn, [(t, CATEGORY[label], label, None) for label, texts in HISTORY.items() for t in texts],
            source="import")
    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    report = await train_local(pool, embedder)
    assert report.kind == "tfidf-svm+frozen-knn+tuned-minilm"
    triager = LocalTriager(pool, TAXONOMY, embedder)
    classified = await triager.classify(["somebody stole my card on the train", "my card never arrived"])
    labels, confidence = classified.labels, classified.confidence
    assert labels == ["lost_or_stolen_card", "card_arrival"]
    assert all(0 < c <= 1 for c in confidence)
    async with pool.acquire() as conn:
        payload = await conn.fetchval("SELECT payload FROM triage_models")
    again = LocalModel.loads(payload)
    vectors, _ = await embedder.embed(["my card never arrived"])
    assert again.labels[int(again.predict(["my card never arrived"], vectors).argmax())] == "card_arrival"


async def test_the_single_text_fast_path_gives_the_batch_vectors():
    """One text goes through the TorchScript trace, a batch runs eagerly with padding: the same
    vectors either way, and the same as sentence-transformers' own encode."""
    from pipelines.triage.local.encoder import MeanPoolEncoder

    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    texts = ["ok", "why was I charged twice for one card payment at the supermarket yesterday?", "top up failed"]
    batch, _ = await embedder.embed(texts)
    singles = np.vstack([(await embedder.embed([t]))[0] for t in texts])
    import torch

    assert isinstance(embedder._encoder, MeanPoolEncoder)
    assert isinstance(embedder._encoder._single, torch.jit.ScriptModule)  # the trace, not the eager fallback
    assert np.abs(batch - singles).max() < 1e-5
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(embedder.tunable_path, device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(batch - reference).max() < 1e-4
