"""The daily report as data: one day's figures (named as the SQL definitions name them), their change
against the previous 7-day average, the KB gaps, the latest retraining, and the 14-day trend the
chart draws. Free of the database, so the Slack builders can take it as it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict

BASELINE_DAYS = 7
TREND_DAYS = 14


class DailyMetrics(BaseModel):
    """One local day's figures; README "Daily metrics" defines each (db/migrations/0014_daily_metrics.sql
    implements them). None: nothing to measure that day (no resolved case has a CSAT, say)."""

    model_config = ConfigDict(frozen=True)

    received: int
    resolved: int
    self_service_resolved: int
    self_service_rate: float | None
    median_resolution_minutes: float | None
    csat_avg: float | None
    csat_count: int
    first_responses: int
    median_first_response_minutes: float | None
    escalated: int
    reviews: int
    approve_count: int
    edit_count: int
    reject_count: int
    escalate_count: int
    approve_rate: float | None
    edit_rate: float | None
    reject_rate: float | None
    reviewed_cases: int
    corrected_cases: int
    triage_accuracy: float | None
    review_sla_breaches: int
    drafted_cases: int
    kb_matched_cases: int
    kb_match_rate: float | None
    llm_calls: int
    llm_cost_usd: float
    llm_cost_per_case: float | None
    backlog: int


class Unit(StrEnum):
    COUNT = "count"
    RATE = "rate"  # a fraction 0..1, shown as a percentage; changes in points
    MINUTES = "minutes"
    SCORE = "score"  # CSAT, 1..5
    USD = "usd"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    unit: Unit
    higher_is_better: bool | None  # None: neither (volume)


# What the report shows, in its order: the figures a reader compares day to day.
REPORTED: tuple[MetricSpec, ...] = (
    MetricSpec("received", "Received", Unit.COUNT, None),
    MetricSpec("resolved", "Resolved", Unit.COUNT, True),
    MetricSpec("self_service_resolved", "Self-service resolved", Unit.COUNT, True),
    MetricSpec("self_service_rate", "Self-service rate", Unit.RATE, True),
    MetricSpec("median_resolution_minutes", "Median resolution", Unit.MINUTES, False),
    MetricSpec("median_first_response_minutes", "Median first response", Unit.MINUTES, False),
    MetricSpec("csat_avg", "CSAT", Unit.SCORE, True),
    MetricSpec("backlog", "Backlog at end of day", Unit.COUNT, False),
    MetricSpec("approve_count", "Drafts approved", Unit.COUNT, None),
    MetricSpec("edit_count", "Drafts edited", Unit.COUNT, None),
    MetricSpec("reject_count", "Drafts rejected", Unit.COUNT, None),
    MetricSpec("approve_rate", "Approve rate", Unit.RATE, True),
    MetricSpec("edit_rate", "Edit rate", Unit.RATE, False),
    MetricSpec("reject_rate", "Reject rate", Unit.RATE, False),
    MetricSpec("triage_accuracy", "Triage accuracy", Unit.RATE, True),
    MetricSpec("kb_match_rate", "KB match rate", Unit.RATE, True),
    MetricSpec("review_sla_breaches", "Review-SLA breaches", Unit.COUNT, False),
    MetricSpec("escalated", "Escalated", Unit.COUNT, False),
    MetricSpec("llm_cost_usd", "LLM cost", Unit.USD, False),
    MetricSpec("llm_cost_per_case", "LLM cost per case", Unit.USD, False),
)


class MetricChange(BaseModel):
    """A figure and its change against the mean of the previous days that had one."""

    name: str
    label: str
    unit: Unit
    value: float | None
    average: float | None  # mean over the previous BASELINE_DAYS days with a value; None: none had one
    change: float | None  # value - average
    higher_is_better: bool | None


class ReportGap(BaseModel):
    """A KB gap as the report lists it (pipelines.learning.kb_gaps finds them)."""

    title: str
    case_ids: list[UUID]
    best_article: str | None
    best_score: float | None


class ReportRetrain(BaseModel):
    """The latest gated retrain of the local triager, and whether its model was kept."""

    examples: int
    new_examples: int
    candidate_accuracy: float
    current_accuracy: float | None
    kept: bool
    finished_at: datetime


def retrain_summary(r: ReportRetrain | None) -> str:
    """One sentence on the latest gated retrain, as the Slack message and the email both say it."""
    if r is None:
        return "No retraining finished since the day began."
    current = f"{r.current_accuracy:.1%}" if r.current_accuracy is not None else "no current model"
    verdict = "kept: the new model is active" if r.kept else "not kept: the current model stays"
    return (f"Retrained on {r.examples:,} examples ({r.new_examples:,} new): cross-validated accuracy "
            f"{r.candidate_accuracy:.1%} against {current}; {verdict}.")


class TrendPoint(BaseModel):
    day: date
    received: int
    resolved: int
    self_service_resolved: int
    csat_avg: float | None


class DailyReport(BaseModel):
    day: date
    timezone: str
    metrics: DailyMetrics
    baseline_days: int  # how many of the previous BASELINE_DAYS days the averages cover
    changes: list[MetricChange]
    kb_gaps: list[ReportGap]
    retrain: ReportRetrain | None
    trend: list[TrendPoint]  # the TREND_DAYS days ending with `day`, oldest first

    @property
    def subject(self) -> str:
        return f"Daily Support Insights - {self.day.isoformat()}"


def changes(metrics: DailyMetrics, previous: list[DailyMetrics]) -> list[MetricChange]:
    """Each reported figure against the mean of the previous days' values (days without one are left out)."""
    out = []
    for spec in REPORTED:
        value = getattr(metrics, spec.name)
        earlier = [v for v in (getattr(p, spec.name) for p in previous) if v is not None]
        average = sum(earlier) / len(earlier) if earlier else None
        out.append(MetricChange(
            name=spec.name, label=spec.label, unit=spec.unit, value=value, average=average,
            change=value - average if value is not None and average is not None else None,
            higher_is_better=spec.higher_is_better,
        ))
    return out


