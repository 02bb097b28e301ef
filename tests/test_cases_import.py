"""`cx cases import FILE.jsonl --as-cases`: past cases stored as cases of channel `import`, with their
own timestamps, labels and status, their error codes, labelled examples and vectors; no job queued;
a re-import changes nothing; a bad line is named and nothing is stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from pgvector.asyncpg import register_vector

from db import embedding_space
from db.embedding_space import EmbeddingSpaceMismatch
from pipelines.intake.case_history import CaseHistoryError, import_cases, read_past_cases
from pipelines.ports import EMBED_CHARS, LLMUsage
from pipelines.ports import case_embedding_text as embedding_text
from pipelines.taxonomy import load_taxonomy
from tests.cli_runner import ROOT, cx, cx_env
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai import embed as openai_vector
from tests.support.db import count

TAXONOMY_PATH = ROOT / "prompts" / "taxonomy.yaml"
TAXONOMY = load_taxonomy(TAXONOMY_PATH)

PAST = [
    {  # a Zendesk-style line: numeric id, a source channel, a bare subcategory as its label, naive times
        "external_id": 4711, "received_at": "2026-03-02T09:15:00", "customer_email": "Ana@Example.com",
        "customer_name": "Ana Lima", "subject": "Login fails", "channel": "Web",
        "description": "Every sign-in ends with ERR_AUTH_1042 since this morning.",
        "category": "api_authentication", "priority": "HIGH", "first_response_at": "2026-03-02T09:40:00",
        "resolved_at": "2026-03-02T13:15:00", "resolution_type": "human", "csat": 4, "via": {"ignored": True},
    },
    {  # the same customer again, with an explicit status and no labels
        "external_id": "4712", "received_at": "2026-03-05T18:00:00+02:00", "customer_email": "ana@example.com",
        "description": "The export still shows error 5031 when I download the report.", "status": "escalated",
        "subject": "", "priority": None,
    },
    {  # neither status nor resolved_at: over, as history is
        "external_id": "4713", "received_at": "2026-02-27T08:00:00Z", "customer_email": "bo@example.org",
        "description": "How do I add a colleague to our workspace?", "category": "usage", "subcategory": "account",
    },
]


def write_jsonl(path: Path, records: list[dict[str, object]], extra_lines: tuple[str, ...] | list[str] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(line + "\n" for line in extra_lines))
    return path


class HashEmbedder:
    """Deterministic unit vectors from a hash of the text; remembers how often it was called."""

    provider = "local"

    def __init__(self, model: str = "fake-mini", dimensions: int = 8) -> None:
        self.model = model
        self.dimensions = dimensions
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        v = np.random.default_rng(seed).normal(size=self.dimensions)
        return (v / np.linalg.norm(v)).astype(np.float32)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        self.calls.append(list(texts))
        return np.vstack([self.vector(t) for t in texts]), LLMUsage(step="embedding", provider="local", model=self.model)


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        await register_vector(conn)
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ---- the command, end to end ----------------------------------------------------------------------------


async def test_past_cases_become_cases_with_their_history(dsn, tmp_path):
    path = write_jsonl(tmp_path / "past.jsonl", PAST)
    async with FakeOpenAI() as fake:
        env = cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(TAXONOMY_PATH), OPENAI_API_KEY="sk-test",
                     OPENAI_BASE_URL=fake.url + "/v1")
        # In a thread, so that this loop keeps serving the fake while the command runs.
        result = await asyncio.to_thread(cx, "cases", "import", str(path), "--as-cases", "--embeddings", "openai",
                                         env=env)
        assert result.returncode == 0, result.stderr
        assert "3 lines read: 3 new cases, 0 already there; 2 new labelled examples." in result.stdout
        assert "3 cases embedded with openai text-embedding-3-small." in result.stdout
        calls = len(fake.requests_to("/v1/embeddings"))

        cases = {r["external_id"]: r for r in await fetch(dsn, """
            SELECT c.*, cu.email, cu.name AS customer_name FROM cases c JOIN customers cu USING (customer_id)""")}
        assert set(cases) == {"4711", "4712", "4713"}
        ana = cases["4711"]
        assert ana["channel"] == "import" and ana["metadata"] == json.dumps({"source_channel": "web"})
        assert ana["created_at"] == at("2026-03-02T09:15:00+00:00"), "a naive timestamp is UTC"
        assert ana["first_response_at"] == at("2026-03-02T09:40:00+00:00")
        assert ana["resolved_at"] == at("2026-03-02T13:15:00+00:00") and ana["resolution_time_minutes"] == 240
        assert ana["updated_at"] == ana["resolved_at"], "the last thing known to have happened"
        assert (ana["category"], ana["subcategory"], ana["priority"]) == ("configuration", "api_authentication", "high")
        assert (ana["status"], ana["resolution_type"], ana["csat"]) == ("resolved", "human", 4)
        assert ana["error_codes"] == ["ERR_AUTH_1042"]
        assert (ana["email"], ana["customer_name"]) == ("ana@example.com", "Ana Lima")
        assert ana["triaged_at"] is None and ana["triage_model"] is None, "no AI ran"

        second = cases["4712"]
        assert second["created_at"] == at("2026-03-05T16:00:00+00:00") and second["status"] == "escalated"
        assert second["customer_id"] == ana["customer_id"], "one customer per address, whatever its case"
        assert second["subject"] is None and second["category"] is None and second["error_codes"] == ["5031"]
        assert second["metadata"] == "{}"

        bo = cases["4713"]
        assert bo["status"] == "closed" and (bo["category"], bo["subcategory"]) == ("usage", "account")
        assert bo["short_id"] < ana["short_id"] < second["short_id"], "short ids follow arrival"

        examples = await fetch(dsn, "SELECT text, category, subcategory, priority, source, case_id FROM labelled_examples")
        assert sorted((e["text"], e["category"], e["subcategory"], e["priority"], e["source"], e["case_id"])
                      for e in examples) == sorted([
            ("Login fails\nEvery sign-in ends with ERR_AUTH_1042 since this morning.", "configuration",
             "api_authentication", "high", "case", ana["case_id"]),
            ("How do I add a colleague to our workspace?", "usage", "account", None, "case", bo["case_id"]),
        ])

        first = await fetch(dsn, "SELECT case_id, actor_type, interaction_type, message, created_at "
                                 "FROM case_interactions")
        assert {(i["case_id"], i["interaction_type"], i["created_at"]) for i in first} == {
            (c["case_id"], "import", c["created_at"]) for c in cases.values()}

        vectors = await fetch(dsn, "SELECT case_id, embedding, model FROM case_embeddings")
        assert {v["model"] for v in vectors} == {"text-embedding-3-small"} and len(vectors) == 3
        stored = {v["case_id"]: np.asarray(v["embedding"].to_numpy()) for v in vectors}
        np.testing.assert_allclose(stored[ana["case_id"]], openai_vector(embedding_text(ana["subject"], ana["description"])),
                                   atol=1e-6)
        usage = await fetch(dsn, "SELECT step, provider, model FROM llm_usage")
        assert {(u["step"], u["provider"], u["model"]) for u in usage} == {("case_embed", "openai",
                                                                            "text-embedding-3-small")}
        assert await count(dsn, "pgqueuer") == 0, "no job is queued"
        assert await count(dsn, "reply_outbox") == 0 and await count(dsn, "review_queue") == 0

        again = await asyncio.to_thread(cx, "cases", "import", str(path), "--as-cases", "--embeddings", "openai",
                                        "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {"lines": 3, "created": 0, "existing": 3, "examples_added": 0,
                                            "embedded": 0, "unembedded": 0,
                                            "embedding_model": "text-embedding-3-small"}
        assert len(fake.requests_to("/v1/embeddings")) == calls, "nothing is embedded twice"
    for table, rows in (("cases", 3), ("customers", 2), ("case_interactions", 3), ("labelled_examples", 2),
                        ("case_embeddings", 3), ("llm_usage", len(usage))):
        assert await count(dsn, table) == rows, table


@pytest.mark.parametrize(("line", "reason"), [
    ('{"external_id": "b1", "received_at": "2026-03-01T10:00:00Z", ', "not JSON"),
    ('{"external_id": "b1", "received_at": "2026-03-01T10:00:00Z", "customer_email": "c@example.com"}',
     "description is missing"),
    ('{"external_id": "b1", "received_at": "2026-03-01T10:00:00Z", "customer_email": "not-an-address", '
     '"description": "x"}', "customer_email: value is not a valid email address"),
    ('{"external_id": "b1", "received_at": "2026-03-01T10:00:00Z", "customer_email": "c@example.com", '
     '"description": "x", "category": "no_such_label"}', "category 'no_such_label' is not in taxonomy software-support"),
    ('{"external_id": "b1", "received_at": "2026-03-01T10:00:00Z", "customer_email": "c@example.com", '
     '"description": "x", "resolved_at": "2026-03-01T09:00:00Z"}', "resolved_at 2026-03-01T09:00:00+00:00 is before"),
])
async def test_a_bad_line_is_named_and_nothing_is_stored(dsn, tmp_path, line, reason):
    path = write_jsonl(tmp_path / "past.jsonl", PAST, [line])
    result = cx("cases", "import", str(path), "--as-cases", "--embeddings", "none",
                env=cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(TAXONOMY_PATH)))
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"{path}:4:" in message and reason in message, message
    assert "Traceback" not in result.stderr
    for table in ("cases", "customers", "labelled_examples", "case_interactions"):
        assert await count(dsn, table) == 0, table


async def test_without_an_embedder_the_import_says_so_and_a_later_run_embeds(dsn, pool, tmp_path):
    path = write_jsonl(tmp_path / "past.jsonl", PAST)
    result = cx("cases", "import", str(path), "--as-cases", "--embeddings", "none",
                env=cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(TAXONOMY_PATH)))
    assert result.returncode == 0, result.stderr
    assert "3 new cases" in result.stdout
    assert "No embeddings (EMBEDDINGS=none): 3 imported cases have no vector" in " ".join(result.stdout.split())
    assert await count(dsn, "case_embeddings") == 0

    embedder = HashEmbedder()
    report = await import_cases(pool, read_past_cases(path, TAXONOMY), embedder, embed_batch=2)
    assert (report.created, report.existing, report.embedded, report.unembedded) == (0, 3, 3, 0)
    assert [len(call) for call in embedder.calls] == [2, 1]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM case_embeddings WHERE model = 'fake-mini'") == 3
        assert await conn.fetchval("SELECT count(*) FROM llm_usage WHERE step = 'case_embed'") == 2

    report = await import_cases(pool, read_past_cases(path, TAXONOMY), embedder)
    assert report.embedded == 0 and len(embedder.calls) == 2, "a case with a vector is not embedded again"


async def test_an_interrupted_embedding_is_finished_by_the_next_run(pool, tmp_path):
    records = [{"external_id": f"x{i}", "received_at": f"2026-03-0{1 + i % 9}T10:00:00Z",
                "customer_email": f"c{i % 3}@example.com", "description": f"case number {i}"} for i in range(7)]
    path = write_jsonl(tmp_path / "past.jsonl", records)

    class FailsOnThirdCall(HashEmbedder):
        async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
            if len(self.calls) == 2:
                raise RuntimeError("the process was stopped")
            return await super().embed(texts)

    broken = FailsOnThirdCall()
    with pytest.raises(RuntimeError):
        await import_cases(pool, read_past_cases(path, TAXONOMY), broken, batch=3, embed_batch=2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases") == 7, "every batch of cases was committed"
        assert await conn.fetchval("SELECT count(*) FROM case_embeddings") == 4

    embedder = HashEmbedder()
    report = await import_cases(pool, read_past_cases(path, TAXONOMY), embedder, batch=3, embed_batch=2)
    assert (report.created, report.existing, report.embedded, report.unembedded) == (0, 7, 3, 0)
    assert sorted(t for call in embedder.calls for t in call) == ["case number 4", "case number 5", "case number 6"]
    async with pool.acquire() as conn:
        short_ids = [r["external_id"] for r in await conn.fetch("SELECT external_id FROM cases ORDER BY short_id")]
    assert short_ids == [r["external_id"] for r in sorted(records, key=lambda r: r["received_at"])], \
        "short ids follow arrival across batches"


async def test_another_embedding_model_is_refused_before_anything_is_stored(pool, tmp_path):
    async with pool.acquire() as conn:
        await embedding_space.claim(conn, "local", "all-MiniLM-L6-v2", 384)
    path = write_jsonl(tmp_path / "past.jsonl", PAST)
    with pytest.raises(EmbeddingSpaceMismatch):
        await import_cases(pool, read_past_cases(path, TAXONOMY), HashEmbedder())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases") == 0


async def test_an_imported_case_keeps_to_the_state_machine_afterwards(pool, tmp_path):
    from db.cases import ActorType, CaseStatus, InvalidTransition, transition

    path = write_jsonl(tmp_path / "past.jsonl", PAST)
    await import_cases(pool, read_past_cases(path, TAXONOMY), None)
    async with pool.acquire() as conn:
        case_id = await conn.fetchval("SELECT case_id FROM cases WHERE external_id = '4713'")
        async with conn.transaction():
            assert await transition(conn, case_id, CaseStatus.REOPENED, actor_type=ActorType.SYSTEM,
                                    actor_id="test") == CaseStatus.CLOSED
        with pytest.raises(InvalidTransition):
            async with conn.transaction():
                await transition(conn, case_id, CaseStatus.RESOLVED, actor_type=ActorType.SYSTEM, actor_id="test")


# ---- reading and checking the file ----------------------------------------------------------------------


def test_lines_are_read_with_their_defaults(tmp_path):
    path = write_jsonl(tmp_path / "past.jsonl", PAST, [""])
    ana, second, bo = read_past_cases(path, TAXONOMY)
    assert ana.external_id == "4711" and ana.customer_email == "ana@example.com" and ana.channel == "web"
    assert ana.received_at == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    assert second.received_at.utcoffset() == timedelta(hours=2) and second.subject is None
    assert [c.final_status() for c in (ana, second, bo)] == ["resolved", "escalated", "closed"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"priority": "urgent"}, "priority: Input should be 'critical', 'high', 'medium' or 'low'"),
    ({"status": "solved"}, "status: Input should be"),
    ({"csat": 6}, "csat: Input should be less than or equal to 5"),
    ({"resolution_type": "bot"}, "resolution_type: Input should be"),
    ({"received_at": "yesterday"}, "received_at: Input should be a valid datetime"),
    ({"first_response_at": "2026-03-02T09:00:00"}, "first_response_at 2026-03-02T09:00:00+00:00 is before received_at"),
    ({"resolved_at": "2999-01-01T00:00:00Z"}, "resolved_at 2999-01-01T00:00:00+00:00 is in the future"),
    ({"category": "usage", "subcategory": "api_authentication"}, "usage/api_authentication is not in taxonomy"),
    ({"category": None, "subcategory": "usage"}, "subcategory 'usage' is not in taxonomy"),
    ({"description": "   "}, "description: String should have at least 1 character"),
    ({"external_id": "4713"}, "external_id '4713' is already on line 3"),
])
def test_each_check_names_the_line_and_the_reason(tmp_path, change, reason):
    path = write_jsonl(tmp_path / "past.jsonl", PAST + [{**PAST[0], "external_id": "new-1", **change}])
    with pytest.raises(CaseHistoryError) as caught:
        read_past_cases(path, TAXONOMY)
    assert str(caught.value).startswith(f"{path}:4: ") and reason in str(caught.value), str(caught.value)


def test_a_file_that_is_not_jsonl_or_empty_is_refused(tmp_path):
    with pytest.raises(CaseHistoryError, match="a .jsonl file"):
        read_past_cases(write_jsonl(tmp_path / "past.csv", PAST), TAXONOMY)
    with pytest.raises(CaseHistoryError, match="no cases"):
        read_past_cases(write_jsonl(tmp_path / "empty.jsonl", []), TAXONOMY)


def test_the_embedded_text_is_the_first_characters_of_subject_and_message():
    long = "word " * 1000
    text = embedding_text("Subject", long)
    assert text == ("Subject\n" + long)[:EMBED_CHARS] and len(text) == EMBED_CHARS
    assert embedding_text(None, "short") == "short"


async def test_embeddings_without_as_cases_is_a_usage_error(dsn, tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("text,category\nMy token expired,api_authentication\n")
    result = cx("cases", "import", str(history), "--embeddings", "local",
                env=cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(TAXONOMY_PATH)))
    assert result.returncode == 2 and "--embeddings goes with --as-cases" in result.stderr
    assert await count(dsn, "labelled_examples") == 0

