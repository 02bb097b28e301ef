"""The App Home tab, built from numbers the wiring reads: the review queue and its oldest case, the
viewer's own open cases, and today's counts. Pure: facts in, a Home view out. Subjects are untrusted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import one_line, safe

MY_CASES_SHOWN = 10
_SUBJECT_MAX = 200
ALERTS_SHOWN = 10
_ALERT_TITLE_MAX = 200
_SEVERITY_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "warning": ":large_yellow_circle:"}


@dataclass(frozen=True, slots=True)
class WaitingCase:
    short_id: int
    subject: str | None
    waiting_since: datetime


@dataclass(frozen=True, slots=True)
class MyCase:
    short_id: int
    state: str
    subject: str | None


@dataclass(frozen=True, slots=True)
class TodayCounts:
    created: int
    replied: int
    auto_sent: int
    sent_to_review: int
    escalated: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAlert:
    """An alert not yet resolved. The title is untrusted."""

    severity: str
    title: str
    status: str  # open | acknowledged
    since: datetime
    acknowledged_by: str | None = None
    url: str | None = None  # its message in the alerts channel, once posted


@dataclass(frozen=True, slots=True)
class HomeBudget:
    """An AI budget at or past its warning share in its current period."""

    name: str
    period: str  # daily | monthly
    used_ratio: float
    exhausted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeFacts:
    queue_size: int
    oldest: WaitingCase | None
    my_cases: tuple[MyCase, ...]
    my_total: int  # may exceed len(my_cases): only the first few are listed
    today: TodayCounts
    as_of: datetime
    alerts: tuple[HomeAlert, ...] = ()
    alerts_total: int = 0  # may exceed len(alerts): only the first few are listed
    budgets: tuple[HomeBudget, ...] = ()  # only those near or past their limit


def home_view(facts: HomeFacts) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        kit.header("home_header_queue", "Review queue"),
        kit.section("home_queue", _queue_text(facts)),
        {"type": "divider", "block_id": "home_divider_alerts"},
        kit.header("home_header_alerts", "Open alerts"),
        *_alert_blocks(facts),
        {"type": "divider", "block_id": "home_divider_mine"},
        kit.header("home_header_mine", "Your open cases"),
        *_my_case_blocks(facts),
        {"type": "divider", "block_id": "home_divider_today"},
        kit.header("home_header_today", "Today"),
        {"type": "section", "block_id": "home_today", "fields": _today_fields(facts.today)},
        *([kit.section("home_budgets", _budgets_text(facts.budgets))] if facts.budgets else []),
        kit.context("home_as_of", f"Updated {kit.slack_date(facts.as_of)}"),
    ]
    if len(blocks) > mrkdwn.BLOCKS_PER_VIEW:
        raise ValueError(f"a Home view of {len(blocks)} blocks exceeds Slack's {mrkdwn.BLOCKS_PER_VIEW}")
    return {"type": "home", "callback_id": "cx_home", "blocks": blocks}


def _budgets_text(budgets: tuple[HomeBudget, ...]) -> str:
    lines = []
    for b in budgets:
        name = safe(one_line(b.name), _ALERT_TITLE_MAX)
        if b.exhausted:
            lines.append(f":rotating_light: AI budget *{name}* ({b.period}) is reached: running degraded, "
                         "every case goes to review until the next period")
        else:
            lines.append(f":warning: AI budget *{name}* ({b.period}) is at {b.used_ratio:.0%}")
    return "\n".join(lines)


def age_text(since: datetime, now: datetime) -> str:
    """How long ago, to the minute for the first hour and coarser after: "5 min", "2 h 10 min", "3 d 4 h"."""
    minutes = max(0, int((kit.aware(now) - kit.aware(since)).total_seconds() // 60))
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _queue_text(facts: HomeFacts) -> str:
    if facts.queue_size == 0 or facts.oldest is None:
        return "*Nothing is waiting for review.*"
    waiting = "1 case is" if facts.queue_size == 1 else f"{facts.queue_size} cases are"
    oldest = facts.oldest
    return (f"*{waiting} waiting for review.*\n"
            f"Oldest: *CX-{oldest.short_id}*, waiting {age_text(oldest.waiting_since, facts.as_of)}\n"
            f"{_subject(oldest.subject)}")


def _my_case_blocks(facts: HomeFacts) -> list[dict[str, Any]]:
    if not facts.my_cases:
        return [kit.section("home_mine_none", "No open cases are assigned to you.")]
    shown = facts.my_cases[:MY_CASES_SHOWN]
    blocks = [
        kit.section(f"home_mine_{i}", f"*CX-{case.short_id}* · {kit.state_label(case.state)}\n{_subject(case.subject)}")
        for i, case in enumerate(shown)
    ]
    hidden = max(facts.my_total, len(facts.my_cases)) - len(shown)
    if hidden > 0:
        blocks.append(kit.context("home_mine_more", f"…and {hidden} more"))
    return blocks


def _alert_blocks(facts: HomeFacts) -> list[dict[str, Any]]:
    if not facts.alerts:
        return [kit.section("home_alerts_none", "No open alerts.")]
    shown = facts.alerts[:ALERTS_SHOWN]
    blocks = [kit.section(f"home_alert_{i}", _alert_line(alert, facts.as_of)) for i, alert in enumerate(shown)]
    hidden = max(facts.alerts_total, len(facts.alerts)) - len(shown)
    if hidden > 0:
        blocks.append(kit.context("home_alerts_more", f"…and {hidden} more in the alerts channel"))
    return blocks


def _alert_line(alert: HomeAlert, now: datetime) -> str:
    emoji = _SEVERITY_EMOJI.get(alert.severity, ":white_circle:")
    severity = safe(one_line(alert.severity).capitalize(), kit.SHORT_TEXT_MAX) or "Unknown"
    title = safe(one_line(alert.title), _ALERT_TITLE_MAX) or "_(untitled)_"
    if alert.status == "acknowledged":
        state = f"acknowledged by {kit.who(alert.acknowledged_by, none='someone')}"
    else:
        state = "*not acknowledged*"
    return f"{emoji} *{severity}* · {kit.link(alert.url, title)}\nopen {age_text(alert.since, now)} · {state}"


def _today_fields(today: TodayCounts) -> list[dict[str, Any]]:
    replied = f"{today.replied} ({today.auto_sent} auto-sent)" if today.auto_sent else str(today.replied)
    fields = [("Cases created", str(today.created)), ("Replied", replied),
              ("Sent to review", str(today.sent_to_review)), ("Escalated", str(today.escalated))]
    return [kit.mrkdwn_text(f"*{label}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for label, value in fields]


def _subject(subject: str | None) -> str:
    text = safe(one_line(subject or ""), _SUBJECT_MAX)
    return text or "_(no subject)_"
