"""Health metric points pushed to POST /webhooks/metrics: the body, and storing it with the thresholds
in force for each metric."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from db import metrics as metrics_db
from db.pool import transaction
from pipelines.detection.thresholds import FiniteNumber, MetricName, check_order, status_of

MAX_POINTS = 1000
# A point stamped in the future would sit in every detection window until then; allow clock skew only.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class MetricPoint(BaseModel):
    """One measurement. A point that carries thresholds sets its metric's pair (a missing one means
    none), for this point and every later one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: MetricName
    value: FiniteNumber
    unit: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")
    service: MetricName | None = None
    recorded_at: AwareDatetime | None = None  # None: when it is stored
    threshold_warning: FiniteNumber | None = None
    threshold_critical: FiniteNumber | None = None

    @field_validator("recorded_at", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        # Without this a bare number would pass as unix seconds; the contract is ISO 8601 with a zone.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 timestamp with a time zone")
        return value

    @field_validator("recorded_at")
    @classmethod
    def _not_ahead(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("is in the future")
        return value

    @field_validator("threshold_critical")
    @classmethod
    def _ordered(cls, value: float | None, info: ValidationInfo) -> float | None:
        check_order(info.data.get("threshold_warning"), value)
        return value

    @property
    def carries_thresholds(self) -> bool:
        return self.threshold_warning is not None or self.threshold_critical is not None


class MetricsRequest(BaseModel):
    """The body of POST /webhooks/metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: list[MetricPoint] = Field(min_length=1, max_length=MAX_POINTS)


async def record_metric_points(pool: asyncpg.Pool, request: MetricsRequest) -> int:
    """Store every point, all or none: first the thresholds the points carry (the last point of a
    metric wins), then each point with the thresholds in force for its metric and its status."""
    pushed = {
        p.name: metrics_db.ThresholdPair(p.threshold_warning, p.threshold_critical)
        for p in request.metrics
        if p.carries_thresholds
    }
    async with transaction(pool) as conn:
        await metrics_db.push_thresholds(conn, pushed)
        in_force = await metrics_db.thresholds_for(conn, {p.name for p in request.metrics})
        rows = []
        for p in request.metrics:
            t = in_force.get(p.name)
            warning, critical = (t.warning, t.critical) if t else (None, None)
            rows.append(metrics_db.PointRow(
                name=p.name, value=p.value, unit=p.unit, service=p.service,
                threshold_warning=warning, threshold_critical=critical,
                status=status_of(p.value, warning, critical), recorded_at=p.recorded_at,
            ))
        return await metrics_db.insert_points(conn, rows, source="webhook")
