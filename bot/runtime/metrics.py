"""Prometheus metrics, on a registry of our own (no process-global state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipelines.budgets import BudgetState, budget_states, utc_now
from pipelines.detection.posting import open_alert_counts

# Every series the open-alerts gauge can have: each is set on every refresh, so a severity whose
# last alert was resolved reads 0 rather than its last count.
ALERT_SEVERITIES = ("critical", "high", "warning")
ALERT_STATUSES = ("open", "acknowledged")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.jobs = Counter(
            "cx_jobs_total", "Jobs run, by name and outcome", ["job", "outcome"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "cx_job_duration_seconds", "Job run time", ["job"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "cx_queue_jobs", "Jobs in the durable queue, by status", ["status"], registry=self.registry
        )
        self.http_requests = Counter(
            "cx_http_requests_total",
            "HTTP requests served, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.scheduled = Counter(
            "cx_scheduled_runs_total",
            "Scheduler ticks, by job and whether this process enqueued the period",
            ["job", "enqueued"],
            registry=self.registry,
        )
        self.open_alerts = Gauge(
            "cx_alerts_open",
            "Proactive alerts not yet resolved, by severity and status (open or acknowledged)",
            ["severity", "status"],
            registry=self.registry,
        )

        self.budget_used = Gauge(
            "cx_budget_used_ratio",
            "Spend over limit of each active AI budget in its current period (1 or more: exhausted, degraded)",
            ["budget", "period"],
            registry=self.registry,
        )

    def observe_budgets(self, states: Sequence[BudgetState]) -> None:
        """Set the budget gauge; a budget deactivated or renamed since loses its series."""
        self.budget_used.clear()
        for state in states:
            self.budget_used.labels(state.budget.name, state.budget.period).set(state.ratio)

    def observe_open_alerts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Set the open-alerts gauge from (severity, status) → count; unlisted pairs read 0."""
        pairs = {(s, st) for s in ALERT_SEVERITIES for st in ALERT_STATUSES} | set(counts)
        for severity, status in pairs:
            self.open_alerts.labels(severity, status).set(counts.get((severity, status), 0))


async def refresh_open_alerts(metrics: Metrics, pool: asyncpg.Pool) -> None:
    """Read the open alerts' counts into the gauge: when /metrics is scraped, and after each alert job."""
    metrics.observe_open_alerts(await open_alert_counts(pool))


async def refresh_budgets(metrics: Metrics, pool: asyncpg.Pool, zone: ZoneInfo) -> None:
    """Read the budgets' spend into the gauge when /metrics is scraped."""
    async with pool.acquire() as conn:
        metrics.observe_budgets(await budget_states(conn, utc_now(), zone))