def trend_point(day: date, metrics: DailyMetrics) -> TrendPoint:
    return TrendPoint(day=day, received=metrics.received, resolved=metrics.resolved,
                      self_service_resolved=metrics.self_service_resolved, csat_avg=metrics.csat_avg)


def formatted(value: float | None, unit: Unit) -> str:
    """A figure as people read it: 42, 87.5%, 12.3 min, 4.25, $0.0132; "–" when there is none."""
    if value is None:
        return "–"
    if unit is Unit.COUNT:
        return f"{value:,.0f}"
    if unit is Unit.RATE:
        return f"{value * 100:.1f}%"
    if unit is Unit.MINUTES:
        return f"{value:,.1f} min"
    if unit is Unit.SCORE:
        return f"{value:.2f}"
    return f"${value:,.4f}"


def formatted_change(change: MetricChange) -> str:
    """"+12 vs 7-day avg 80", "-3.5 pts vs 7-day avg 72.0%"; "no earlier days" without a baseline."""
    if change.average is None:
        return "no earlier days to compare"
    if change.change is None:
        return f"7-day avg {formatted(change.average, change.unit)}"
    delta = change.change
    sign = "+" if delta > 0 else "−" if delta < 0 else "±"
    size = abs(delta)
    if change.unit is Unit.RATE:
        shown = f"{size * 100:.1f} pts"
    elif change.unit is Unit.COUNT:
        shown = f"{size:,.1f}".removesuffix(".0")
    elif change.unit is Unit.MINUTES:
        shown = f"{size:,.1f} min"
    elif change.unit is Unit.SCORE:
        shown = f"{size:.2f}"
    else:
        shown = f"${size:,.4f}"
    return f"{sign}{shown} vs 7-day avg {formatted(change.average, change.unit)}"
