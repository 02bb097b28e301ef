"""The local triager: training from the database, calibrated confidence, and learning a
correction at once (kNN) without retraining. Embeddings come from the real OpenAI SDK against
the fake embeddings API."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from openai import AsyncOpenAI

from db import examples as examples_db
from db.pool import transaction
from pipelines.adapters.openai_embedder import OpenAIEmbedder
from pipelines.ports import TriageInput
from pipelines.triage.local.model import train
from pipelines.triage.local.triager import LocalTriager, NoLocalModel, train_local
from tests.fakes.openai import FakeOpenAI
from tests.support.triage import CATEGORY, HISTORY, TAXONOMY

ROOT = Path(__file__).resolve().parent.parent


async def add_history(pool, rows, source="import"):
    async with transaction(pool) as conn:
        return await examples_db.add_examples(
            conn, [(text, CATEGORY[label], label, None) for text, label in rows], source=source)


async def test_a_correction_is_learned_at_once_without_retraining(pool):
    await add_history(pool, [(t, label) for label, texts in HISTORY.items() for t in texts])
    async with FakeOpenAI() as fake:
        embedder = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url=fake.url + "/v1"))
        report = await train_local(pool, embedder)
        assert report.embedded_now == 18 and report.kind == "tfidf-svm+frozen-knn"
        triager = LocalTriager(pool, TAXONOMY, embedder, refresh_seconds=0)
        odd = "please freeze everything right now"
        [before] = (await triager.classify([odd])).labels

        wanted = next(label for label in HISTORY if label != before)
        await add_history(pool, [(odd, wanted)], source="correction")
        [after] = (await triager.classify([odd])).labels
        assert after == wanted, "the correction counts before any retrain"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM triage_models") == 1

        other = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url=fake.url + "/v1"), "text-embedding-3-large")
        with pytest.raises(NoLocalModel, match="trained with embeddings from text-embedding-3-small"):
            await LocalTriager(pool, TAXONOMY, other).classify([odd])


async def test_no_model_yet_is_a_clear_error(pool):
    with pytest.raises(NoLocalModel, match="cx cases import"):
        await LocalTriager(pool, TAXONOMY, None).classify(["hello"])


def sample_history():
    rows = list(csv.DictReader(open(ROOT / "samples" / "history" / "banking77-sample.csv", newline="")))
    random.Random(3).shuffle(rows)
    return rows


def test_text_only_model_is_calibrated_on_held_out_data():
    rows = sample_history()
    cut = int(len(rows) * 0.8)
    train_rows, test_rows = rows[:cut], rows[cut:]
    model = train([r["text"] for r in train_rows], [r["category"] for r in train_rows])
    probs = model.predict([r["text"] for r in test_rows])
    predicted = [model.labels[i] for i in probs.argmax(1)]
    correct = np.array([p == r["category"] for p, r in zip(predicted, test_rows)])
    confidence = probs.max(1)
    # 12 examples per intent is little; the point is that confidence tracks accuracy.
    assert correct.mean() > 0.6
    assert abs(confidence.mean() - correct.mean()) < 0.1, (confidence.mean(), correct.mean())
    assert model.kind == "tfidf-svm" and model.temperature != 1.0


def test_a_model_survives_pickling_and_predicts_the_same():
    rows = sample_history()[:300]
    model = train([r["text"] for r in rows], [r["category"] for r in rows], folds=2)
    again = type(model).loads(model.dumps())
    texts = [r["text"] for r in rows[:20]]
    assert np.allclose(model.predict(texts), again.predict(texts))


FOREIGN = ["カァドが届かない", "我的银行卡还没有收到", "카드가 아직 도착하지 않았어요", "Моя карта до сих пор не пришла",
           "لم تصل بطاقتي بعد", "Η κάρτα μου δεν έχει φτάσει ακόμα", "Meine Karte ist noch nicht angekommen",
           "Ma carte n'est toujours pas arrivée", "Moja karta jeszcze nie przyszła"]


async def test_a_language_the_history_lacks_is_never_routed_confidently_whatever_its_script(pool):
    await add_history(pool, [(t, label) for label, texts in HISTORY.items() for t in texts])
    await train_local(pool, None)
    triager = LocalTriager(pool, TAXONOMY, None, refresh_seconds=0)
    for text in FOREIGN:
        result = (await triager.triage(TriageInput(body=text))).result
        assert result.confidence <= triager.foreign_language_cap, text
        assert result.language != "en" and "so a person checks it" in result.reason, text
    english = (await triager.triage(TriageInput(body="my card has not arrived yet"))).result
    assert english.language == "en" and "a person checks it" not in english.reason
