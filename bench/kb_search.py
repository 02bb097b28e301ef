"""Knowledge-base hybrid search at scale: latency of `db.kb.hybrid_search` and recall of its HNSW ranking.

    python bench/kb_search.py [--chunks 100000] [--queries 300] [--warmup 30] [--seed 0]
                              [--diagnostics 100] [--ef-search N] [--keep-indexes] [--multilingual] [--json]

Loads synthetic articles into a scratch database on the embedded server in a temporary directory
(or DATABASE_URL's server), dropped afterwards. The data is made to be searched like a real one:

- vectors (384-d, unit length): a few hundred cluster centres drawn from a low-rank subspace (real
  embeddings are anisotropic), clusters of uneven size, each article a point near its cluster's
  centre and each chunk a point near its article's, so neighbours are dense and near-ties common;
- text: about 5,000 English-like words. Four chunk words in five come from a Zipf-distributed
  general vocabulary (English stop words at the head, then support words like "card" and "payment"
  found in a sixth to a half of all chunks, then made-up words); one in five from the dozen topic
  words of the chunk's cluster, found nowhere else (product and feature names). Chunks have up to
  230 words, as the importer cuts them; titles, headings, tags and title_terms too.

Rows are loaded with COPY, before the full-text (GIN) and the partial HNSW index are built
(`--keep-indexes` loads into the indexes instead, to compare). Then every query, a vector near a
random article plus 3-8 words with that article's topic, is timed through `hybrid_search` (k=10)
on one connection, as the product calls it: without and with a category filter (a category drawn
independently of the query, so that about 1 chunk in 20 passes: the hard case for the HNSW scan).

recall@10 compares the top 10 of the product's own vector ranking SQL (`db.kb.vector_ranking`, on
a pooled connection with the product's session settings) with the exact nearest neighbours,
computed by numpy over the loaded vectors. On the first `--diagnostics` queries it also measures
filtered recall, and times full text alone and hybrid_search with `plan_cache_mode =
force_custom_plan`: asyncpg prepares every statement, and after five executions Postgres may switch
to a generic plan; `generic_plan_uses_hnsw` (and its filtered twin) says whether that plan still
reaches the HNSW index.

`--multilingual` also fills every chunk's `embedding_multilingual` (512-d, made as the 384-d vectors
are, in a space of its own around the same clusters and articles), keeps its partial HNSW index
(migration 0022) in place, built after the load like the others, and times every query once more
through `hybrid_search(..., multilingual=...)` with a 512-d vector near the same article: the
statement the product runs for a question that is not in English, with a third ranking. Its figures
are the `multilingual_*` keys, with p99 (and `p99_ms`, `filtered_p99_ms` for the English-only
statement, to compare); without the flag the output is as before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.runtime.database import scratch_pool  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from db import kb  # noqa: E402

DIMS = 384
MULTILINGUAL_DIMS = 512  # kb_chunks.embedding_multilingual (migration 0022)
K = 10
CLUSTERS = 300
LATENT_DIMS = 64  # cluster centres mostly live in a subspace of this rank
CATEGORIES = 20
GENERAL_WORDS = 1400  # Zipf-distributed vocabulary shared by all chunks
TOPIC_WORDS = 12  # words peculiar to each cluster, found in no other
TOPIC_SHARE = 0.2  # share of a chunk's words drawn from its cluster's topic words
BATCH = 10_000  # chunks per COPY
HNSW_INDEX = "kb_chunks_embedding_384_idx"
MULTILINGUAL_HNSW_INDEX = "kb_chunks_embedding_multilingual_idx"
GIN_INDEX = "kb_chunks_tsv_idx"

STOP_WORDS = (
    "the to and a of you your is in for it on can with be this if my i how do not or are will from at what we "
    "have that by an was"
).split()
SUPPORT_WORDS = (
    "account card payment refund transfer password login invoice subscription order delivery charge balance fee "
    "bank app email phone address verify cancel update error limit pin statement declined pending receipt plan "
    "upgrade downgrade billing security settings notification device access reset profile identity document "
    "verification exchange rate currency withdrawal deposit cash atm contactless virtual physical replace lost "
    "stolen freeze unfreeze dispute merchant transaction history export tax report team member admin permission "
    "integration api key webhook sync import export schedule trial discount coupon shipping return warranty "
    "support ticket agent chat hours region country language mobile browser"
).split()
ONSETS = "b c d f g h j k l m n p r s t v w z br cr dr fl gr pl pr st tr ch sh th bl cl sp sk".split()
VOWELS = "a e i o u ai ea ou ie oa".split()
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "x"]
TAGS = [f"{a}_{b}" for a in ("card", "account", "payment", "app", "billing", "security", "team", "data")
        for b in ("setup", "limits", "errors", "fees", "howto")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def deterministic_uuids(rng: np.random.Generator, n: int) -> list[uuid.UUID]:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return [uuid.UUID(bytes=bytes(row)) for row in raw]


@dataclass
class Corpus:
    """Everything generated up front except chunk text, which is made batch by batch while loading."""

    vocab: np.ndarray  # word strings: the general vocabulary in Zipf rank order, then the topic words
    cdf: np.ndarray  # cumulative Zipf probabilities over the general vocabulary
    topic_words: np.ndarray  # (CLUSTERS, TOPIC_WORDS) vocab indices, disjoint
    topic_cdf: np.ndarray  # Zipf over a topic's words
    categories: list[str]
    article_ids: list[uuid.UUID]
    article_cluster: np.ndarray
    article_category: np.ndarray  # index into categories
    article_published: np.ndarray  # bool
    article_vectors: np.ndarray  # unnormalised article points (cluster centre + article offset)
    titles: list[str]
    chunk_ids: list[uuid.UUID]
    chunk_article: np.ndarray  # article index of each chunk, sorted
    chunk_ordinal: np.ndarray
    vectors: np.ndarray  # (chunks, DIMS) float32, unit length
    # With --multilingual, as article_vectors and vectors but MULTILINGUAL_DIMS wide; else None.
    multilingual_article_vectors: np.ndarray | None = None
    multilingual_vectors: np.ndarray | None = None


def make_vocab(rng: np.random.Generator, size: int) -> np.ndarray:
    words: list[str] = list(dict.fromkeys(STOP_WORDS + SUPPORT_WORDS))
    seen = set(words)
    while len(words) < size:
        syllables = int(rng.choice([2, 2, 2, 3, 3, 4]))
        word = "".join(
            str(rng.choice(ONSETS)) + str(rng.choice(VOWELS)) + str(rng.choice(CODAS)) for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return np.array(words, dtype=object)


def zipf_cdf(n: int, s: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(p / p.sum())


def draw(rng: np.random.Generator, cdf: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)


def article_points(rng: np.random.Generator, dims: int, article_cluster: np.ndarray) -> np.ndarray:
    """Unnormalised `dims`-d article points: each article near its cluster's centre."""
    # Cluster centres: mostly a low-rank subspace plus a shared direction, so that clusters are
    # not all orthogonal to one another as independent high-dimensional noise would be.
    basis = rng.standard_normal((LATENT_DIMS, dims))
    centres = unit(rng.standard_normal((CLUSTERS, LATENT_DIMS)) @ basis / np.sqrt(LATENT_DIMS)
                   + 0.5 * rng.standard_normal((CLUSTERS, dims)) + 0.6 * rng.standard_normal(dims))
    return (centres[article_cluster]
            + 0.9 / np.sqrt(dims) * rng.standard_normal((len(article_cluster), dims))).astype(np.float32)


