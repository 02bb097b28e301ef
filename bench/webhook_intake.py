"""Webhook intake at saturation, against the durable floor measured in the same run.

    python bench/webhook_intake.py [--requests 20000] [--concurrency 50] [--rounds 3] [--rate R]
                                   [--baseline DIR] [--json]

Starts (or joins) one PostgreSQL: the embedded server in a scratch data directory, or DATABASE_URL's
server. Then, `--rounds` times, back to back on that same server: the floor,
/work/shared/tools/bare_intake.py (the same signature check and one INSERT per request), and the
product, `cx run --roles web`. Each gets the same signed requests (signed up front) over
`--concurrency` connections after a short warm-up; afterwards every accepted request must be a
committed row. Reports each side's median accepted requests per second over the rounds, and the
product's share of the floor (`ratio`). With `--baseline DIR` (a checkout of the code before a
change, e.g. `git archive HEAD | tar -x -C DIR`) each round also runs the product from DIR, so a
before/after comparison shares the machine's state with the floor.

The product runs with WEBHOOK_RATE_PER_MINUTE raised far above what the load sends, so the limiter
is on the measured path but never refuses a request.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.runtime.database import EMBEDDED_DATABASE, start_embedded, with_database  # noqa: E402
from pipelines.signatures import signed_headers  # noqa: E402

SECRET = "bench-secret"
FLOOR = ROOT.parent / "shared" / "tools" / "bare_intake.py"
# Far above any load this machine can offer: the limiter runs on every request and refuses none.
UNREACHED_RATE_PER_MINUTE = "1000000000"


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


@dataclass(frozen=True)
class Side:
    accepted: int
    committed: int
    accepted_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


# Which rows prove that a side's accepted requests are committed: the product's cases carry the
# request's external_id; the floor stores the request's body under the id it answered with.
_CASES = "SELECT count(*) FROM cases WHERE external_id LIKE $1 AND case_id = ANY($2::uuid[])"
COMMITTED = {
    "floor": "SELECT count(*) FROM bare_intake WHERE body->>'external_id' LIKE $1 AND id = ANY($2::uuid[])",
    "baseline": _CASES,
    "product": _CASES,
}


async def measure(side: str, command: list[str], env: dict[str, str], dsn: str, port: int,
                  args: argparse.Namespace, cwd: Path = ROOT) -> Side:
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, server)
        run_id = f"bench-{side}-{uuid.uuid4().hex[:8]}"
        # A short warm-up so connection set-up and first-query planning are not measured.
        await load(url, 200, args.concurrency, run_id + "-warm")
        latencies, accepted, wall = await load(url, args.requests, args.concurrency, run_id, args.rate)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    conn = await asyncpg.connect(dsn)
    try:
        committed = await conn.fetchval(COMMITTED[side], run_id + "-%", accepted)
    finally:
        await conn.close()
    return Side(
        accepted=len(accepted),
        committed=committed,
        accepted_per_s=round(len(accepted) / wall, 1),
        p50_ms=round(statistics.median(latencies), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        max_ms=round(max(latencies), 2),
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="floor and product, alternately, this many times each")
    parser.add_argument("--rate", type=float, default=None, help="offered requests/s (open loop); default: as fast as possible")
    parser.add_argument("--product-only", action="store_true", help="skip the floor (profiling the product)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also run the product from this checkout each round (before/after a change)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("CX_DATA_DIR") or tempfile.mkdtemp(prefix="cx-bench-"))
    dsn = os.environ.get("DATABASE_URL")
    if dsn is None:
        # This process holds the embedded server for the whole run; each side's server joins it.
        admin_url = await asyncio.to_thread(start_embedded, data_dir)
        conn = await asyncpg.connect(admin_url)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DATABASE):
            await conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
        await conn.close()
        dsn = with_database(admin_url, EMBEDDED_DATABASE)
    base_env = {**os.environ, "CX_DATA_DIR": str(data_dir)}
    product_env = {**base_env, "WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "warning", "LOG_FORMAT": "json",
                   "WEBHOOK_RATE_PER_MINUTE": UNREACHED_RATE_PER_MINUTE}

    rounds: dict[str, list[Side]] = {"floor": [], "baseline": [], "product": []}
    for _ in range(args.rounds):
        if not args.product_only:
            port = free_port()
            rounds["floor"].append(await measure(
                "floor", [sys.executable, str(FLOOR), str(port), SECRET, dsn], base_env, dsn, port, args))
        if args.baseline is not None:
            port = free_port()
            rounds["baseline"].append(await measure(
                "baseline", [sys.executable, "-m", "bot", "--roles", "web", "--port", str(port)], product_env, dsn,
                port, args, cwd=args.baseline.resolve()))
        port = free_port()
        rounds["product"].append(await measure(
            "product", [sys.executable, "-m", "bot", "--roles", "web", "--port", str(port)], product_env, dsn, port, args))

    def median_rate(side: str) -> float | None:
        runs = rounds[side]
        return round(statistics.median(r.accepted_per_s for r in runs), 1) if runs else None

    floor, baseline, product = median_rate("floor"), median_rate("baseline"), median_rate("product")
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "offered_per_s": args.rate,
        "rounds": args.rounds,
        "floor_per_s": floor,
        "product_per_s": product,
        "ratio": round(product / floor, 3) if floor and product else None,
        "baseline_per_s": baseline,
        "baseline_ratio": round(baseline / floor, 3) if floor and baseline else None,
        "lost": sum(r.accepted - r.committed for runs in rounds.values() for r in runs),
        "runs": {side: [asdict(r) for r in runs] for side, runs in rounds.items() if runs},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "runs":
                print(f"{key:>14}: {value}")
        for side, runs in rounds.items():
            for r in runs:
                print(f"{side:>14}: {r.accepted_per_s} req/s, p50 {r.p50_ms} ms, p99 {r.p99_ms} ms, "
                      f"{r.accepted - r.committed} lost")


if __name__ == "__main__":
    asyncio.run(main())
