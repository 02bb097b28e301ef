"""Process-death and database-restart chaos, repeated: intake at --rate requests/s while the
`web,worker` process is SIGKILLed twice and restarted, then while the database is stopped and
started under it. Each repetition counts lost and duplicated cases, cases triaged twice, cases left
untriaged and jobs left in the queue.

    python bench/chaos.py [--repeat 10] [--rate 150] [--scenario kill|restart|both] [--json]

Runs on a private embedded PostgreSQL in a temporary directory (the database restart needs a server
of its own), one fresh database per repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.runtime.database import migrate_database, with_database  # noqa: E402
from db import admin  # noqa: E402
from tests.support.processes import ChaosRun, kill_scenario, restart_scenario, restartable_database  # noqa: E402


def summary(run: ChaosRun) -> dict[str, object]:
    a = run.audit
    return {
        "sent": run.load.sent,
        "accepted": len(run.load.accepted),
        "cases": a.cases,
        "lost": len(a.lost),  # accepted (2xx) and not a case
        "sender_gave_up": len(run.load.gave_up),  # never accepted within the sender's retry window
        "duplicated": a.duplicated + len(a.wrong_case) + len(run.load.case_mismatches),
        "answered_200_duplicate": run.load.statuses["200"],
        "failed_attempts": run.load.first_try_failures,
        "untriaged": a.untriaged,
        "triaged_twice": a.triaged_twice + a.triage_successes_over_one,
        "jobs_left": sum(a.jobs_left.values()),
        "process_starts": run.starts,
        "alive_at_end": run.alive_at_end,
        "health_while_down": sorted({str(h) for h in run.health_while_down[:-1]}) if run.health_while_down else [],
        "drain_s": round(run.drain_seconds, 1),
        "load_s": round(run.load.seconds, 1),
    }


async def fresh(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await admin.ensure_database(conn, name)
    finally:
        await conn.close()
    dsn = with_database(admin_url, name)
    await migrate_database(dsn)
    return dsn


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--scenario", choices=["kill", "restart", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cx-bench-chaos-"))
    server, _ = await restartable_database(work / "server", "cx")
    rounds: list[dict[str, object]] = []
    started = time.monotonic()
    try:
        for i in range(args.repeat):
            if args.scenario in ("kill", "both"):
                dsn = await fresh(server.admin_url, f"chaos_kill_{i}")
                run = await kill_scenario(dsn, work, f"kill{i}", rate=args.rate)
                rounds.append({"scenario": "sigkill x2", "round": i, **summary(run)})
            if args.scenario in ("restart", "both"):
                dsn = await fresh(server.admin_url, f"chaos_restart_{i}")
                run = await restart_scenario(server, dsn, work, f"restart{i}", rate=args.rate)
                rounds.append({"scenario": "database restart", "round": i, **summary(run)})
            for r in rounds[-2 if args.scenario == "both" else -1:]:
                print(json.dumps(r), file=sys.stderr if args.json else sys.stdout, flush=True)
    finally:
        await asyncio.to_thread(server.close)
    total = {key: sum(int(r[key]) for r in rounds)  # type: ignore[call-overload]
             for key in ("sent", "lost", "duplicated", "untriaged", "triaged_twice", "jobs_left",
                         "sender_gave_up")}
    result = {"repeat": args.repeat, "rate": args.rate, "seconds": round(time.monotonic() - started),
              "total": total, "rounds": rounds}
    print(json.dumps(result) if args.json else json.dumps(result["total"]))


if __name__ == "__main__":
    asyncio.run(main())
