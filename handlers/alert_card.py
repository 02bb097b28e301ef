"""Pure Block Kit builders for a proactive alert in the alerts channel: what fired with its figures,
the summary and the AI's hypothesis, example cases, the customers it touches, where it stands, and
Acknowledge / Create Jira / Resolve. Facts in, Slack JSON out; every text that came from customers,
the detectors' labels or the AI is escaped and cut to Slack's limits."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import escape, one_line, safe


class AlertButton(StrEnum):
    """action_ids of the alert's buttons; the listeners match on these."""

    ACKNOWLEDGE = "alert_acknowledge"
    CREATE_JIRA = "alert_create_jira"
    RESOLVE = "alert_resolve"


ACTIONS_BLOCK_ID = "incident_actions"
CASES_SHOWN = 5
NAMES_SHOWN = 5
SIGNALS_SHOWN = 10

SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "warning": ":large_yellow_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":white_circle:",
}
KIND_LABELS = {
    "metric": "Health metric",
    "volume": "Volume spike",
    "cluster": "Cluster of similar cases",
    "error_code": "Error code",
    "critical_case": "Critical case",
    "incident": "Incident",
    "budget": "Budget",
}
_DONE_WORDS = {
    "acknowledged": "acknowledged this alert",
    "resolved": "resolved this alert",
    "filed_jira": "created a Jira issue for this alert",
    "filing_jira": "is creating a Jira issue for this alert",
}

_TITLE_MAX = 500
_SUMMARY_MAX = 1500
_HYPOTHESIS_MAX = 1000
_ACTION_MAX = 200
_ACTIONS_SHOWN = 5
_FIGURES_MAX = 400
_SUBJECT_MAX = 150
_NAME_MAX = 80
_MORE_LINE_MAX = 40
_REFUSED_MAX = 500
_SLACK_GROUP_ID = re.compile(r"S[A-Z0-9]{2,30}")


@dataclass(frozen=True, slots=True)
class AlertSignal:
    """One signal that fired: its kind and, in words and numbers, its figures. Both untrusted."""

    kind: str
    figures: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class ExampleCase:
    short_id: int
    subject: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertCard:
    """Everything an alert's message shows. Text fields are untrusted."""

    alert_id: UUID
    kind: str
    severity: str
    status: str  # open | acknowledged | resolved
    title: str
    first_seen_at: datetime
    last_seen_at: datetime
    summary: str | None = None
    summary_by_ai: bool = False
    hypothesis: str | None = None  # the AI's guess at the root cause
    recommended: tuple[str, ...] = ()  # the AI's suggested next steps
    signals: tuple[AlertSignal, ...] = ()
    cases: tuple[ExampleCase, ...] = ()
    case_count: int = 0
    customer_count: int = 0
    tiers: tuple[tuple[str, int], ...] = ()  # (tier, customers)
    customers: tuple[tuple[str, str], ...] = ()  # (name, tier), a few
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None  # "auto" when the signal went quiet
    resolved_at: datetime | None = None
    quiet_minutes: int | None = None  # how long a signal must be quiet to resolve on its own
    jira_key: str | None = None
    jira_url: str | None = None
    jira_pending: bool = False  # someone is creating the issue


