"""Faults under load: intake at 150 requests/s while the `web,worker` process is SIGKILLed twice and
restarted, and while the database itself is stopped and started. Every accepted request is a case,
every case is triaged once, nothing is left stuck in the queue. bench/chaos.py repeats both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.processes import ChaosRun, RestartableServer, kill_scenario, restart_scenario, restartable_database

# No triage model: every case is routed to a person by the same step, once. That keeps the drain
# short (the trained local model triages ~30 cases/s on two cores; see bench/worker_scaling.py).


def assert_nothing_lost_or_doubled(run: ChaosRun) -> None:
    load, audit = run.load, run.audit
    assert load.gave_up == [] and load.case_mismatches == [], "every request was accepted in the end"
    assert len(load.accepted) == load.sent == audit.cases
    assert (audit.lost, audit.wrong_case, audit.duplicated) == ([], [], 0)
    assert (audit.untriaged, audit.triaged_twice, audit.triage_successes_over_one) == (0, 0, 0)
    assert (audit.drafts_over_one, audit.jobs_left) == (0, {}), "none stuck: the triage and draft queue drained"


@pytest.mark.timeout(180)  # about 45 s on a quiet two-core machine; CPU-bound drains stretch under load
async def test_killing_the_web_worker_process_twice_loses_nothing(dsn, tmp_path):
    run = await kill_scenario(dsn, tmp_path, "kill", rate=150, kills=2)
    assert_nothing_lost_or_doubled(run)
    assert run.starts == 3 and run.alive_at_end
    assert run.load.statuses["refused"] > 0, "requests met a dead process (else the kills came too late)"
    assert run.load.sent >= 150 * 3


@pytest.fixture
async def restartable(tmp_path) -> AsyncIterator[tuple[RestartableServer, str]]:
    server, dsn = await restartable_database(tmp_path / "restartable", "chaos")
    yield server, dsn
    await asyncio.to_thread(server.close)


@pytest.mark.timeout(180)  # about 45 s on a quiet two-core machine; CPU-bound drains stretch under load
async def test_a_database_restart_under_load_loses_nothing(restartable, tmp_path):
    server, dsn = restartable
    run = await restart_scenario(server, dsn, tmp_path, "restart", rate=150)
    assert_nothing_lost_or_doubled(run)
    assert run.alive_at_end and run.starts == 1, "the process lived through the restart: its pool reconnected"
    *down, after = run.health_while_down
    assert down and set(down) == {503}, "/healthz says 503 while the database is down"
    assert after == 200, "and 200 once it is back"
    assert run.load.statuses["503"] > 0, "requests met the database down and were told to retry"
    assert run.load.statuses["500"] == 0, "a database outage is a 503 with Retry-After, never an internal error"