def near(rng: np.random.Generator, points: np.ndarray, spread: float) -> np.ndarray:
    """Unit vectors near `points` (one point, or one per row). Noise scaled by 1/sqrt(dims)
    has the same length in any dimension, so a spread means the same in 384 and 512 dimensions."""
    return unit(points + spread / np.sqrt(points.shape[-1]) * rng.standard_normal(points.shape))


def chunk_points(rng: np.random.Generator, article_vectors: np.ndarray, chunk_article: np.ndarray) -> np.ndarray:
    """Unit chunk vectors, each near its article's point."""
    n = len(chunk_article)
    vectors = np.empty((n, article_vectors.shape[1]), dtype=np.float32)
    # Batch by batch: the float64 noise for all chunks at once would be another 300-400 MB at 100k.
    for lo in range(0, n, BATCH):
        hi = min(n, lo + BATCH)
        vectors[lo:hi] = near(rng, article_vectors[chunk_article[lo:hi]], 0.7)
    return vectors


def make_corpus(n_chunks: int, seed: int, *, multilingual: bool = False) -> Corpus:
    rng = np.random.default_rng(seed)
    vocab = make_vocab(rng, GENERAL_WORDS + CLUSTERS * TOPIC_WORDS)
    cdf = zipf_cdf(GENERAL_WORDS)
    head = len(STOP_WORDS) + len(SUPPORT_WORDS)
    topic_words = GENERAL_WORDS + rng.permutation(CLUSTERS * TOPIC_WORDS).reshape(CLUSTERS, TOPIC_WORDS)
    topic_cdf = zipf_cdf(TOPIC_WORDS, 0.8)
    categories = [f"category_{i:02d}" for i in range(CATEGORIES)]

    n_articles = max(1, n_chunks // 5)
    # Clusters of uneven size; each has a main category that most of its articles share.
    weights = 1.0 / (np.arange(CLUSTERS) + 10.0)
    article_cluster = rng.choice(CLUSTERS, n_articles, p=weights / weights.sum())
    cluster_category = rng.integers(0, CATEGORIES, CLUSTERS)
    article_category = np.where(
        rng.random(n_articles) < 0.8, cluster_category[article_cluster], rng.integers(0, CATEGORIES, n_articles)
    )
    article_published = rng.random(n_articles) >= 0.03  # a few drafts and archived articles

    article_vectors = article_points(rng, DIMS, article_cluster)

    # One chunk for every article, the rest spread at random: 1 + Poisson(4) chunks an article.
    chunk_article = np.sort(np.concatenate([np.arange(n_articles), rng.integers(0, n_articles, n_chunks - n_articles)]))
    starts = np.searchsorted(chunk_article, np.arange(n_articles))
    chunk_ordinal = np.arange(n_chunks) - starts[chunk_article]
    vectors = chunk_points(rng, article_vectors, chunk_article)

    titles = []
    for a in range(n_articles):
        topic = topic_words[article_cluster[a]]
        words = [vocab[topic[i]] for i in draw(rng, topic_cdf, int(rng.integers(2, 5)))]
        words.append(vocab[len(STOP_WORDS) + int(rng.integers(0, head - len(STOP_WORDS)))])
        rng.shuffle(words)
        titles.append(" ".join(words).capitalize())
    corpus = Corpus(
        vocab=vocab, cdf=cdf, topic_words=topic_words, topic_cdf=topic_cdf, categories=categories,
        article_ids=deterministic_uuids(rng, n_articles), article_cluster=article_cluster,
        article_category=article_category, article_published=article_published,
        article_vectors=article_vectors, titles=titles, chunk_ids=deterministic_uuids(rng, n_chunks),
        chunk_article=chunk_article, chunk_ordinal=chunk_ordinal, vectors=vectors,
    )
    if multilingual:
        # The same clusters and articles in a space of their own, as another encoder places the
        # same texts. A generator of its own, so that the flag changes no other generated value.
        ml_rng = np.random.default_rng([seed, 3])
        corpus.multilingual_article_vectors = article_points(ml_rng, MULTILINGUAL_DIMS, article_cluster)
        corpus.multilingual_vectors = chunk_points(ml_rng, corpus.multilingual_article_vectors, chunk_article)
    return corpus


def words_for(corpus: Corpus, rng: np.random.Generator, cluster: int, n: int, topic_share: float) -> list[str]:
    picks = draw(rng, corpus.cdf, n)
    topical = rng.random(n) < topic_share
    picks[topical] = corpus.topic_words[cluster][draw(rng, corpus.topic_cdf, int(topical.sum()))]
    return list(corpus.vocab[picks])


def sentences(words: list[str], rng: np.random.Generator) -> str:
    out, i = [], 0
    while i < len(words):
        n = int(rng.integers(6, 18))
        out.append(" ".join(words[i:i + n]).capitalize() + ".")
        i += n
    return " ".join(out)


def article_records(corpus: Corpus, rng: np.random.Generator) -> list[tuple]:
    records = []
    for a, article_id in enumerate(corpus.article_ids):
        cluster = int(corpus.article_cluster[a])
        tags = sorted({TAGS[int(t)] for t in rng.integers(0, len(TAGS), int(rng.integers(1, 4)))})
        summary = sentences(words_for(corpus, rng, cluster, 40, TOPIC_SHARE), rng)
        status = "published" if corpus.article_published[a] else str(rng.choice(["draft", "archived"]))
        records.append((
            article_id, corpus.titles[a], summary, corpus.categories[int(corpus.article_category[a])], None, tags,
            f"https://kb.example.com/articles/{a}", "import", f"bench-{a}", status,
            hashlib.sha256(f"{a}:{summary}".encode()).hexdigest(),
        ))
    return records


ARTICLE_COLUMNS = ["article_id", "title", "content", "category", "subcategory", "tags", "url", "source", "source_id",
                   "status", "content_hash"]
CHUNK_COLUMNS = ["chunk_id", "article_id", "ordinal", "heading", "content", "token_count", "content_hash",
                 "embedding", "title_terms"]


def chunk_columns(corpus: Corpus) -> list[str]:
    return CHUNK_COLUMNS + (["embedding_multilingual"] if corpus.multilingual_vectors is not None else [])


def chunk_records(corpus: Corpus, article_tags: list[list[str]], lo: int, hi: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng([seed, lo])
    # As the importer cuts them: most chunks are full 230-word windows, a section's last is shorter.
    lengths = np.where(rng.random(hi - lo) < 0.7, rng.integers(190, 231, hi - lo), rng.integers(40, 190, hi - lo))
    records = []
    for i, n in zip(range(lo, hi), lengths):
        a = int(corpus.chunk_article[i])
        cluster = int(corpus.article_cluster[a])
        content = sentences(words_for(corpus, rng, cluster, int(n), TOPIC_SHARE), rng)
        section = " ".join(words_for(corpus, rng, cluster, int(rng.integers(2, 5)), 0.5)).capitalize()
        title = corpus.titles[a]
        record: tuple[object, ...] = (
            corpus.chunk_ids[i], corpus.article_ids[a], int(corpus.chunk_ordinal[i]), f"{title} › {section}", content,
            round(int(n) * 1.3), hashlib.sha256(content.encode()).hexdigest(), corpus.vectors[i],
            " ".join([title, *article_tags[a]]).replace("_", " "),
        )
        if corpus.multilingual_vectors is not None:
            record += (corpus.multilingual_vectors[i],)
        records.append(record)
    return records


@dataclass
class Query:
    text: str
    vector: np.ndarray
    category: str  # for the filtered run: drawn independently of the query
    multilingual: np.ndarray | None = None  # with --multilingual: 512-d, near the same article


def make_queries(corpus: Corpus, n: int, seed: int) -> list[Query]:
    rng = np.random.default_rng([seed, 1])
    # Multilingual query vectors from a generator of their own: the flag changes no other query.
    ml_rng = np.random.default_rng([seed, 4])
    out = []
    for _ in range(n):
        # A question about some article (picked as often as it has chunks), phrased differently.
        a = int(corpus.chunk_article[int(rng.integers(0, len(corpus.chunk_article)))])
        vector = near(rng, corpus.article_vectors[a], 0.8)
        words = words_for(corpus, rng, int(corpus.article_cluster[a]), int(rng.integers(3, 9)), 0.5)
        multilingual = (None if corpus.multilingual_article_vectors is None
                        else near(ml_rng, corpus.multilingual_article_vectors[a], 0.8))
        out.append(Query(" ".join(words), vector, corpus.categories[int(rng.integers(0, CATEGORIES))], multilingual))
    return out


def exact_top(corpus: Corpus, queries: list[Query], *, filtered: bool) -> list[list[uuid.UUID]]:
    """Exact top K chunk ids by cosine distance among published chunks (of the query's category)."""
    published = corpus.article_published[corpus.chunk_article]
    chunk_category = corpus.article_category[corpus.chunk_article]
    out = []
    for i, query in enumerate(queries):
        if i % 64 == 0:
            sims = np.stack([x.vector for x in queries[i:i + 64]]) @ corpus.vectors.T
        ok = published.copy()
        if filtered:
            ok &= chunk_category == corpus.categories.index(query.category)
        s = np.where(ok, sims[i % 64], -np.inf)
        top = np.argpartition(-s, K)[:K]
        top = top[np.argsort(-s[top])]
        out.append([corpus.chunk_ids[j] for j in top if np.isfinite(s[j])])
    return out


def vector_statement(*, filtered: bool) -> str:
    """The product's vector ranking alone: $1 the vector, $2 how many, $3 the category if filtered."""
    ranking = kb.vector_ranking(DIMS, "$1", "$2", " AND a.category = $3" if filtered else "")
    return "WITH " + ranking.strip().rstrip(",") + " SELECT chunk_id FROM vector_ranked ORDER BY rank"


async def vector_top(conn: asyncpg.Connection, query: Query, *, filtered: bool) -> tuple[list[uuid.UUID], float]:
    """The product's vector ranking, as hybrid_search runs it (prepared, on a pooled connection)."""
    args = [query.vector, K * kb.CANDIDATES_PER_RESULT] + ([query.category] if filtered else [])
    started = time.perf_counter()
    rows = await conn.fetch(vector_statement(filtered=filtered), *args)
    return [r["chunk_id"] for r in rows], (time.perf_counter() - started) * 1000


async def plans_use_hnsw(conn: asyncpg.Connection, query: Query, *, filtered: bool,
                         multilingual: bool = False) -> tuple[bool, bool]:
    """Whether hybrid_search's statement reaches the HNSW index (with `multilingual`, both HNSW
    indexes) in a custom plan (planned for the parameters' values) and in the generic plan that
    Postgres may switch a prepared statement to after five executions (asyncpg prepares and caches
    every statement)."""
    sql, args = kb.search_call(query.text, query.vector, K, category=query.category if filtered else None,
                               multilingual=query.multilingual if multilingual else None)
    indexes = (HNSW_INDEX, MULTILINGUAL_HNSW_INDEX) if multilingual else (HNSW_INDEX,)
    assert "$bench$" not in sql
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        custom = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
        # EXPLAIN (GENERIC_PLAN) takes no parameter values, which asyncpg would insist on: run it in
        # plpgsql and hand the plan back through a transaction-local setting.
        await conn.execute(f"""
            DO $do$
            DECLARE line text; plan text := '';
            BEGIN
                FOR line IN EXECUTE 'EXPLAIN (GENERIC_PLAN) ' || $bench${sql}$bench$ LOOP
                    plan := plan || line || E'\\n';
                END LOOP;
                PERFORM set_config('bench.generic_plan', plan, true);
            END
            $do$""")
        generic = await conn.fetchval("SELECT current_setting('bench.generic_plan')")
    return all(i in custom for i in indexes), all(i in generic for i in indexes)


async def load(conn: asyncpg.Connection, corpus: Corpus, seed: int, keep_indexes: bool,
               progress) -> dict[str, float]:
    workers = max(0, min(7, (os.cpu_count() or 2) - 1))
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    # Without --multilingual its index stays, as it was before the bench knew of it: the column is
    # NULL in every row, so the partial index is empty and costs the load nothing.
    multilingual = corpus.multilingual_vectors is not None
    names = [HNSW_INDEX, GIN_INDEX] + ([MULTILINGUAL_HNSW_INDEX] if multilingual else [])
    definitions = {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'kb_chunks' AND indexname = ANY($1)", names,
        )
    }
    assert set(definitions) == set(names), f"indexes not found: {set(names) - set(definitions)}"
    if not keep_indexes:
        for name in definitions:
            await conn.execute(f"DROP INDEX {name}")

    rng = np.random.default_rng([seed, 2])
    articles = article_records(corpus, rng)
    article_tags = [r[5] for r in articles]
    started = time.perf_counter()
    await conn.copy_records_to_table("kb_articles", records=articles, columns=ARTICLE_COLUMNS)
    del articles
    n = len(corpus.chunk_ids)
    # Make the next batch in a thread while the server digests this one (to_tsvector runs there).
    pending = asyncio.create_task(asyncio.to_thread(chunk_records, corpus, article_tags, 0, min(n, BATCH), seed))
    for lo in range(0, n, BATCH):
        records = await pending
        hi = min(n, lo + BATCH)
        if hi < n:
            pending = asyncio.create_task(
                asyncio.to_thread(chunk_records, corpus, article_tags, hi, min(n, hi + BATCH), seed))
        await conn.copy_records_to_table("kb_chunks", records=records, columns=chunk_columns(corpus))
        progress(f"loaded {hi}/{n} chunks")
    load_s = time.perf_counter() - started

    timings = {"load_seconds": load_s}
    if not keep_indexes:
        started = time.perf_counter()
        await conn.execute(definitions[GIN_INDEX])
        timings["gin_index_seconds"] = time.perf_counter() - started
        progress(f"GIN index built in {timings['gin_index_seconds']:.1f}s")
        started = time.perf_counter()
        await conn.execute(definitions[HNSW_INDEX])
        timings["index_seconds"] = time.perf_counter() - started
        progress(f"HNSW index built in {timings['index_seconds']:.1f}s")
        if multilingual:
            started = time.perf_counter()
            await conn.execute(definitions[MULTILINGUAL_HNSW_INDEX])
            timings["multilingual_index_seconds"] = time.perf_counter() - started
            progress(f"multilingual HNSW index built in {timings['multilingual_index_seconds']:.1f}s")
    else:
        timings["gin_index_seconds"] = timings["index_seconds"] = timings["multilingual_index_seconds"] = 0.0
    started = time.perf_counter()
    await conn.execute("VACUUM (ANALYZE) kb_articles, kb_chunks")
    await kb.refresh_statistics(conn)
    timings["analyze_seconds"] = time.perf_counter() - started
    return timings


async def timed_searches(conn: asyncpg.Connection, queries: list[Query], *, filtered: bool,
                         vector: bool = True, multilingual: bool = False) -> tuple[list[float], list[int]]:
    latencies, returned = [], []
    gc.collect()
    gc.disable()  # the client's own collector pauses would count as search latency
    try:
        for q in queries:
            started = time.perf_counter()
            hits = await kb.hybrid_search(conn, q.text, q.vector if vector else None, K,
                                          category=q.category if filtered else None,
                                          multilingual=q.multilingual if multilingual else None)
            latencies.append((time.perf_counter() - started) * 1000)
            returned.append(len(hits))
    finally:
        gc.enable()
    return latencies, returned


def recall(found: list[list[uuid.UUID]], exact: list[list[uuid.UUID]]) -> float:
    return statistics.fmean(len(set(f[:K]) & set(e)) / max(1, len(e)) for f, e in zip(found, exact))


async def run(args: argparse.Namespace) -> dict[str, object]:
    def progress(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    started_all = time.perf_counter()
    started = time.perf_counter()
    corpus = make_corpus(args.chunks, args.seed, multilingual=args.multilingual)
    queries = make_queries(corpus, args.warmup + args.queries, args.seed)
    warmup, measured = queries[:args.warmup], queries[args.warmup:]
    progress(f"generated {len(corpus.article_ids)} articles, {args.chunks} chunks in {time.perf_counter() - started:.1f}s")

    settings = load_settings()
    if settings.database_url is None and "CX_DATA_DIR" not in os.environ:
        settings = load_settings(cx_data_dir=Path(tempfile.mkdtemp(prefix="cx-bench-")))
    async with scratch_pool(settings) as pool, pool.acquire() as conn:
        timings = await load(conn, corpus, args.seed, args.keep_indexes, progress)
        # A session of its own, as the product's pooled connections have no maintenance settings.
        await conn.execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers")
        pgvector_version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        server = await conn.fetchrow(
            "SELECT current_setting('server_version') AS version, current_setting('shared_buffers') AS shared_buffers, "
            "pg_size_pretty(pg_relation_size($1::regclass)) AS hnsw_size, "
            "pg_size_pretty(pg_total_relation_size('kb_chunks')) AS table_size",
            HNSW_INDEX,
        )
        custom_hnsw, generic_hnsw = await plans_use_hnsw(conn, measured[0], filtered=False)
        filtered_custom_hnsw, filtered_generic_hnsw = await plans_use_hnsw(conn, measured[0], filtered=True)
        if args.multilingual:
            multilingual_plans = {
                prefix: await plans_use_hnsw(conn, measured[0], filtered=filtered, multilingual=True)
                for prefix, filtered in (("multilingual_", False), ("multilingual_filtered_", True))
            }
            multilingual_hnsw_size = await conn.fetchval("SELECT pg_size_pretty(pg_relation_size($1::regclass))",
                                                         MULTILINGUAL_HNSW_INDEX)
        if args.ef_search is not None:
            await conn.execute(f"SET hnsw.ef_search = {args.ef_search}")

        progress("warming up")
        await timed_searches(conn, warmup, filtered=False)
        await timed_searches(conn, warmup, filtered=True)
        if args.multilingual:
            await timed_searches(conn, warmup, filtered=False, multilingual=True)
            await timed_searches(conn, warmup, filtered=True, multilingual=True)
        for q in warmup:
            await vector_top(conn, q, filtered=False)

        progress(f"timing {len(measured)} searches")
        latencies, returned = await timed_searches(conn, measured, filtered=False)
        progress(f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms; with a filter")
        filtered_latencies, filtered_returned = await timed_searches(conn, measured, filtered=True)
        if args.multilingual:
            # The same queries again, as a question that is not in English is searched.
            progress(f"filtered p50 {statistics.median(filtered_latencies):.1f} ms; multilingual")
            ml_latencies, ml_returned = await timed_searches(conn, measured, filtered=False, multilingual=True)
            progress(f"multilingual p50 {statistics.median(ml_latencies):.1f} ms; with a filter")
            ml_filtered_latencies, ml_filtered_returned = await timed_searches(conn, measured, filtered=True,
                                                                               multilingual=True)
        # Where the time goes, on a subset: full text alone, and every statement planned afresh
        # for its parameters (no generic plans).
        subset = measured[:args.diagnostics]
        progress(f"diagnostics on {len(subset)} searches")
        text_latencies, _ = await timed_searches(conn, subset, filtered=False, vector=False)
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        await timed_searches(conn, warmup[:5], filtered=False)
        custom_latencies, _ = await timed_searches(conn, subset, filtered=False)
        await conn.execute("RESET plan_cache_mode")

        progress("measuring recall")
        found, vector_ms = [], []
        for q in measured:
            ids, ms = await vector_top(conn, q, filtered=False)
            found.append(ids)
            vector_ms.append(ms)
        found_filtered, found_filtered_count = [], []
        for q in subset:
            ids, _ = await vector_top(conn, q, filtered=True)
            found_filtered.append(ids)
            found_filtered_count.append(len(ids))
        articles, chunks = await conn.fetchval("SELECT count(*) FROM kb_articles"), await conn.fetchval(
            "SELECT count(*) FROM kb_chunks")

    if args.multilingual:
        # The English-only figures' p99 too, to compare with the multilingual statement's.
        multilingual_figures = {
            "multilingual_dims": MULTILINGUAL_DIMS,
            "multilingual_weight": kb.MULTILINGUAL_WEIGHT,
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "filtered_p99_ms": round(percentile(filtered_latencies, 0.99), 2),
            "multilingual_p50_ms": round(statistics.median(ml_latencies), 2),
            "multilingual_p95_ms": round(percentile(ml_latencies, 0.95), 2),
            "multilingual_p99_ms": round(percentile(ml_latencies, 0.99), 2),
            "multilingual_max_ms": round(max(ml_latencies), 2),
            "multilingual_mean_results": round(statistics.fmean(ml_returned), 2),
            "multilingual_filtered_p50_ms": round(statistics.median(ml_filtered_latencies), 2),
            "multilingual_filtered_p95_ms": round(percentile(ml_filtered_latencies, 0.95), 2),
            "multilingual_filtered_p99_ms": round(percentile(ml_filtered_latencies, 0.99), 2),
            "multilingual_filtered_mean_results": round(statistics.fmean(ml_filtered_returned), 2),
            "multilingual_filtered_min_results": min(ml_filtered_returned),
            "multilingual_index_seconds": round(timings["multilingual_index_seconds"], 1),
            "multilingual_hnsw_size": multilingual_hnsw_size,
            **{f"{prefix}custom_plan_uses_hnsw": custom for prefix, (custom, _) in multilingual_plans.items()},
            **{f"{prefix}generic_plan_uses_hnsw": generic for prefix, (_, generic) in multilingual_plans.items()},
        }
    else:
        multilingual_figures = {}
    exact = exact_top(corpus, measured, filtered=False)
    exact_filtered = exact_top(corpus, subset, filtered=True)
    return {
        "chunks": chunks,
        "articles": articles,
        "queries": len(measured),
        "dims": DIMS,
        "k": K,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "max_ms": round(max(latencies), 2),
        "recall_at_10": round(recall(found, exact), 4),
        "mean_results": round(statistics.fmean(returned), 2),
        "filtered_p50_ms": round(statistics.median(filtered_latencies), 2),
        "filtered_p95_ms": round(percentile(filtered_latencies, 0.95), 2),
        "filtered_mean_results": round(statistics.fmean(filtered_returned), 2),
        "filtered_min_results": min(filtered_returned),
        "filtered_recall_at_10": round(recall(found_filtered, exact_filtered), 4),
        "filtered_vector_candidates_mean": round(statistics.fmean(found_filtered_count), 1),
        **multilingual_figures,
        "vector_only_p50_ms": round(statistics.median(vector_ms), 2),
        "vector_only_p95_ms": round(percentile(vector_ms, 0.95), 2),
        "text_only_p50_ms": round(statistics.median(text_latencies), 2),
        "text_only_p95_ms": round(percentile(text_latencies, 0.95), 2),
        "custom_plan_p50_ms": round(statistics.median(custom_latencies), 2),
        "custom_plan_p95_ms": round(percentile(custom_latencies, 0.95), 2),
        "diagnostic_queries": len(subset),
        "load_seconds": round(timings["load_seconds"], 1),
        "index_seconds": round(timings["index_seconds"], 1),
        "gin_index_seconds": round(timings["gin_index_seconds"], 1),
        "analyze_seconds": round(timings["analyze_seconds"], 1),
        "indexes_kept_during_load": args.keep_indexes,
        "custom_plan_uses_hnsw": custom_hnsw,
        "filtered_custom_plan_uses_hnsw": filtered_custom_hnsw,
        "filtered_generic_plan_uses_hnsw": filtered_generic_hnsw,
        "generic_plan_uses_hnsw": generic_hnsw,
        "hnsw_size": server["hnsw_size"],
        "table_size": server["table_size"],
        "ef_search": int(args.ef_search or kb.SESSION_SETTINGS["hnsw.ef_search"]),
        "vector_candidates": K * kb.CANDIDATES_PER_RESULT,
        "text_candidates": kb.TEXT_CANDIDATES,
        "pgvector_version": pgvector_version,
        "postgres_version": server["version"],
        "shared_buffers": server["shared_buffers"],
        "seed": args.seed,
        "total_seconds": round(time.perf_counter() - started_all, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diagnostics", type=int, default=100,
                        help="queries for the extra timings (full text alone, custom plans)")
    parser.add_argument("--ef-search", type=int, default=None,
                        help=f"try another hnsw.ef_search than db.kb's ({kb.SESSION_SETTINGS['hnsw.ef_search']}), for comparison")
    parser.add_argument("--keep-indexes", action="store_true",
                        help="load into the HNSW and GIN indexes instead of building them afterwards")
    parser.add_argument("--multilingual", action="store_true",
                        help="also load 512-d multilingual vectors and time every search with one too")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.chunks < 5 * K or args.queries < 1:
        parser.error("need --chunks >= 50 and --queries >= 1")
    configure_logging("warning", "console")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        width = max(32, *map(len, result))  # 32 fits every key but some of --multilingual's
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")


if __name__ == "__main__":
    main()
