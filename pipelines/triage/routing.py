"""Where a triaged case goes (spec section 1, step 3). Pure: thresholds are passed in."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.models import Route, RouteDecision, TriageResult

VIP_TIERS = frozenset({"enterprise", "premium"})


@dataclass(frozen=True)
class Thresholds:
    high: float
    medium: float


def decide_route(triage: TriageResult, tier: str, thresholds: Thresholds) -> RouteDecision:
    if triage.priority == "critical":
        return RouteDecision(route=Route.HUMAN_URGENT, reason="priority is critical")
    if tier in VIP_TIERS and triage.sentiment == "negative":
        return RouteDecision(route=Route.HUMAN_URGENT, reason=f"{tier} customer with negative sentiment")
    if triage.confidence >= thresholds.high:
        return RouteDecision(
            route=Route.SELF_SERVICE,
            reason=f"confidence {triage.confidence:.2f} ≥ {thresholds.high:.2f}",
        )
    if triage.confidence >= thresholds.medium:
        return RouteDecision(
            route=Route.REVIEW,
            reason=f"confidence {triage.confidence:.2f} is below {thresholds.high:.2f}: a reviewer checks the draft",
        )
    return RouteDecision(
        route=Route.HUMAN,
        reason=f"confidence {triage.confidence:.2f} is below {thresholds.medium:.2f}: too unsure to draft",
    )
