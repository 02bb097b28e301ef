"""The schema of migrations 0002 and 0004: tables, types, constraints, vector and text indexes."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import numpy as np
import pytest

REFERENCE_TABLES = [
    "customers",
    "cases",
    "case_interactions",
    "kb_articles",
    "error_codes",
    "health_metrics",
    "proactive_alerts",
    "review_queue",
    "workflow_executions",
    "agent_feedback",
    "batch_jobs",
    "llm_usage",
    "api_pricing",
    "token_budgets",
    "baseline_config",
    "daily_metrics",
    "improvement_opportunities",
]

PRODUCT_TABLES = [
    "embedding_space",
    "kb_chunks",
    "labelled_examples",
    "case_embeddings",
    "reply_outbox",
    "slack_messages",
    "slack_events_seen",
    "gmail_sync_state",
    "gmail_messages_seen",
    "alert_evidence",
    "scheduled_runs",
    "kb_searches",
]

# The cost of a call: the longest model-id prefix wins, then the newest price in effect.
PRICE_FOR_MODEL = """
SELECT provider, model_prefix, input_per_mtok, output_per_mtok, cache_read_per_mtok
FROM api_pricing
WHERE starts_with($1, model_prefix) AND effective_from <= now()
ORDER BY length(model_prefix) DESC, effective_from DESC
LIMIT 1
"""

rng = np.random.default_rng(42)


def random_vector(dim: int) -> np.ndarray:
    return rng.standard_normal(dim).astype(np.float32)


async def new_customer(conn: asyncpg.Connection, email: str | None = None) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO customers (email) VALUES ($1) RETURNING customer_id",
        email or f"{uuid.uuid4().hex[:10]}@example.com",
    )


async def new_case(conn: asyncpg.Connection, **columns: object) -> uuid.UUID:
    values = {"customer_id": await new_customer(conn), "channel": "email", "description": "it broke"}
    values.update(columns)
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"INSERT INTO cases ({names}) VALUES ({params}) RETURNING case_id", *values.values()
    )


async def explain(conn: asyncpg.Connection, query: str, *args: object) -> str:
    rows = await conn.fetch("EXPLAIN " + query, *args)
    return "\n".join(row[0] for row in rows)


# (1) The reference's own setup check.


async def test_customer_insert_returns_uuid(pool: asyncpg.Pool) -> None:
    customer_id = await pool.fetchval(
        "INSERT INTO customers (email) VALUES ('test@example.com') RETURNING customer_id"
    )
    assert isinstance(customer_id, uuid.UUID)
    row = await pool.fetchrow("SELECT * FROM customers WHERE customer_id = $1", customer_id)
    assert row["account_tier"] == "standard"
    assert row["metadata"] == "{}"
    assert row["created_at"] is not None and row["created_at"].tzinfo is not None


# (2) Tables and types.


async def test_every_table_exists(pool: asyncpg.Pool) -> None:
    present = {
        row["table_name"]
        for row in await pool.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    }
    missing = sorted(set(REFERENCE_TABLES + PRODUCT_TABLES) - present)
    assert missing == []


async def test_time_columns_are_timestamptz(pool: asyncpg.Pool) -> None:
    columns = await pool.fetch(
        """
        SELECT c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.table_name NOT LIKE 'pgqueuer%'
        """
    )
    naive = [
        f"{c['table_name']}.{c['column_name']} ({c['data_type']})"
        for c in columns
        if c["data_type"].startswith(("timestamp without", "time "))
        or (c["column_name"].endswith("_at") and c["data_type"] != "timestamp with time zone")
    ]
    assert naive == []
    # The query really saw the schema: most tables have a created_at.
    timestamptz = [c for c in columns if c["data_type"] == "timestamp with time zone"]
    assert len(timestamptz) > 40


async def test_primary_keys_are_uuid_with_default(pool: asyncpg.Pool) -> None:
    keys = {
        "customers": "customer_id",
        "cases": "case_id",
        "case_interactions": "interaction_id",
        "kb_articles": "article_id",
        "review_queue": "review_id",
        "workflow_executions": "execution_id",
        "agent_feedback": "feedback_id",
        "batch_jobs": "batch_job_id",
        "proactive_alerts": "alert_id",
        "llm_usage": "usage_id",
        "kb_chunks": "chunk_id",
        "labelled_examples": "example_id",
        "reply_outbox": "outbox_id",
    }
    for table, column in keys.items():
        row = await pool.fetchrow(
            "SELECT data_type, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
            table,
            column,
        )
        assert row is not None, f"{table}.{column} is missing"
        assert row["data_type"] == "uuid", table
        assert row["column_default"] == "gen_random_uuid()", table


async def test_reference_seeds(pool: asyncpg.Pool) -> None:
    baseline = {r["key"]: r["value"] for r in await pool.fetch("SELECT key, value FROM baseline_config")}
    assert baseline["manual_cost_per_case"] == 20
    assert baseline["target_self_service_rate"] == Decimal("0.85")
    assert len(baseline) == 8
    budgets = {
        r["budget_name"]: (r["budget_type"], r["token_limit"], r["cost_limit_usd"])
        for r in await pool.fetch("SELECT budget_name, budget_type, token_limit, cost_limit_usd FROM token_budgets")
    }
    assert budgets["Anthropic Daily"] == ("daily", 500_000, Decimal("150.00"))
    assert len(budgets) == 4


# (3) Constraints bite.


async def test_case_defaults_and_short_id(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        first = await new_case(conn)
        second = await new_case(conn, subject="Login fails")
        rows = await conn.fetch(
            "SELECT case_id, short_id, status, escalated, error_codes FROM cases ORDER BY short_id"
        )
    assert [r["case_id"] for r in rows] == [first, second]
    assert rows[0]["short_id"] >= 1001 and rows[1]["short_id"] == rows[0]["short_id"] + 1
    assert rows[0]["status"] == "new" and rows[0]["escalated"] is False and rows[0]["error_codes"] == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("priority", "urgent"),
        ("sentiment", "frustrated"),
        ("channel", "fax"),
        ("severity", "blocker"),
        ("confidence_score", Decimal("1.5")),
        ("csat", 6),
        ("resolution_type", "self-service-automated"),
    ],
)
async def test_case_vocabularies_are_checked(pool: asyncpg.Pool, column: str, value: object) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as err:
            await new_case(conn, **{column: value})
    assert err.value.constraint_name == f"cases_{column}_check"


async def test_case_status_is_checked(pool: asyncpg.Pool) -> None:
    # 0005's triggers refuse a bad status first; switch them off to prove the CHECK itself.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await new_case(conn, status="awaiting_review")
        with pytest.raises(asyncpg.CheckViolationError) as err:
            await new_case(conn, status="pending_review")
    assert err.value.constraint_name == "cases_status_check"


async def test_customer_tier_and_email_constraints(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO customers (email, account_tier) VALUES ('a@example.com', 'gold')")
        await conn.execute("INSERT INTO customers (email, account_tier) VALUES ('a@example.com', 'enterprise')")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO customers (email) VALUES ('a@example.com')")
        # Differing only in case: refused (stored addresses are lower-case, and unique on lower(email)).
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            await conn.execute("INSERT INTO customers (email) VALUES ('A@Example.COM')")
        assert await conn.fetchval("SELECT count(*) FROM customers") == 1
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'customers_email_key'"
        )
    assert "UNIQUE" in index and "lower(email)" in index


async def test_one_pending_review_per_case(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        case_id = await new_case(conn)
        first = await conn.fetchval(
            "INSERT INTO review_queue (case_id, draft, ai_confidence) VALUES ($1, 'try X', 0.7) RETURNING review_id",
            case_id,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO review_queue (case_id, draft) VALUES ($1, 'try Y')", case_id)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE review_queue SET status = 'done' WHERE review_id = $1", first)
        await conn.execute(
            "UPDATE review_queue SET status = 'approved', reviewed_by = 'U123', reviewed_at = now(), "
            "version = version + 1 WHERE review_id = $1 AND version = 1",
            first,
        )
        await conn.execute("INSERT INTO review_queue (case_id, draft) VALUES ($1, 'try Y')", case_id)
        assert await conn.fetchval("SELECT count(*) FROM review_queue WHERE case_id = $1", case_id) == 2


async def test_open_alert_fingerprint_is_unique_until_resolved(pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO proactive_alerts (fingerprint, alert_type, severity, title) "
        "VALUES ('volume:defect/login', 'volume', 'high', 'Login spike') RETURNING alert_id"
    )
    async with pool.acquire() as conn:
        first = await conn.fetchval(insert)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.fetchval(insert)
        await conn.execute("UPDATE proactive_alerts SET status = 'acknowledged' WHERE alert_id = $1", first)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.fetchval(insert)
        with pytest.raises(asyncpg.CheckViolationError):  # resolved needs resolved_at
            await conn.execute("UPDATE proactive_alerts SET status = 'resolved' WHERE alert_id = $1", first)
        await conn.execute(
            "UPDATE proactive_alerts SET status = 'resolved', resolved_at = now() WHERE alert_id = $1", first
        )
        second = await conn.fetchval(insert)
    assert second != first


async def test_reply_outbox_sends_one_reply_per_draft(pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO reply_outbox (case_id, draft_key, channel, to_address, subject, body) "
        "VALUES ($1, $2, 'email', 'a@example.com', 'Re: help', 'Do X.')"
    )
    async with pool.acquire() as conn:
        case_id = await new_case(conn)
        await conn.execute(insert, case_id, "review:1")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, case_id, "review:1")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE reply_outbox SET status = 'sent' WHERE draft_key = 'review:1'")
        await conn.execute(insert, case_id, "review:2")
        assert await conn.fetchval("SELECT count(*) FROM reply_outbox") == 2


async def test_messages_and_events_are_recorded_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        case_id = await new_case(conn, channel="webhook", external_id="ext-1")
        with pytest.raises(asyncpg.UniqueViolationError):  # a retried webhook delivery
            await new_case(conn, channel="webhook", external_id="ext-1")
        await new_case(conn, channel="api", external_id="ext-1")  # unique per channel only

        append = (
            "INSERT INTO case_interactions (case_id, actor_type, interaction_type, message, external_message_id) "
            "VALUES ($1, 'customer', 'email_in', 'more info', '<abc@mail.example.com>')"
        )
        await conn.execute(append, case_id)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(append, case_id)

        seen = "INSERT INTO slack_events_seen (event_id) VALUES ('Ev123') ON CONFLICT DO NOTHING RETURNING event_id"
        assert await conn.fetchval(seen) == "Ev123"
        assert await conn.fetchval(seen) is None

        claim = "INSERT INTO scheduled_runs (job_name, period_key) VALUES ('daily', '2026-02-03') ON CONFLICT DO NOTHING RETURNING 1"
        assert await conn.fetchval(claim) == 1
        assert await conn.fetchval(claim) is None


async def test_slack_message_references(pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO slack_messages (case_id, alert_id, purpose, channel_id, ts) VALUES ($1, $2, $3, 'C1', $4)"
    )
    async with pool.acquire() as conn:
        case_id = await new_case(conn)
        alert_id = await conn.fetchval(
            "INSERT INTO proactive_alerts (fingerprint, alert_type, severity, title) "
            "VALUES ('f', 'cluster', 'medium', 't') RETURNING alert_id"
        )
        await conn.execute(insert, case_id, None, "review_card", "1.1")
        with pytest.raises(asyncpg.UniqueViolationError):  # one review card per case
            await conn.execute(insert, case_id, None, "review_card", "1.2")
        with pytest.raises(asyncpg.UniqueViolationError):  # one row per posted message
            await conn.execute(insert, None, alert_id, "alert", "1.1")
        with pytest.raises(asyncpg.CheckViolationError):  # a message belongs to one thing
            await conn.execute(insert, case_id, alert_id, "alert", "1.3")
        await conn.execute(insert, None, alert_id, "alert", "1.4")


async def test_labelled_examples_reimport_adds_nothing(pool: asyncpg.Pool) -> None:
    rows = [("card not arriving", "cards", "card_arrival"), ("refund please", "payments", None)]
    upsert = (
        "INSERT INTO labelled_examples (text, category, subcategory, source) VALUES ($1, $2, $3, 'import') "
        "ON CONFLICT (source, md5(text), category, subcategory) DO NOTHING"
    )
    async with pool.acquire() as conn:
        for _ in range(2):
            await conn.executemany(upsert, rows)
        assert await conn.fetchval("SELECT count(*) FROM labelled_examples") == 2
        # The same text from another source, or labelled differently, is a new example.
        await conn.execute(upsert.replace("'import'", "'correction'"), *rows[0])
        await conn.execute(upsert, "refund please", "payments", "refund_request")
        assert await conn.fetchval("SELECT count(*) FROM labelled_examples") == 4


async def test_derived_durations(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        case_id = await new_case(conn, created_at=await conn.fetchval("SELECT now() - interval '90 minutes'"))
        await conn.execute("UPDATE cases SET resolved_at = created_at + interval '42 minutes' WHERE case_id = $1", case_id)
        assert await conn.fetchval("SELECT resolution_time_minutes FROM cases WHERE case_id = $1", case_id) == 42
        duration = await conn.fetchval(
            "INSERT INTO workflow_executions (workflow_name, status, started_at, finished_at) "
            "VALUES ('triage', 'success', '2026-01-01 00:00:00+00', '2026-01-01 00:00:01.5+00') RETURNING duration_ms"
        )
    assert duration == 1500


async def test_embedding_space_has_one_row(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO embedding_space (provider, model, dimensions) VALUES ('local', 'all-MiniLM-L6-v2', 384)"
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO embedding_space (provider, model, dimensions) VALUES ('openai', 'text-embedding-3-small', 1536)"
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO embedding_space (id, provider, model, dimensions) VALUES (2, 'openai', 'x', 1536)")


# (4) Vector and full-text search.


async def test_kb_chunks_hold_both_dimensions_and_full_text(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        article_id = await conn.fetchval(
            "INSERT INTO kb_articles (title, content) VALUES ('Reset a password', '...') RETURNING article_id"
        )
        target_384, target_1536 = random_vector(384), random_vector(1536)
        chunks = [
            (0, "Resetting passwords", "Open settings and click reset.", target_384),
            (1, None, "Passwords expire after 90 days.", random_vector(384)),
            (2, "SSO", "Single sign-on users reset passwords at their identity provider.", target_1536),
            (3, None, "Not embedded yet.", None),
        ]
        await conn.executemany(
            "INSERT INTO kb_chunks (article_id, ordinal, heading, content, embedding, content_hash) "
            "VALUES ($1, $2, $3, $4, $5, md5($4))",
            [(article_id, *chunk) for chunk in chunks],
        )
        dims = await conn.fetch("SELECT ordinal, vector_dims(embedding) AS dims FROM kb_chunks ORDER BY ordinal")
        assert [r["dims"] for r in dims] == [384, 384, 1536, None]

        assert await conn.fetchval("SELECT count(*) FROM kb_chunks WHERE tsv IS NULL") == 0
        hits = await conn.fetch(
            "SELECT ordinal FROM kb_chunks WHERE tsv @@ websearch_to_tsquery('english', 'password resetting') "
            "ORDER BY ordinal"
        )
        assert [r["ordinal"] for r in hits] == [0, 2]  # stemmed, heading included

        for dim, target, expected in ((384, target_384, 0), (1536, target_1536, 2)):
            nearest = await conn.fetch(
                f"SELECT ordinal, embedding FROM kb_chunks WHERE vector_dims(embedding) = {dim} "
                f"ORDER BY embedding::vector({dim}) <=> $1::vector({dim}) LIMIT 5",
                target,
            )
            assert nearest[0]["ordinal"] == expected
            assert np.allclose(nearest[0]["embedding"].to_numpy(), target)

        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO kb_chunks (article_id, ordinal, content, content_hash) VALUES ($1, 0, 'again', '')", article_id
            )
        await conn.execute("DELETE FROM kb_articles WHERE article_id = $1", article_id)
        assert await conn.fetchval("SELECT count(*) FROM kb_chunks") == 0


@pytest.mark.parametrize("dim", [384, 1536])
@pytest.mark.parametrize(
    ("table", "key"), [("kb_chunks", "chunk_id"), ("labelled_examples", "example_id")]
)
async def test_nearest_neighbour_query_uses_hnsw_index(pool: asyncpg.Pool, table: str, key: str, dim: int) -> None:
    query = (
        f"SELECT {key} FROM {table} WHERE vector_dims(embedding) = {dim} "
        f"ORDER BY embedding::vector({dim}) <=> $1::vector({dim}) LIMIT 5"
    )
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = await explain(conn, query, random_vector(dim))
    assert f"Index Scan using {table}_embedding_{dim}_idx" in plan, plan


async def test_case_embeddings_have_no_nearest_neighbour_index(pool: asyncpg.Pool) -> None:
    """Detection compares a window's vectors in memory; an HNSW index would only slow every import."""
    indexes = await pool.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'case_embeddings'")
    assert [r["indexname"] for r in indexes] == ["case_embeddings_pkey"]


