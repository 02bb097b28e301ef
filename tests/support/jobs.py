"""Running queued jobs in a test as the worker would, without a worker."""

from __future__ import annotations

from bot.deps import Deps
from bot.jobs import job_handlers


async def run_jobs(deps: Deps, name: str) -> int:
    """Run the queued jobs of one kind, oldest first; returns how many ran. They leave the queue before
    they run, so a job one of them queues stays queued."""
    rows = await deps.pool.fetch("DELETE FROM pgqueuer WHERE entrypoint = $1 RETURNING id, payload", name)
    for row in sorted(rows, key=lambda r: r["id"]):
        await job_handlers(deps)[name](bytes(row["payload"]))
    return len(rows)
