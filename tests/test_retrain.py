"""Retraining behind the quality gate: when it is due, a better candidate replacing the active model
(and triagers picking it up), a worse one rejected but kept, both figures recorded, and the active
model surviving prune and retries. Text-only models on small synthetic intents: fast."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from db import examples as examples_db
from db import triage_models
from db.migrate import migrate
from db.pool import transaction
from db.retrains import latest_retrain
from pipelines.jobs import DayJob, JobName
from pipelines.learning.retrain import gate, retrain, retrain_due, retrain_if_due
from pipelines.triage.local.model import LocalModel, train
from pipelines.triage.local.triager import LocalTriager, train_local

MIGRATIONS = Path(__file__).resolve().parent.parent / "db" / "migrations"

# Four intents with words of their own; each text also has filler words and a reference of its own.
VOCAB = {
    "card_arrival": ["card", "arrive", "delivery", "post", "mail", "waiting", "sent", "parcel"],
    "exchange_rate": ["rate", "exchange", "currency", "euro", "dollar", "convert", "fx", "pound"],
    "refund": ["refund", "money", "back", "return", "reimburse", "charge", "shop", "goods"],
    "pin": ["pin", "code", "forgot", "reset", "number", "locked", "digits", "atm"],
}
FILLER = ["hi", "please", "help", "my", "I", "the", "today", "again", "why", "is"]
OLD_LABELS = ["card_arrival", "exchange_rate", "refund"]


def texts(label: str, n: int, batch: int) -> list[str]:
    rng = random.Random(f"{label}/{batch}")
    return [" ".join([*rng.sample(VOCAB[label], 3), *rng.sample(FILLER, 3), f"ref{batch}x{i}"]) for i in range(n)]


OLD = [(t, label) for label in OLD_LABELS for t in texts(label, 20, 1)]


async def add(pool: asyncpg.Pool, rows: list[tuple[str, str]], source: str = "import") -> None:
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [(t, label, None, None) for t, label in rows], source=source)


async def models(pool: asyncpg.Pool) -> dict[str, list]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT model_id, status, cv_accuracy FROM triage_models ORDER BY created_at")
    by_status: dict[str, list] = {"active": [], "rejected": [], "retired": []}
    for row in rows:
        by_status[row["status"]].append(row["model_id"])
    return by_status


async def test_retrain_is_due_from_the_threshold_on(pool):
    await add(pool, OLD)
    async with pool.acquire() as conn:
        assert await retrain_due(conn, 1) is None, "the first model is an operator's: nothing to retrain"
    await train_local(pool, None)
    await add(pool, [(t, "pin") for t in texts("pin", 4, 2)], source="correction")
    async with pool.acquire() as conn:
        assert await retrain_due(conn, 5) is None
        assert await retrain_due(conn, 4) == 4
    await add(pool, [(t, "pin") for t in texts("pin", 1, 3)], source="correction")
    async with pool.acquire() as conn:
        assert await retrain_due(conn, 5) == 5
    # The same text with the same label again is not a new example.
    await add(pool, [(t, "pin") for t in texts("pin", 1, 3)], source="correction")
    async with pool.acquire() as conn:
        assert await retrain_due(conn, 5) == 5


async def test_a_better_candidate_replaces_the_active_model_and_triagers_load_it(pool):
    await add(pool, OLD)
    await train_local(pool, None)
    [first] = (await models(pool))["active"]
    triager = LocalTriager(pool, None, None, refresh_seconds=0)
    pin_text = "I forgot my pin code, reset it please"
    [before] = (await triager.classify([pin_text])).labels
    assert before != "pin", "the first model has never seen the label"

    new = [(t, "pin") for t in texts("pin", 20, 2)]
    await add(pool, new, source="correction")
    outcome = await retrain(pool, None)

    assert outcome.examples == 80 and outcome.new_examples == 20 and outcome.folds == 5
    # The active model cannot name the new label: at best it gets the 60 others right.
    assert outcome.current_accuracy is not None and outcome.current_accuracy <= 60 / 80
    assert outcome.candidate_accuracy > outcome.current_accuracy
    assert outcome.kept
    stored = await models(pool)
    assert stored["active"] == [outcome.model_id] and stored["retired"] == [first] and stored["rejected"] == []
    assert (await triager.classify([pin_text])).labels == ["pin"], "the same triager now answers with the new model"

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT cv_accuracy FROM triage_models WHERE model_id = $1",
                                   outcome.model_id) == pytest.approx(outcome.candidate_accuracy)
        assert await retrain_due(conn, 1) is None, "nothing new since this retrain"


async def test_a_worse_candidate_is_rejected_kept_for_inspection_and_never_loaded(pool):
    await add(pool, OLD)
    await train_local(pool, None)
    [first] = (await models(pool))["active"]
    triager = LocalTriager(pool, None, None, refresh_seconds=0)
    # A bad batch: a near-copy of every known text, each under the wrong label.
    shift = dict(zip(OLD_LABELS, OLD_LABELS[1:] + OLD_LABELS[:1]))
    noisy = [(f"{t} still", shift[label]) for t, label in OLD]
    await add(pool, noisy, source="correction")

    outcome = await retrain(pool, None)

    assert outcome.examples == 120 and outcome.new_examples == 60
    assert not outcome.kept
    # The active model knows the 60 true labels and none of the wrong ones: at most half right.
    assert outcome.current_accuracy is not None and 0.4 <= outcome.current_accuracy <= 0.5
    assert outcome.candidate_accuracy < outcome.current_accuracy
    stored = await models(pool)
    assert stored["active"] == [first] and stored["rejected"] == [outcome.model_id]

    async with pool.acquire() as conn:
        assert await triage_models.active_id(conn) == first
        payloads = {m: (await triage_models.load(conn, m)).payload for m in (first, outcome.model_id)}
    # Which model answers shows in the probabilities: the active one's, not the rejected one's.
    probe = [t for t, _ in noisy[:10]]
    active_probs, rejected_probs = (LocalModel.loads(payloads[m]).predict(probe).max(axis=1)
                                    for m in (first, outcome.model_id))
    assert not np.allclose(active_probs, rejected_probs)
    assert np.allclose((await triager.classify(probe)).confidence, active_probs)

    async with pool.acquire() as conn:
        # The rejected attempt counts as the last training: the next waits for new examples.
        assert await retrain_due(conn, 1) is None


async def test_both_figures_are_stored_and_returned_for_the_report(pool):
    await add(pool, OLD)
    await train_local(pool, None)
    await add(pool, [(t, "pin") for t in texts("pin", 10, 2)], source="correction")
    outcome = await retrain(pool, None)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        found = await latest_retrain(conn, now - timedelta(hours=1), now + timedelta(hours=1))
        assert await latest_retrain(conn, now - timedelta(days=2), now - timedelta(days=1)) is None
    assert found is not None
    assert found.candidate_accuracy == pytest.approx(outcome.candidate_accuracy)
    assert found.current_accuracy == pytest.approx(outcome.current_accuracy)
    assert (found.examples, found.new_examples, found.kept, found.model_id) == (70, 10, True, outcome.model_id)

    # The later of two retrains in the window is the one reported.
    await add(pool, [(t, "pin") for t in texts("pin", 10, 3)], source="correction")
    second = await retrain(pool, None)
    async with pool.acquire() as conn:
        found = await latest_retrain(conn, now - timedelta(hours=1), now + timedelta(hours=1))
    assert found is not None and found.model_id == second.model_id and found.examples == 80


async def test_a_retried_job_retrains_once_and_one_model_stays_active(pool, make_settings):
    await add(pool, OLD)
    await train_local(pool, None)
    await add(pool, [(t, "pin") for t in texts("pin", 10, 2)], source="correction")
    run = job_handlers(Deps(make_settings(retrain_min_new_examples=10), pool, Metrics()))[JobName.RETRAIN]
    payload = DayJob(day=date(2026, 1, 5)).payload()
    await run(payload)
    await run(payload)  # the queue retries a job whose worker died after the commit
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM triage_retrains") == 1
        assert await conn.fetchval("SELECT kept FROM triage_retrains") is True
        assert await conn.fetchval("SELECT count(*) FROM triage_models WHERE status = 'active'") == 1
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("UPDATE triage_models SET status = 'active'")
    assert await retrain_if_due(pool, None, 1) is None


async def test_prune_never_drops_the_active_model(pool):
    async with pool.acquire() as conn:  # one transaction each, as trainings are: distinct created_at
        def save(status):
            return triage_models.save(
                conn, kind="tfidf-svm", embedding_model=None, labels=["a", "b"], n_examples=2,
                examples_until=datetime.now(UTC), train_seconds=0.1, metrics={}, payload=b"x", status=status)

        active = await save("active")
        rejected = [await save("rejected") for _ in range(4)]
        assert await triage_models.prune(conn, keep=2) == 2
        left = {r["model_id"] for r in await conn.fetch("SELECT model_id FROM triage_models")}
        assert left == {active, *rejected[-2:]}
        assert await triage_models.prune(conn, keep=0) == 2
        assert await triage_models.active_id(conn) == active


async def test_the_migration_keeps_the_model_in_use_active(empty_dsn, tmp_path):
    before, gate = tmp_path / "before", tmp_path / "gate"
    for folder in (before, gate):
        folder.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        version = int(path.name[:4])
        if version <= 12:  # what the gate builds on (0006), without the other issue-12 tables
            for folder in (before, gate):
                (folder / path.name).write_text(path.read_text())
        elif path.name == "0016_triage_model_gate.sql":
            (gate / path.name).write_text(path.read_text())
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn, before)
        for days_ago in (2, 1):
            await conn.execute(
                "INSERT INTO triage_models (kind, labels, n_examples, examples_until, train_seconds, payload, "
                "created_at) VALUES ('tfidf-svm', '{a,b}', 2, now(), 0.1, 'x', now() - make_interval(days => $1))",
                days_ago)
        await migrate(conn, gate)
        statuses = [r["status"] for r in await conn.fetch("SELECT status FROM triage_models ORDER BY created_at")]
    finally:
        await conn.close()
    assert statuses == ["retired", "active"]


@pytest.mark.parametrize("with_vectors", [False, True])
def test_with_nothing_new_both_figures_are_the_same_fits(with_vectors):
    rows = OLD + [(t, "pin") for t in texts("pin", 20, 2)]
    all_texts, labels = [t for t, _ in rows], [label for _, label in rows]
    frozen = None
    if with_vectors:  # a test embedder: each label's centre plus noise, unit length
        rng = np.random.default_rng(0)
        centres = {label: rng.normal(size=16) for label in VOCAB}
        frozen = np.stack([centres[label] + rng.normal(scale=1.5, size=16) for label in labels]).astype(np.float32)
        frozen /= np.linalg.norm(frozen, axis=1, keepdims=True)
    current = train(all_texts, labels, frozen, folds=2)
    assert current.uses_embeddings is with_vectors
    score = gate(all_texts, labels, frozen, np.ones(len(rows), dtype=bool), current)
    assert score.folds == 5 and score.n == 80
    assert score.current_correct == score.candidate_correct and score.passed
    assert score.candidate_logits is not None and score.candidate_logits.shape == (80, 4)
    # A label no fold-training part holds cannot be predicted: the gate says so instead of failing.
    rare = gate([*all_texts, "something else entirely"], [*labels, "other"], None,
                np.ones(81, dtype=bool), None)
    assert rare.candidate_logits is None and rare.current_correct is None and rare.candidate_correct <= 80
