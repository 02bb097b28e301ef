"""What a Prometheus scrape of GET /metrics costs on a big desk: its queries (queue depth and the
oldest waiting job, open alerts, budgets, the AI cost counter, which sums llm_usage) run on every
scrape, in every web process.

    python bench/metrics_scrape.py [--usage-rows 300000] [--queued 5000] [--scrapes 50] [--json]

Builds a scratch database (DATABASE_URL's server, or the embedded one in a temporary directory),
times the scrapes through the real web app, and drops the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.deps import Deps  # noqa: E402
from bot.runtime.database import scratch_pool  # noqa: E402
from bot.runtime.metrics import Metrics  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web.app import build_web_app  # noqa: E402
from bot.web.http import RuntimeStatus  # noqa: E402

_USAGE = """
INSERT INTO llm_usage (step, provider, model, input_tokens, output_tokens, cost_usd, created_at)
SELECT (ARRAY['triage', 'draft', 'embedding', 'summary'])[1 + i % 4], (ARRAY['anthropic', 'openai'])[1 + i % 2],
       'm', 500, 200, 0.001 * (i % 7), now() - make_interval(secs => i * 20)
FROM generate_series(1, $1) AS i
"""
_QUEUED = """
INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, execute_after)
SELECT 0, 'queued', (ARRAY['case.triage', 'case.draft', 'reply.send'])[1 + i % 3], '{}'::bytea,
       now() - make_interval(secs => i), now() - make_interval(secs => i)
FROM generate_series(1, $1) AS i
"""


async def run(usage_rows: int, queued: int, scrapes: int) -> dict[str, object]:
    settings = load_settings()
    if settings.database_url is None:
        settings = load_settings(cx_data_dir=Path(tempfile.mkdtemp(prefix="cx-bench-metrics-")))
    async with scratch_pool(settings) as pool:
        started = time.perf_counter()
        await pool.execute(_USAGE, usage_rows)
        await pool.execute(_QUEUED, queued)
        await pool.execute("ANALYZE")
        build_seconds = time.perf_counter() - started
        client = TestClient(TestServer(build_web_app(Deps(settings, pool, Metrics()), RuntimeStatus(roles=["web"]))))
        await client.start_server()
        try:
            await client.get("/metrics")  # the first scrape warms the caches
            times = []
            for _ in range(scrapes):
                began = time.perf_counter()
                response = await client.get("/metrics")
                body = await response.text()
                times.append((time.perf_counter() - began) * 1000)
                assert response.status == 200 and "cx_llm_cost_usd_total" in body
        finally:
            await client.close()
    times.sort()
    return {
        "usage_rows": usage_rows, "queued_jobs": queued, "scrapes": scrapes,
        "build_seconds": round(build_seconds, 1),
        "scrape_ms_p50": round(statistics.median(times), 1),
        "scrape_ms_p95": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "scrape_ms_max": round(times[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usage-rows", type=int, default=300_000)
    parser.add_argument("--queued", type=int, default=5_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.usage_rows, args.queued, args.scrapes))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