async def test_case_search_uses_full_text_index(pool: asyncpg.Pool) -> None:
    where = "to_tsvector('simple', coalesce(subject, '') || ' ' || description) @@ plainto_tsquery('simple', $1)"
    async with pool.acquire() as conn:
        await new_case(conn, subject="Invoice missing", description="No invoice for January")
        await new_case(conn, description="The export button does nothing")
        found = await conn.fetch(f"SELECT description FROM cases WHERE {where}", "invoice january")
        assert [r["description"] for r in found] == ["No invoice for January"]
        await conn.execute("SET enable_seqscan = off")
        plan = await explain(conn, f"SELECT case_id FROM cases WHERE {where}", "invoice")
    assert "cases_search_idx" in plan, plan


# (5) Pricing.


@pytest.mark.parametrize(
    ("model", "prefix", "prices"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4", ("3", "15", "0.3")),
        ("claude-sonnet-4-20250514", "claude-sonnet-4", ("3", "15", "0.3")),
        ("claude-opus-4-1-20250805", "claude-opus-4", ("15", "75", "1.5")),
        ("claude-opus-4-5-20251101", "claude-opus-4-5", ("5", "25", "0.5")),
        ("claude-haiku-4-5-20251001", "claude-haiku-4", ("1", "5", "0.1")),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku", ("0.8", "4", "0.08")),
        ("gpt-4o-2024-08-06", "gpt-4o", ("2.5", "10", "1.25")),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", ("0.15", "0.6", "0.075")),
        ("text-embedding-3-small", "text-embedding-3-small", ("0.02", "0", None)),
        ("text-embedding-3-large", "text-embedding-3-large", ("0.13", "0", None)),
    ],
)
async def test_price_lookup_by_longest_prefix(
    pool: asyncpg.Pool, model: str, prefix: str, prices: tuple[str, str, str | None]
) -> None:
    row = await pool.fetchrow(PRICE_FOR_MODEL, model)
    assert row is not None
    assert row["model_prefix"] == prefix
    expected = tuple(None if p is None else Decimal(p) for p in prices)
    assert (row["input_per_mtok"], row["output_per_mtok"], row["cache_read_per_mtok"]) == expected


