"""Case histories for detection tests, written straight into the database with the timestamps,
labels and vectors a test needs: a topic's cases lie close together, different topics far apart."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

import numpy as np

from pipelines.detection.run import DetectConfig
from pipelines.ports import LLMUsage

DIMS = 384
MODEL = "topic-test"
CONFIG = DetectConfig(similarity=0.8, baseline_sample=100_000)


def topic_vector(topic: str, noise: float = 0.25, seed: int = 0) -> np.ndarray:
    """A unit vector near the topic's own direction: same topic ≈ 0.9+ cosine, other topics ≈ 0."""
    base = np.random.default_rng(int(hashlib.sha256(topic.encode()).hexdigest()[:8], 16)).standard_normal(DIMS)
    base /= np.linalg.norm(base)
    jitter = np.random.default_rng(seed).standard_normal(DIMS)
    jitter /= np.linalg.norm(jitter)
    vector = base + noise * jitter
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class TopicEmbedder:
    """Embeds a text as the vector of the first topic word it contains (`topic:<name>`), else at random."""

    provider, model, dimensions = "local", MODEL, DIMS

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        self.calls += 1
        rows = []
        for i, text in enumerate(texts):
            topic = next((w.removeprefix("topic:") for w in text.split() if w.startswith("topic:")), text)
            rows.append(topic_vector(topic, seed=i + 1000 * self.calls))
        usage = LLMUsage(provider="local", model=MODEL, step="embed")
        return np.vstack(rows), usage


async def add_cases(conn, at: list[datetime], *, category: str | None = None, subcategory: str | None = None,
                    text: str = "a question", topic: str | None = None, email: str = "pat@example.com",
                    priority: str | None = None, embed: bool = True) -> list[uuid.UUID]:
    """One case per instant (channel import, status new), with a vector near `topic` when given."""
    customer = await conn.fetchval(
        """INSERT INTO customers (email, name) VALUES ($1, 'Pat') ON CONFLICT (lower(email))
           DO UPDATE SET email = customers.email RETURNING customer_id""", email)
    rows = [(uuid.uuid4(), customer, f"{text} #{i}", text, category, subcategory, priority, when)
            for i, when in enumerate(at)]
    await conn.executemany(
        """INSERT INTO cases (case_id, customer_id, channel, subject, description, category, subcategory, priority,
                              created_at, updated_at)
           VALUES ($1, $2, 'import', $3, $4, $5, $6, $7, $8, $8)""", rows)
    if topic is not None and embed:
        await conn.executemany(
            "INSERT INTO case_embeddings (case_id, embedding, model) VALUES ($1, $2, $3)",
            [(r[0], topic_vector(topic, seed=int(r[0]) % 2**32), MODEL) for i, r in enumerate(rows)])
    return [r[0] for r in rows]


def spread(start: datetime, end: datetime, count: int) -> list[datetime]:
    """`count` instants evenly over [start, end)."""
    step = (end - start) / count
    return [start + step * i for i in range(count)]


def daily(now: datetime, days: int, hours: list[int], per_hour: int, *, skip_last: timedelta) -> list[datetime]:
    """`per_hour` instants in each of `hours` (UTC) of each of the `days` days before `now`, except
    the last `skip_last`."""
    instants = []
    for day in range(1, days + 1):
        midnight = (now - timedelta(days=day)).replace(hour=0, minute=0, second=0, microsecond=0)
        for hour in hours:
            instants += spread(midnight + timedelta(hours=hour), midnight + timedelta(hours=hour + 1), per_hour)
    return [t for t in instants if t < now - skip_last]
