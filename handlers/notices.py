"""Pure builders for what the desk posts on its own: a critical case's alert in the alerts channel,
and the review SLA's reminder (in the card's thread) and timeout (in the alerts channel). Facts in,
Slack JSON out; every text that came from a customer or the AI is escaped and cut to Slack's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import one_line, safe
from handlers.review_card import CardButton, CardRef

SUBJECT_MAX = 200
_SUMMARY_MAX = 1500
_REASON_MAX = 500
_CUSTOMER_MAX = 300
_SLACK_ID = re.compile(r"[A-Z0-9]{2,30}")
_SLACK_TS = re.compile(r"\d{1,12}\.\d{1,9}")
_WORKSPACE_URL = re.compile(r"https://[A-Za-z0-9.-]+/?")

ALERT_ACTIONS_BLOCK_ID = "alert_actions"


@dataclass(frozen=True, slots=True, kw_only=True)
class UrgentCase:
    """A case triage sent straight to a person (critical, or an unhappy VIP). Text fields are untrusted."""

    case_id: UUID
    short_id: int
    priority: str | None
    reason: str  # why it is urgent: the route's reason
    customer_email: str
    customer_name: str | None = None
    tier: str | None = None
    category: str | None = None
    subcategory: str | None = None
    subject: str | None = None
    summary: str | None = None
    owner: str | None = None  # Slack user id once someone took it
    card_url: str | None = None  # the case's review card, when it is posted


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaCase:
    """A review at an SLA mark. Text fields are untrusted."""

    short_id: int
    priority: str | None
    subject: str | None
    owner: str | None
    due_at: datetime


def urgent_alert_blocks(case: UrgentCase) -> list[dict[str, Any]]:
    """The alert: who, how bad, why now, what it is about, and a button to take the case."""
    label = " / ".join(one_line(x) for x in (case.category, case.subcategory) if x)
    header = f":rotating_light: Urgent: CX-{case.short_id} · {one_line(case.priority or 'no priority')}"
    customer = safe(one_line(case.customer_name or ""), _CUSTOMER_MAX // 2)
    email = safe(one_line(case.customer_email), _CUSTOMER_MAX // 2)
    facts = [
        ("Customer", f"{customer} ({email})" if customer else email),
        ("Tier", safe(one_line(case.tier or ""), kit.SHORT_TEXT_MAX) or "n/a"),
        ("Category", safe(label, kit.SHORT_TEXT_MAX) or "not triaged"),
        ("Owner", kit.who(case.owner, none="nobody yet")),
    ]
    about = case.summary or case.subject or ""
    blocks: list[dict[str, Any]] = [
        kit.header("alert_header", header),
        {"type": "section", "block_id": "alert_facts",
         "fields": [kit.mrkdwn_text(f"*{name}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for name, value in facts]},
        kit.section("alert_reason", f"*Why it is urgent*\n{safe(case.reason, _REASON_MAX) or '_(no reason given)_'}"),
        kit.section("alert_summary", f"*Summary*\n{safe(about, _SUMMARY_MAX) or '_(no summary)_'}"),
    ]
    status = "Taken by " + kit.who(case.owner, none="") if case.owner else "Nobody has taken it yet."
    if case.card_url:
        status += " · " + kit.link(case.card_url, "Open the review card")
    blocks.append(kit.context("alert_status", status))
    if case.owner is None:
        ref = CardRef(case.case_id, None, None).to_value()
        blocks.append({"type": "actions", "block_id": ALERT_ACTIONS_BLOCK_ID, "elements": [{
            "type": "button", "action_id": CardButton.TAKE.value, "style": "primary",
            "text": kit.plain("Take it", mrkdwn.BUTTON_TEXT), "value": ref,
        }]})
    return blocks


def urgent_alert_text(case: UrgentCase) -> str:
    """The notification line: kept short, as notifications show one line."""
    about = one_line(case.summary or case.subject or "") or "critical case"
    return safe(f"Urgent case CX-{case.short_id}: {about}", 150)


def reminder_text(case: SlaCase, reviewer_group: str | None) -> str:
    if case.owner and _SLACK_ID.fullmatch(case.owner):
        who = f"<@{case.owner}>"  # someone took the case: the reminder is theirs
    elif reviewer_group and _SLACK_ID.fullmatch(reviewer_group):
        who = f"<!subteam^{reviewer_group}>"
    else:
        who = "Reviewers"
    return (f"{who}, {_case_line(case)} is still waiting for review. It is due {_when(case.due_at)}; "
            "if it is not decided by then it is escalated to the alerts channel.")


def timeout_text(case: SlaCase, link: str, timeout_hours: float) -> str:
    taken = f" It was taken by <@{case.owner}>." if case.owner and _SLACK_ID.fullmatch(case.owner) else ""
    return (f":alarm_clock: Review overdue: {_case_line(case)} was due {_when(case.due_at)} "
            f"(review timeout {timeout_hours:g} h) and is not decided.{taken} {link}")


def message_url(workspace_url: str | None, channel: str, ts: str) -> str | None:
    """A message's permalink from the workspace's URL (auth.test), when both parts look like Slack's."""
    if not (_SLACK_ID.fullmatch(channel) and _SLACK_TS.fullmatch(ts)):
        return None
    if workspace_url and _WORKSPACE_URL.fullmatch(workspace_url):
        return f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
    return None


def card_link(workspace_url: str | None, channel: str, ts: str) -> str:
    """A link to the card: its permalink when the workspace URL is known, else Slack's redirect to
    the channel. Both parts come from Slack, but are checked before they go inside `<…>`."""
    if not (_SLACK_ID.fullmatch(channel) and _SLACK_TS.fullmatch(ts)):
        return "(the card's message could not be linked)"
    url = message_url(workspace_url, channel, ts)
    if url:
        return f"<{url}|Open the card>"
    return f"<https://slack.com/app_redirect?channel={channel}|Open the review channel>"


def notice_blocks(text: str) -> list[dict[str, Any]]:
    # verbatim: no automatic linking of bare @mentions or #channels in the customer's subject.
    return [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn.truncate(text, mrkdwn.SECTION_TEXT),
                                         "verbatim": True}}]


def _case_line(case: SlaCase) -> str:
    subject = safe(one_line(case.subject or ""), SUBJECT_MAX) or "(no subject)"
    priority = safe(one_line(case.priority or "medium"), 20)
    return f"*CX-{case.short_id}* ({priority}) “{subject}”"


def _when(due_at: datetime) -> str:
    # Each reader sees their own time zone; the fallback (notifications, old clients) is UTC.
    fallback = due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(due_at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"
