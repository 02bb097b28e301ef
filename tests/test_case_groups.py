"""Grouping a period's cases: by similarity with an embedder (backfilling missing vectors), by
triaged category without one; and the leader clustering itself, exact and in cells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from pipelines.learning.case_groups import group_recent_cases
from pipelines.learning.leader_clusters import leader_clusters
from tests.support.detection import DIMS, TopicEmbedder, add_cases, spread, topic_vector

UNTIL = datetime(2026, 11, 18, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=7)


async def test_similar_cases_group_whatever_their_category_and_the_largest_comes_first(pool):
    async with pool.acquire() as conn:
        login = await add_cases(conn, spread(SINCE, UNTIL, 6), category="defect", subcategory="login",
                                text="login fails", topic="login")
        login += await add_cases(conn, spread(SINCE, UNTIL, 2), category="account", subcategory="access",
                                 text="cannot sign in", topic="login")
        export = await add_cases(conn, spread(SINCE, UNTIL, 4), category="defect", subcategory="export",
                                 text="export broken", topic="export")
        await add_cases(conn, spread(SINCE, UNTIL, 2), category="defect", text="lonely", topic="lonely")
        await add_cases(conn, [SINCE - timedelta(seconds=1), UNTIL], category="defect", topic="export")

    groups = await group_recent_cases(pool, TopicEmbedder(), since=SINCE, until=UNTIL, min_size=3)

    assert [set(g.case_ids) for g in groups] == [set(login), set(export)]
    first = groups[0]
    assert (first.category, first.subcategory) == ("defect", "login")
    assert first.title.startswith("login fails #")
    assert first.centroid is not None and abs(float(np.linalg.norm(first.centroid)) - 1) < 1e-5
    async with pool.acquire() as conn:
        created = dict(await conn.fetch("SELECT case_id, created_at FROM cases WHERE case_id = ANY($1)", login))
    assert list(first.case_ids) == sorted(login, key=lambda i: (-created[i].timestamp(), i))


async def test_categories_restrict_the_cases_grouped(pool):
    async with pool.acquire() as conn:
        defects = await add_cases(conn, spread(SINCE, UNTIL, 3), category="defect", topic="login")
        await add_cases(conn, spread(SINCE, UNTIL, 5), category="account", topic="login")

    groups = await group_recent_cases(pool, TopicEmbedder(), since=SINCE, until=UNTIL, min_size=3,
                                      categories=frozenset({"defect"}))

    assert [set(g.case_ids) for g in groups] == [set(defects)]


async def test_cases_without_vectors_are_embedded_first_with_the_text_detection_embeds(pool):
    async with pool.acquire() as conn:
        ids = await add_cases(conn, spread(SINCE, UNTIL, 4), category="defect", text="topic:refund money back",
                              topic="refund", embed=False)
    embedder = TopicEmbedder()

    groups = await group_recent_cases(pool, embedder, since=SINCE, until=UNTIL, min_size=3)

    assert [set(g.case_ids) for g in groups] == [set(ids)]
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM case_embeddings WHERE case_id = ANY($1)", ids)
    assert stored == 4 and embedder.calls == 1


async def test_without_an_embedder_cases_group_by_triaged_category(pool):
    async with pool.acquire() as conn:
        login = await add_cases(conn, spread(SINCE, UNTIL, 4), category="defect", subcategory="login", text="a")
        await add_cases(conn, spread(SINCE, UNTIL, 2), category="defect", subcategory="export")
        await add_cases(conn, spread(SINCE, UNTIL, 5), category=None)
        billing = await add_cases(conn, spread(SINCE, UNTIL, 3), category="billing", subcategory=None)

    groups = await group_recent_cases(pool, None, since=SINCE, until=UNTIL, min_size=3)
    assert [(g.category, g.subcategory, set(g.case_ids), g.centroid) for g in groups] == [
        ("defect", "login", set(login), None), ("billing", None, set(billing), None)]
    assert groups[0].title == "a #3"  # the newest case's

    only = await group_recent_cases(pool, None, since=SINCE, until=UNTIL, min_size=3,
                                    categories=frozenset({"billing"}))
    assert [g.category for g in only] == ["billing"]


def _topics(count: int, per_topic: int, noise: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`count` topics of `per_topic` rows each and `noise` rows at random, shuffled; the topic of
    each row (-1 for noise)."""
    rows = [topic_vector(f"t{t}", seed=seed * 1_000_000 + t * 1000 + i) for t in range(count) for i in range(per_topic)]
    rng = np.random.default_rng(seed)
    random = rng.standard_normal((noise, DIMS)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    vectors = np.vstack([np.vstack(rows), random]) if rows else random
    topics = np.concatenate([np.repeat(np.arange(count), per_topic), np.full(noise, -1)])
    order = rng.permutation(len(vectors))
    return vectors[order], topics[order]


def test_leader_clusters_find_each_topic_once_and_leave_noise_out():
    vectors, topics = _topics(5, 20, 300)
    groups = leader_clusters(vectors, similarity=0.7, min_size=3)
    assert sorted(sorted(set(topics[g].tolist())) for g in groups) == [[t] for t in range(5)]
    assert sorted(len(g) for g in groups) == [20] * 5


def test_leader_clusters_in_cells_find_the_same_groups_as_exact():
    vectors, topics = _topics(40, 60, 12_000, seed=2)  # more rows than one exact cell
    groups = leader_clusters(vectors, similarity=0.7, min_size=3)
    found = {frozenset(topics[g].tolist()): len(g) for g in groups}
    assert found == {frozenset({t}): 60 for t in range(40)}


def test_leader_clusters_are_deterministic_and_respect_min_size():
    vectors, _ = _topics(3, 4, 50, seed=3)
    first = leader_clusters(vectors, similarity=0.7, min_size=5)
    assert first == []
    again = leader_clusters(vectors, similarity=0.7, min_size=4)
    assert [g.tolist() for g in again] == [g.tolist() for g in leader_clusters(vectors, similarity=0.7, min_size=4)]
    assert len(again) == 3