async def test_price_lookup_unknown_model_and_newer_prices(pool: asyncpg.Pool) -> None:
    assert await pool.fetchrow(PRICE_FOR_MODEL, "mistral-large-latest") is None
    assert await pool.fetchrow(PRICE_FOR_MODEL, "claude-sonnet") is None  # a prefix of a prefix is no match
    await pool.execute(
        "INSERT INTO api_pricing (provider, model_prefix, input_per_mtok, output_per_mtok, effective_from) VALUES "
        "('anthropic', 'claude-sonnet-4', 2, 10, now() - interval '1 day'), "
        "('anthropic', 'claude-sonnet-4', 1, 5, now() + interval '30 days')"
    )
    row = await pool.fetchrow(PRICE_FOR_MODEL, "claude-sonnet-4-5-20250929")
    assert (row["input_per_mtok"], row["output_per_mtok"]) == (Decimal("2"), Decimal("10"))


async def test_llm_usage_row_costs_from_pricing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        case_id = await new_case(conn)
        usage_id = await conn.fetchval(
            """
            INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cached_tokens,
                                   cost_usd, latency_ms, case_id, prompt_version)
            SELECT 'triage', 'anthropic', $1, 1200, 300, 1000,
                   ((1200 - 1000) * p.input_per_mtok + 300 * p.output_per_mtok
                    + 1000 * coalesce(p.cache_read_per_mtok, p.input_per_mtok)) / 1e6,
                   850, $2, 'triage@3'
            FROM (SELECT * FROM api_pricing WHERE starts_with($1, model_prefix) AND effective_from <= now()
                  ORDER BY length(model_prefix) DESC, effective_from DESC LIMIT 1) p
            RETURNING usage_id
            """,
            "claude-sonnet-4-5-20250929",
            case_id,
        )
        cost = await conn.fetchval("SELECT cost_usd FROM llm_usage WHERE usage_id = $1", usage_id)
        # 200 × $3 + 300 × $15 + 1000 × $0.30 per million tokens
        assert cost == Decimal("0.005400")
        await conn.execute("DELETE FROM cases WHERE case_id = $1", case_id)
        assert await conn.fetchval("SELECT case_id FROM llm_usage WHERE usage_id = $1", usage_id) is None
