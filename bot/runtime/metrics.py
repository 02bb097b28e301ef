"""Prometheus metrics, on a registry of our own (no process-global state)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from db import stats as stats_db
from pipelines.budgets import BudgetState, budget_states, utc_now
from pipelines.detection.posting import open_alert_counts

# Every series the open-alerts gauge can have: each is set on every refresh, so a severity whose
# last alert was resolved reads 0 rather than its last count.
ALERT_SEVERITIES = ("critical", "high", "warning")
ALERT_STATUSES = ("open", "acknowledged")

# Triage confidence is read against CONFIDENCE_THRESHOLD_HIGH (0.85 by default) and the review
# floor: finer buckets at the top, where routing decisions are made.
CONFIDENCE_BUCKETS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)
# From a job that started at once to one that waited out a worker restart or a backlog.
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class _LLMCostCollector(Collector):
    """cx_llm_cost_usd_total as the database last said on a scrape: PostgreSQL keeps the sum
    (migration 0025: every process's calls, through restarts, retention and erasure), this process
    only reports it."""

    def __init__(self) -> None:
        self.totals: list[stats_db.CostTotal] = []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "cx_llm_cost_usd", "Cost of every AI call since the install, in USD, by step and provider "
            "(read from the database on each scrape: take max(), not sum(), across processes)",
            labels=["step", "provider"])
        for total in self.totals:
            family.add_metric([total.step, total.provider], float(total.cost_usd))
        yield family


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # Jobs are labelled job_name, never job: Prometheus gives every scraped series a `job` label of
        # its own and would rename ours to exported_job.
        self.jobs = Counter(
            "cx_jobs_total", "Jobs run, by name and outcome", ["job_name", "outcome"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "cx_job_duration_seconds", "Job run time", ["job_name"], registry=self.registry
        )
        self.job_wait = Histogram(
            "cx_job_wait_seconds", "Time a job waited in the queue before a worker started it (from when it "
            "could run: its retry back-off is not waiting)", ["job_name"], buckets=WAIT_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge(
            "cx_queue_jobs", "Jobs in the durable queue, by status", ["status"], registry=self.registry
        )
        self.queue_oldest = Gauge(
            "cx_queue_oldest_job_age_seconds",
            "Age of the oldest queued job that could run now, by job name (no series: none waiting)",
            ["job_name"], registry=self.registry,
        )
        self.triage_confidence = Histogram(
            "cx_triage_confidence", "Confidence of each triage that labelled a case, by triager",
            ["triager"], buckets=CONFIDENCE_BUCKETS, registry=self.registry,
        )
        self.triage_routes = Counter(
            "cx_triage_routes_total", "Cases routed by triage, by route", ["route"], registry=self.registry
        )
        self.llm_cost = _LLMCostCollector()
        self.registry.register(self.llm_cost)
        self.slack_requests = Counter(
            "cx_slack_api_requests_total", "Slack Web API requests sent (each retry is one more), by method",
            ["method"], registry=self.registry,
        )
        self.slack_errors = Counter(
            "cx_slack_api_errors_total",
            "Slack Web API requests that failed, by method and error (Slack's error code, http_NNN, or the "
            "exception's type)", ["method", "error"], registry=self.registry,
        )
        self.slack_retries = Counter(
            "cx_slack_api_retries_total", "Slack Web API requests retried, by method and reason",
            ["method", "reason"], registry=self.registry,
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
            ["job_name", "enqueued"],
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

    def observe_triage(self, route: str, confidence: float | None, triager: str | None) -> None:
        """One case triaged; a case sent to a person because no triager could answer has a route only."""
        self.triage_routes.labels(route).inc()
        if confidence is not None:
            self.triage_confidence.labels(triager or "unknown").observe(confidence)

    def observe_oldest_queued(self, ages: Mapping[str, float]) -> None:
        """Set the oldest-job gauge; a job name whose queue emptied loses its series."""
        self.queue_oldest.clear()
        for job, age in ages.items():
            self.queue_oldest.labels(job).set(age)

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


async def refresh_from_database(metrics: Metrics, pool: asyncpg.Pool) -> None:
    """The queue's oldest waiting job and the AI cost totals, read when /metrics is scraped."""
    async with pool.acquire() as conn:
        metrics.observe_oldest_queued(await stats_db.oldest_queued_ages(conn))
        metrics.llm_cost.totals = await stats_db.llm_cost_totals(conn)


def metrics_only_app(metrics: Metrics) -> web.Application:
    """GET /metrics of a process without the web role: its own counters only. The database's gauges
    (queue depth, oldest job, alerts, budgets, cost) come from the web processes' /metrics."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", serve)
    return app