def alert_blocks(card: AlertCard) -> list[dict[str, Any]]:
    """The alert's message: how bad and what, why it fired, what it looks like, where it stands."""
    blocks: list[dict[str, Any]] = [
        kit.header("incident_header", _header_text(card)),
        kit.section("incident_title", f"*{safe(one_line(card.title), _TITLE_MAX) or '_(untitled)_'}*"),
        {"type": "section", "block_id": "incident_facts",
         "fields": [kit.mrkdwn_text(f"*{name}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for name, value in _facts(card)]},
    ]
    if card.signals:
        blocks.append(kit.section("incident_signals", _signals_text(card.signals)))
    about = "*Summary*" + (" _(written by AI)_" if card.summary_by_ai else "")
    blocks.append(kit.section("incident_summary", f"{about}\n{safe(card.summary or '', _SUMMARY_MAX) or '_(no summary)_'}"))
    if card.hypothesis and card.hypothesis.strip():
        blocks.append(kit.section("incident_hypothesis", "*Root-cause hypothesis* _(AI, unverified)_\n"
                                  + safe(card.hypothesis, _HYPOTHESIS_MAX)))
    if card.recommended:
        steps = [f"• {safe(one_line(step), _ACTION_MAX)}" for step in card.recommended[:_ACTIONS_SHOWN] if step.strip()]
        if steps:
            blocks.append(kit.section("incident_next", "*Suggested next steps* _(AI)_\n" + "\n".join(steps)))
    if card.cases:
        blocks.append(kit.section("incident_cases", _cases_text(card)))
    if card.customer_count:
        blocks.append(kit.section("incident_customers", _customers_text(card)))
    blocks.append(kit.context("incident_status", _status_text(card)))
    buttons = _buttons(card)
    if buttons:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": buttons})
    return blocks


def alert_text(card: AlertCard) -> str:
    """The notification line: kept short, as notifications show one line."""
    state = "" if card.status == "open" else f" ({one_line(card.status)})"
    return safe(f"{_severity_word(card.severity)} alert{state}: {one_line(card.title) or 'untitled'}", 150)


def alert_reminder_text(card: AlertCard, reviewer_group: str | None) -> str:
    """The reminder in the alert's thread: it is still open and nobody has acknowledged it."""
    who = f"<!subteam^{reviewer_group}>" if reviewer_group and _SLACK_GROUP_ID.fullmatch(reviewer_group) else "Reviewers"
    title = safe(one_line(card.title), _SUBJECT_MAX) or "untitled"
    return (f"{who}, this {escape(card.severity)} alert has been open since {kit.slack_date(card.first_seen_at)} "
            f"and nobody has acknowledged it: *{title}*. Acknowledge it if someone is on it, or resolve it if it is over.")


def alert_refusal_text(user_id: str) -> str:
    """Ephemeral answer to someone outside the reviewer group who pressed an alert button."""
    who = f"<@{user_id}>, only" if kit.is_user_id(user_id) else "Only"
    return f"{who} reviewers can act on alerts. Ask a CX admin to add you to the reviewer group."


def alert_lost_race_text(winner: str | None, did: str, *, at: datetime | None = None,
                         issue_key: str | None = None) -> str:
    """Ephemeral answer to the second of two reviewers who acted on one alert at the same moment."""
    if winner == "auto":
        who = "The desk"
        did_text = "resolved this alert on its own (its signal went quiet)"
    else:
        who = f"<@{winner}>" if winner and kit.is_user_id(winner) else "Someone else"
        did_text = _DONE_WORDS.get(did) or safe(one_line(did), kit.SHORT_TEXT_MAX)
    when = f" at {kit.slack_date(at)}" if at else ""
    key = f" ({safe(one_line(issue_key), kit.SHORT_TEXT_MAX)})" if issue_key else ""
    return f"{who} already {did_text}{key}{when}, so your action was not applied. The alert shows where it stands now."


def alert_refused_text(reason: str) -> str:
    """Ephemeral answer when an outside service (Jira) would not do what the click asked."""
    return f":warning: {safe(one_line(reason), _REFUSED_MAX)}"


def _severity_word(severity: str) -> str:
    # Our words only (they go into plain text too): the database allows no other severities or kinds.
    return severity.capitalize() if severity in SEVERITY_EMOJI else "Unrated"


def _kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, "Alert")


def _header_text(card: AlertCard) -> str:
    # Only our own words: the title, which may quote customers, goes in an escaped section below.
    emoji = SEVERITY_EMOJI.get(card.severity, ":white_circle:")
    return f"{emoji} {_severity_word(card.severity)} alert · {_kind_label(card.kind)}"


def _facts(card: AlertCard) -> list[tuple[str, str]]:
    facts = [
        ("Status", escape(one_line(card.status).capitalize() or "Unknown")),
        ("First seen", kit.slack_date(card.first_seen_at)),
        ("Last seen", kit.slack_date(card.last_seen_at)),
    ]
    if card.case_count:
        facts.append(("Cases", f"{card.case_count:,}"))
    return facts


def _signals_text(signals: Sequence[AlertSignal]) -> str:
    return _lines("*What fired*", [
        f"• *{escape(_kind_label(s.kind))}* {safe(one_line(s.figures or s.title or ''), _FIGURES_MAX) or '_(no figures)_'}"
        for s in signals
    ], SIGNALS_SHOWN)


def _cases_text(card: AlertCard) -> str:
    lines = [
        f"• *CX-{case.short_id}* {safe(one_line(case.subject or ''), _SUBJECT_MAX) or '_(no subject)_'}"
        for case in card.cases[:CASES_SHOWN]
    ]
    text = _lines(f"*Example cases* ({card.case_count} in all)" if card.case_count > len(lines) else "*Cases*",
                  lines, CASES_SHOWN)
    return text + f"\n_Details: `/case CX-{card.cases[0].short_id}`_"


def _customers_text(card: AlertCard) -> str:
    count = f"{card.customer_count} customer{'' if card.customer_count == 1 else 's'} affected"
    tiers = ", ".join(f"{n} {safe(one_line(tier), kit.SHORT_TEXT_MAX)}" for tier, n in card.tiers)
    names = ", ".join(f"{safe(one_line(name), _NAME_MAX) or 'unnamed'} ({safe(one_line(tier), kit.SHORT_TEXT_MAX)})"
                      for name, tier in card.customers[:NAMES_SHOWN])
    more = card.customer_count - min(len(card.customers), NAMES_SHOWN)
    if names and more > 0:
        names += f" and {more} more"
    return f"*{count}*" + (f" · {tiers}" if tiers else "") + (f"\n{names}" if names else "")


def _status_text(card: AlertCard) -> str:
    if card.status == "resolved":
        if card.resolved_by == "auto":
            quiet = f": quiet for {card.quiet_minutes} min" if card.quiet_minutes else ""
            status = f":white_check_mark: Resolved automatically{quiet}"
        else:
            status = f":white_check_mark: Resolved by {kit.who(card.resolved_by, none='someone')}"
        if card.resolved_at:
            status += f" {kit.slack_date(card.resolved_at)}"
    elif card.status == "acknowledged":
        status = f":eyes: Acknowledged by {kit.who(card.acknowledged_by, none='someone')}"
        if card.acknowledged_at:
            status += f" {kit.slack_date(card.acknowledged_at)}"
    else:
        status = ":rotating_light: Open: nobody has acknowledged it yet"
    if card.jira_key:
        status += f" · Jira {kit.link(card.jira_url, safe(one_line(card.jira_key), kit.SHORT_TEXT_MAX))}"
    elif card.jira_pending:
        status += " · Jira issue being created"
    return status


def alert_ref(alert_id: UUID) -> str:
    """A button's value: the alert's id and nothing else, as JSON like the review card's."""
    return json.dumps({"alert_id": str(alert_id)}, separators=(",", ":"))


def alert_id_of(value: str) -> UUID:
    """The alert a button's value names; ValueError if it names none."""
    try:
        return UUID(str(json.loads(value)["alert_id"]))
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an alert button's value: {value[:100]!r}") from exc


def _buttons(card: AlertCard) -> list[dict[str, Any]]:
    value = alert_ref(card.alert_id)
    buttons = []
    if card.status == "open":
        buttons.append(_button("Acknowledge", AlertButton.ACKNOWLEDGE, value, style="primary"))
    if card.jira_key is None:
        buttons.append(_button("Create Jira", AlertButton.CREATE_JIRA, value))
    if card.status != "resolved":
        buttons.append(_button("Resolve", AlertButton.RESOLVE, value, style="danger"))
    return buttons


def _button(text: str, action: AlertButton, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action.value,
                              "text": kit.plain(text, mrkdwn.BUTTON_TEXT), "value": value}
    if style:
        button["style"] = style
    return button


def _lines(head: str, lines: list[str], shown: int) -> str:
    """head and as many whole lines as fit in one section (at most `shown`), then how many were left out."""
    kept, size = [head], len(head)
    for line in lines:
        if len(kept) > shown or size + 1 + len(line) > mrkdwn.SECTION_TEXT - _MORE_LINE_MAX:
            break
        kept.append(line)
        size += 1 + len(line)
    left_out = len(lines) - (len(kept) - 1)
    if left_out:
        kept.append(f"_…and {left_out} more_")
    return "\n".join(kept)
