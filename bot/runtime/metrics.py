"""Prometheus metrics, on a registry of our own (no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
