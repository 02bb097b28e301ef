"""When a draft may go to the customer without a person (spec section 1, step 5). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyInput:
    triage_confidence: float
    draft_confidence: float
    category: str | None
    category_auto_send: bool
    tier: str
    valid_citations: int
    drafter: str
    risks: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()  # placeholders the case's redaction map cannot fill
    instructions: tuple[str, ...] = ()  # signs that the customer's text addresses the AI (drafting/injection.py)
    auto_replies_today: int = 0  # automatic replies to this customer in the last 24 hours


@dataclass(frozen=True)
class PolicyDecision:
    auto_send: bool
    reason: str


def decide(item: PolicyInput, *, high: float, always_review_tiers: frozenset[str],
           max_auto_replies: int | None = None) -> PolicyDecision:
    """Every rule must pass to send; the first that fails is the reason a reviewer sees.
    `max_auto_replies` per customer in 24 hours (None: no limit) stops two auto-responders answering
    each other, ours and one that does not mark its mail (RFC 3834); it is the last rule, so it is the
    reason only for a draft that would otherwise have gone out."""
    rules = (
        # First, so the reviewer sees it: a model that obeyed the customer could claim any confidence.
        (not item.instructions, "the customer's message reads like instructions to the AI ("
                                + ", ".join(item.instructions)[:300] + ")"),
        (not item.unresolved, "the draft holds a placeholder the case's values cannot fill: "
                              + ", ".join(item.unresolved)[:300]),
        (item.drafter != "extractive", "an extractive (offline) draft is always reviewed"),
        (item.triage_confidence >= high, f"triage confidence {item.triage_confidence:.2f} is below {high:.2f}"),
        (item.draft_confidence >= high, f"draft confidence {item.draft_confidence:.2f} is below {high:.2f}"),
        (item.category_auto_send, f"category {item.category or '-'} is not marked auto_send"),
        (item.tier.lower() not in always_review_tiers, f"{item.tier} customers are always reviewed"),
        (item.valid_citations > 0, "the draft cites no retrieved knowledge-base article"),
        (not item.risks, "the drafter flagged risks: " + "; ".join(item.risks)[:300]),
        (not item.questions, "the draft asks the customer for missing information"),
        (max_auto_replies is None or item.auto_replies_today < max_auto_replies,
         f"{item.auto_replies_today} automatic replies went to this customer in the last 24 hours, the limit "
         f"(AUTO_REPLIES_PER_CUSTOMER_PER_DAY={max_auto_replies}); a person decides whether to answer again"),
    )
    for ok, why in rules:
        if not ok:
            return PolicyDecision(False, why)
    return PolicyDecision(True, f"confident ({item.triage_confidence:.2f} / {item.draft_confidence:.2f}), "
                                f"{item.valid_citations} cited article(s), category {item.category} auto-sends")
