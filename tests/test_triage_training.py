"""Training the local triager: its stages reported as it goes, and an unchanged history, keyed by its
content, reusing the model trained on it instead of training again (`cx triage train`, the retrain job)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import asyncpg
import numpy as np
from openai import AsyncOpenAI

from bot.cli.triage import training_outcome
from bot.settings import Settings
from db import examples as examples_db
from db import triage_models
from db.pool import transaction
from pipelines.adapters.openai_embedder import OpenAIEmbedder
from pipelines.intake.case_history import PastCase, import_cases, unlabelled_history
from pipelines.learning.retrain import retrain_if_due
from pipelines.triage.local import progress as stages
from pipelines.triage.local.finetune import torch_available
from pipelines.triage.local.model import (
    HIGH_CONFIDENCE,
    SELF_TRAINING_BELOW,
    SELF_TRAINING_MIN_CASES,
    self_trains,
    train,
)
from pipelines.triage.local.triager import TUNED_TEMPERATURE, LocalTriager, TrainReport, history_key, train_local
from tests.cli_runner import cx, cx_env
from tests.fakes.openai import FakeOpenAI
from tests.support.triage import CATEGORY, HISTORY, few_labelled

ROWS = [(t, label) for label, texts in HISTORY.items() for t in texts]


async def add(pool: asyncpg.Pool, rows: list[tuple[str, str]], source: str = "import") -> None:
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [(t, CATEGORY[label], label, None) for t, label in rows], source=source)


async def models(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT model_id, status, history_key FROM triage_models ORDER BY created_at")


async def active(pool: asyncpg.Pool) -> object:
    async with pool.acquire() as conn:
        return await triage_models.active_id(conn)


class Recorded:
    """Every stage with its total and the steps advanced in it, and the threads that reported."""

    def __init__(self) -> None:
        self.stages: list[list[object]] = []  # [name, total, advanced]
        self.threads: set[str] = set()

    def stage(self, name: str, total: int | None) -> None:
        self.threads.add(threading.current_thread().name)
        self.stages.append([name, total, 0])

    def advance(self, n: int = 1) -> None:
        self.threads.add(threading.current_thread().name)
        self.stages[-1][2] += n  # type: ignore[operator]


async def test_an_unchanged_history_reuses_its_model_and_a_changed_one_trains(pool):
    await add(pool, ROWS)
    first = await train_local(pool, None)
    assert not first.reused and first.examples == 18
    first_id = await active(pool)

    again = await train_local(pool, None)
    assert again.reused and (again.examples, again.labels, again.kind) == (18, 3, "tfidf-svm")
    assert await active(pool) == first_id and len(await models(pool)) == 1

    await add(pool, [("my card is still not here", "card_arrival")], source="correction")
    added = await train_local(pool, None)
    assert not added.reused and added.examples == 19
    assert len(await models(pool)) == 2 and await active(pool) != first_id

    # One label changed, same texts: another history.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE labelled_examples SET subcategory = 'exchange_rate', category = 'exchange' "
                           "WHERE text = 'my card is still not here'")
    relabelled = await train_local(pool, None)
    assert not relabelled.reused and len(await models(pool)) == 3

    # Back to the first history: the retired model that was trained on it serves again.
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM labelled_examples WHERE text = 'my card is still not here'")
    back = await train_local(pool, None)
    assert back.reused and back.examples == 18
    rows = await models(pool)
    assert len(rows) == 3 and await active(pool) == first_id
    assert [r["status"] for r in rows].count("active") == 1


async def test_force_trains_an_unchanged_history(pool):
    await add(pool, ROWS)
    await train_local(pool, None)
    first_id = await active(pool)
    forced = await train_local(pool, None, force=True)
    assert not forced.reused
    rows = await models(pool)
    assert len(rows) == 2 and await active(pool) != first_id
    assert rows[0]["history_key"] == rows[1]["history_key"]


def test_the_key_is_the_content_in_any_order_the_embedder_and_the_recipe():
    texts, labels = [t for t, _ in ROWS], [label for _, label in ROWS]
    key = history_key(texts, labels, None)
    assert history_key(texts[::-1], labels[::-1], None) == key
    assert history_key(texts + texts[:1], labels + labels[:1], None) != key  # a duplicate weighs
    assert history_key(texts, [labels[-1], *labels[1:]], None) != key  # one label changed
    small = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"))
    large = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"), "text-embedding-3-large")
    assert len({key, history_key(texts, labels, small), history_key(texts, labels, large)}) == 3


async def test_another_embedder_does_not_reuse_the_model(pool):
    await add(pool, ROWS)
    await train_local(pool, None)
    async with FakeOpenAI() as fake:
        embedder = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url=fake.url + "/v1"))
        report = await train_local(pool, embedder)
    assert not report.reused and report.kind == "tfidf-svm+frozen-knn"
    assert len(await models(pool)) == 2


async def test_the_stages_come_in_order_with_their_totals(pool):
    await add(pool, ROWS)
    recorded = Recorded()
    async with FakeOpenAI() as fake:
        embedder = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url=fake.url + "/v1"))
        report = await train_local(pool, embedder, progress=recorded)
    assert report.embedded_now == 18
    # 6 examples a label: 5-fold calibration.
    assert recorded.stages == [[stages.EMBEDDING, 18, 18], [stages.FITTING, 1, 1], [stages.CALIBRATING, 5, 5]]
    assert any(name.startswith("cx-model") for name in recorded.threads), "fit reports from the model thread"

    reused = Recorded()
    assert (await train_local(pool, embedder, progress=reused)).reused and reused.stages == []


def test_fine_tuning_reports_a_step_per_batch():
    assert torch_available(), "the local extra is installed where the tests run"
    from pipelines.adapters.local_embedder import LocalEmbedder

    texts, labels = [t for t, _ in ROWS], [label for _, label in ROWS]
    frozen = np.random.default_rng(0).normal(size=(len(texts), 384)).astype(np.float32)
    frozen /= np.linalg.norm(frozen, axis=1, keepdims=True)
    recorded = Recorded()
    model = train(texts, labels, frozen, tune_base=LocalEmbedder("all-MiniLM-L6-v2").tunable_path,
                  tuned_temperature=TUNED_TEMPERATURE, progress=recorded)
    assert model.kind == "tfidf-svm+frozen-knn+tuned-minilm"
    # 18 examples in batches of 32: one step; the tuned temperature needs no calibration.
    assert recorded.stages == [[stages.FITTING, 1, 1], [stages.FINE_TUNING, 1, 1], [stages.ENCODING, 18, 18]]


async def test_the_retrain_job_skips_a_history_the_active_model_was_trained_on(pool):
    await add(pool, ROWS)
    await train_local(pool, None)
    # The same examples written again (an export and a re-import): due by count, unchanged by content.
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM labelled_examples")
    await add(pool, ROWS)
    assert await retrain_if_due(pool, None, 10) is None
    assert len(await models(pool)) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM triage_retrains") == 0

    await add(pool, [(f"where is my card number {i}", "card_arrival") for i in range(10)], source="correction")
    outcome = await retrain_if_due(pool, None, 10)
    assert outcome is not None and outcome.examples == 28
    assert len(await models(pool)) == 2


async def test_prune_keeps_the_models_that_served_whatever_the_rejected_ones(pool):
    async with pool.acquire() as conn:
        def save(status: str, key: str):
            return triage_models.save(
                conn, kind="tfidf-svm", embedding_model=None, labels=["a", "b"], n_examples=2,
                examples_until=datetime.now(UTC), train_seconds=0.1, metrics={}, payload=b"x", status=status,
                history_key=key)

        served = await save("active", "k1")
        now = await save("active", "k2")
        rejected = [await save("rejected", f"r{i}") for i in range(4)]
        assert await triage_models.prune(conn, keep=2) == 2
        left = {r["model_id"] for r in await conn.fetch("SELECT model_id FROM triage_models")}
        assert left == {served, now, *rejected[-2:]}
        reused = await triage_models.reuse(conn, "k1")
        assert reused is not None and reused.model_id == served and not reused.was_active
        assert await triage_models.active_id(conn) == served
        assert await triage_models.reuse(conn, "r3") is None, "a rejected candidate is never made active"


async def test_cx_triage_train_twice_reuses_the_model_the_second_time(pool, dsn):
    await add(pool, ROWS)
    env = cx_env(DATABASE_URL=dsn, EMBEDDINGS="none")
    first = cx("triage", "train", env=env)
    assert first.returncode == 0, first.stderr
    assert "Trained a tfidf-svm model on 18 examples, 3 labels," in first.stdout
    assert f"Training: {stages.FITTING} (1)" in first.stderr and stages.FITTING not in first.stdout
    second = cx("triage", "train", env=env)
    assert second.returncode == 0, second.stderr
    assert "History unchanged since " in second.stdout
    assert ": reusing the model trained then (18 examples)." in second.stdout
    assert "Training:" not in second.stderr
    forced = cx("triage", "train", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "Trained a tfidf-svm model on 18 examples" in forced.stdout


async def test_the_taxonomys_descriptions_join_the_training_and_its_key(pool):
    """With a taxonomy, each label the history has gains its description as one more example (and the
    history key changes with them): a request worded like a description goes to its label."""
    from tests.support.triage import TAXONOMY

    # card_arrival's description is "A card that was ordered has not arrived."; no example says "ordered".
    request = ["I ordered one"]
    await add(pool, ROWS)
    plain = await train_local(pool, None)
    before = await LocalTriager(pool, None, None, refresh_seconds=0).classify(request)
    described = await train_local(pool, None, taxonomy=TAXONOMY)
    assert not described.reused and described.examples == plain.examples and described.descriptions == 3
    keys = [row["history_key"] for row in await models(pool)]
    assert len(set(keys)) == 2
    after = await LocalTriager(pool, None, None, refresh_seconds=0).classify(request)
    assert after.labels == ["card_arrival"]
    assert before.labels != ["card_arrival"] or after.confidence[0] > before.confidence[0]
    again = await train_local(pool, None, taxonomy=TAXONOMY)
    assert again.reused and again.examples == plain.examples


def test_a_case_reaches_high_only_when_the_stricter_temperature_agrees():
    """Below HIGH the likelihood's temperature decides; at or above it, the HIGH temperature must agree,
    or the case stops just below HIGH (drafted and reviewed, never sent on its own)."""
    from pipelines.triage.local.model import BELOW_HIGH, HIGH_CONFIDENCE, LocalModel, fit_temperatures, softmax

    model = LocalModel.__new__(LocalModel)
    model.temperature, model.high_temperature = 1.0, 2.0
    logits = np.log(np.array([[0.995, 0.003, 0.002], [0.88, 0.06, 0.06], [0.60, 0.30, 0.10]]))
    probs = model.calibrated(logits.copy())
    plain = softmax(logits)
    assert probs[0, 0] == plain[0, 0] and softmax(logits / 2.0)[0, 0] >= HIGH_CONFIDENCE  # both agree: kept
    assert softmax(logits / 2.0)[1, 0] < HIGH_CONFIDENCE and probs[1, 0] == BELOW_HIGH  # demoted
    assert np.allclose(probs[2], plain[2])  # below HIGH: the likelihood's own

    # Out-of-fold logits where a fifth of the confident cases are wrong: the HIGH temperature rises
    # until those left at or above HIGH are right often enough; the likelihood's stays lower.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    logits = rng.normal(0, 1, (400, 5))
    logits[np.arange(400), y] += 4.0
    wrong = rng.random(400) < 0.2
    logits[np.arange(400)[wrong], (y[wrong] + 1) % 5] += 6.0
    fitted = fit_temperatures(logits, y)
    assert fitted.high > fitted.likelihood
    confident = softmax(logits / fitted.high).max(axis=1) >= HIGH_CONFIDENCE
    assert not confident.any() or (logits.argmax(axis=1) == y)[confident].mean() >= 0.985


def test_self_training_learns_from_unlabelled_cases_and_claims_no_more_than_its_teacher():
    labelled, unlabelled, test = few_labelled()
    model = train([t for t, _ in labelled], [label for _, label in labelled], unlabelled=unlabelled)
    assert model.teacher is not None and model.kind == "tfidf-svm+self-trained"
    assert 0 < model.pseudo_labelled < len(unlabelled)

    texts, truth = [t for t, _ in test], np.array([label for _, label in test])
    best, confidence = model.top(texts)
    taught = model.teacher.predict(texts)[np.arange(len(texts)), best]
    assert np.all(confidence <= taught)  # never surer than the model whose calibration was measured
    right = np.array(model.labels)[best] == truth
    teacher_best, _ = model.teacher.top(texts)
    teacher_right = np.array(model.labels)[teacher_best] == truth
    # Measured: 0.813 for the five labelled examples per label alone, 0.882 self-trained.
    assert right.mean() >= teacher_right.mean() + 0.04, (right.mean(), teacher_right.mean())
    high = confidence >= HIGH_CONFIDENCE
    assert high.sum() >= 0.3 * len(texts) and right[high].mean() >= 0.98, (high.mean(), right[high].mean())


def test_a_large_history_or_a_few_unlabelled_cases_do_not_self_train():
    small = [label for label in "abc" for _ in range(SELF_TRAINING_BELOW - 1)]
    large = [label for label in "abc" for _ in range(SELF_TRAINING_BELOW)]
    assert self_trains(small) and self_trains(small, SELF_TRAINING_MIN_CASES)
    assert not self_trains(small, SELF_TRAINING_MIN_CASES - 1)
    assert not self_trains(large) and not self_trains(large, 10_000)

    labelled, unlabelled, _ = few_labelled(labels=5)
    model = train([t for t, _ in labelled], [label for _, label in labelled],
                  unlabelled=unlabelled[: SELF_TRAINING_MIN_CASES - 1])
    assert model.teacher is None and model.pseudo_labelled == 0 and model.kind == "tfidf-svm"


async def test_training_self_trains_on_the_desks_unlabelled_cases_which_key_its_history(pool):
    labelled, unlabelled, test = few_labelled()
    async with transaction(pool) as conn:  # BANKING77's labels are categories of their own
        await examples_db.add_examples(conn, [(t, label, None, None) for t, label in labelled], source="import")
    random.Random(1).shuffle(unlabelled)  # few_labelled's are in label order
    await import_cases(pool, unlabelled_history(unlabelled[:600]), None)
    # A past case imported with its label is labelled history, and an erased one is nobody's text.
    labelled_case = PastCase(external_id="labelled-1", received_at=datetime.now(UTC),
                             customer_email="someone@example.com", description=test[0][0], category=test[0][1])
    await import_cases(pool, [labelled_case], None)
    erased = PastCase(external_id="erased-1", received_at=datetime.now(UTC), customer_email="gone@example.com",
                      description="My card was stolen on the bus")
    await import_cases(pool, [erased], None)
    async with pool.acquire() as conn:  # as `cx customers erase` leaves a case (db/erasure.py)
        assert await conn.execute("UPDATE cases SET subject = NULL, description = '' "
                                  "WHERE external_id = 'erased-1'") == "UPDATE 1"

    report = await train_local(pool, None)
    assert (report.examples, report.unlabelled) == (len(labelled) + 1, 600)
    assert 0 < report.pseudo_labelled < 600 and report.kind == "tfidf-svm+self-trained"
    assert (await train_local(pool, None)).reused

    triager = LocalTriager(pool, None, None)
    classified = await triager.classify([t for t, _ in test[1:]])
    right = np.mean([label == expected for label, (_, expected) in zip(classified.labels, test[1:])])
    assert right >= 0.85, right  # 0.81 for the labelled examples alone (the test above)

    # A new case is new history: the next training self-trains on it too.
    await import_cases(pool, [PastCase(external_id="new-1", received_at=datetime.now(UTC),
                                       customer_email="someone@example.com", description=unlabelled[600])], None)
    retrained = await train_local(pool, None)
    assert not retrained.reused and retrained.unlabelled == 601

    # With embeddings, the cases without a vector are embedded once and stored like every case vector.
    async with FakeOpenAI() as fake:
        embedder = OpenAIEmbedder(AsyncOpenAI(api_key="k", base_url=fake.url + "/v1"))
        assert (await train_local(pool, embedder)).unlabelled == 601
        async with pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM case_embeddings")
            calls = await conn.fetchval("SELECT count(*) FROM llm_usage WHERE step = 'case_embed'")
        assert stored == 601 and calls > 0
        await train_local(pool, embedder, force=True)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM llm_usage WHERE step = 'case_embed'") == calls


def test_the_training_line_says_whether_it_self_trained():
    settings = Settings(_env_file=None)
    report = TrainReport(76, 15, 0, 3.0, "tfidf-svm+self-trained", datetime.now(UTC), unlabelled=600,
                         pseudo_labelled=517)
    assert "It self-trained on 517 of 600 unlabelled cases" in training_outcome(report, settings)
    narrow = TrainReport(76, 15, 0, 1.0, "tfidf-svm", datetime.now(UTC), unlabelled=600)
    assert "It did not self-train" in training_outcome(narrow, settings)
    assert "self-train" not in training_outcome(TrainReport(76, 15, 0, 1.0, "tfidf-svm", datetime.now(UTC)), settings)
