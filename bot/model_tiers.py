"""Which Claude model each step calls: the one table of it, which the README shows.

The fast tier answers what is checked after it (a triage escalation goes through the routing
thresholds, a summary is shown next to its evidence); the main tier writes what people read as
written by the desk."""

from __future__ import annotations

from enum import StrEnum

from bot.settings import Settings


class Tier(StrEnum):
    FAST = "fast"  # ANTHROPIC_FAST_MODEL
    MAIN = "main"  # ANTHROPIC_MODEL


# Keyed by the step each call records in llm_usage.
MODEL_TIERS: dict[str, Tier] = {
    "triage": Tier.FAST,  # only the cases the local model is unsure of escalate to Claude
    "incident_summary": Tier.FAST,
    "draft": Tier.MAIN,  # the reply a customer reads
    "kb_article": Tier.MAIN,  # an article customers read once published
}


def model_for(settings: Settings, step: str) -> str:
    return settings.anthropic_fast_model if MODEL_TIERS[step] is Tier.FAST else settings.anthropic_model
