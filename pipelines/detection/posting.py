"""An alert in Slack: its message posted once, then edited in place until it shows the alert's
latest revision, with a reminder in its thread when asked; and the alerts still open, for App Home.

The alert row is locked and the message written in one transaction, committed only after Slack
answered: a failed post or edit leaves nothing behind and the job is retried, and a second job for
the same revision (a duplicate, a retry after the commit) finds nothing left to show. A process
that dies between Slack's answer and the commit posts once more on the retry: for an alert, once
too often beats never."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from db import alerts as alerts_db
from db import incident_alerts as incident_db
from db import jobs
from db.connection import Connection
from db.pool import transaction
from pipelines.jobs import AlertJob, JobName

AlertFacts = incident_db.AlertFacts
AlertCase = incident_db.AlertCase
Affected = incident_db.Affected
OpenAlert = incident_db.OpenAlert

CRITICAL_CASE = "critical_case"
EXAMPLE_CASES = 5
NAMES_SHOWN = 5


@dataclass(frozen=True)
class AlertView:
    """What an alert's message shows: the alert, a few of its cases, the customers it touches."""

    facts: AlertFacts
    cases: list[AlertCase]
    affected: Affected


class Messenger(Protocol):
    """Slack, as the post step needs it (bot/services/incidents.py)."""

    async def post(self, alert: AlertView) -> tuple[str, str]:
        """Post the alert's message; returns where it landed (channel, ts)."""
        ...

    async def update(self, alert: AlertView, channel: str, ts: str) -> bool:
        """Edit the message in place; False if it is gone (deleted), so a new one must be posted."""
        ...

    async def refresh_critical_case(self, case_id: UUID) -> None:
        """A critical case's alert is the urgent-alert path's message: refresh it as that path does."""
        ...

    async def remind(self, alert: AlertView, channel: str, ts: str) -> None:
        """Post a reminder in the message's thread."""
        ...


class Outcome(StrEnum):
    POSTED = "posted"
    EDITED = "edited"
    UP_TO_DATE = "up_to_date"  # the message already shows this revision: nothing was sent
    NOT_YET = "not_yet"  # a critical case's alert its own job has not posted yet
    MISSING = "missing"  # no such alert


@dataclass(frozen=True)
class Posted:
    outcome: Outcome
    reminded: bool = False


async def bring_up_to_date(pool: asyncpg.Pool, alert_id: UUID, slack: Messenger, *, remind: bool = False) -> Posted:
    """Post the alert's message, or edit it if it shows an older revision; with `remind`, and the
    alert still open and unacknowledged, also remind its thread."""
    critical_case: UUID | None = None
    async with transaction(pool) as conn:
        facts = await incident_db.alert(conn, alert_id, lock=True)
        if facts is None:
            return Posted(Outcome.MISSING)
        if facts.kind == CRITICAL_CASE and facts.ts is None:
            return Posted(Outcome.NOT_YET)  # the urgent-alert job posts it, with its Take button
        view = await _view(conn, facts)
        channel, ts = facts.channel, facts.ts
        if channel is None or ts is None:
            channel, ts = await slack.post(view)
            await alerts_db.save_alert_message(conn, alert_id, channel, ts)
            outcome = Outcome.POSTED
        elif facts.posted_revision < facts.revision:
            if facts.kind == CRITICAL_CASE:
                critical_case = critical_case_id(facts.fingerprint)
            elif not await slack.update(view, channel, ts):
                channel, ts = await slack.post(view)
                await alerts_db.save_alert_message(conn, alert_id, channel, ts)
            outcome = Outcome.EDITED
        else:
            outcome = Outcome.UP_TO_DATE
        if outcome is not Outcome.UP_TO_DATE:
            await incident_db.save_posted(conn, alert_id, facts.revision)
        reminded = remind and facts.status == "open"
        if reminded:
            await slack.remind(view, channel, ts)
            await incident_db.save_reminded(conn, alert_id)
    if critical_case is not None:
        # After the commit: the urgent path reads on a connection of its own, and this job must not
        # hold one while it waits for another. That path is best effort, so its revision counts as shown.
        await slack.refresh_critical_case(critical_case)
    return Posted(outcome, reminded)


async def queue_post(conn: Connection, alert_id: UUID) -> None:
    """Queue the alert's post job on the caller's transaction (one queued per alert at a time)."""
    await jobs.enqueue(conn, JobName.ALERT_POST, AlertJob(alert_id=alert_id).payload(),
                       dedupe_key=f"{JobName.ALERT_POST}:{alert_id}")


async def open_alerts(pool: asyncpg.Pool, limit: int) -> tuple[list[OpenAlert], int]:
    """The alerts not yet resolved, the ones nobody acknowledged and the worst first, and how many."""
    async with pool.acquire() as conn:
        return await incident_db.open_alerts(conn, limit)


async def open_alert_counts(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    async with pool.acquire() as conn:
        return await incident_db.open_alert_counts(conn)


def critical_case_id(fingerprint: str) -> UUID | None:
    kind, _, rest = fingerprint.partition(":")
    try:
        return UUID(rest) if kind == CRITICAL_CASE else None
    except ValueError:
        return None


def signal_figures(signal: Mapping[str, Any]) -> str:
    """What fired, in words and numbers, as plain text: "billing / refund: 14 cases against 1.2
    expected (z 8.3), over the last 60 min", "api_error_rate on api-gateway: 7.2% against a threshold
    of 5%". Keys the signal lacks (or holds as null) are left out. The subject may be customer-derived."""
    subject = " / ".join(str(signal[k]) for k in ("category", "subcategory") if signal.get(k))
    if not subject and signal.get("kind") == "cluster" and signal.get("title"):
        subject = str(signal["title"])  # what the similar cases are about
    if signal.get("metric"):
        subject = str(signal["metric"]) + (f" on {signal['service']}" if signal.get("service") else "")
    elif signal.get("error_code"):
        subject = str(signal["error_code"]) + (f" ({subject})" if subject else "")
    unit = str(signal.get("unit") or "")
    figures = []
    if _number(signal.get("value")) is not None:
        figure = _with_unit(signal["value"], unit)
        if _number(signal.get("threshold")) is not None:
            figure += f" against a threshold of {_with_unit(signal['threshold'], unit)}"
        figures.append(figure)
    if _number(signal.get("observed")) is not None:
        observed = _number(signal["observed"])
        figure = f"{_format(signal['observed'])} case{'' if observed == 1 else 's'}"
        if _number(signal.get("expected")) is not None:
            figure += f" against {_format(signal['expected'])} expected"
        if _number(signal.get("z")) is not None:
            figure += f" (z {_format(signal['z'])})"
        figures.append(figure)
    text = ", ".join(figures)
    window = _number(signal.get("window_minutes"))
    if window is not None and window > 0:
        text = ", ".join(filter(None, (text, f"over the last {window_text(int(window))}")))
    return f"{subject}: {text}" if subject and text else subject or text


def window_text(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


async def _view(conn: Connection, facts: AlertFacts) -> AlertView:
    return AlertView(facts, await incident_db.alert_cases(conn, facts.alert_id, EXAMPLE_CASES),
                     await incident_db.affected(conn, facts.alert_id, NAMES_SHOWN))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # NaN is no figure


def _format(value: object) -> str:
    number = _number(value)
    if number is None:
        return ""
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:,.2f}".rstrip("0").rstrip(".")


def _with_unit(value: object, unit: str) -> str:
    if not unit:
        return _format(value)
    return f"{_format(value)}{unit}" if unit == "%" else f"{_format(value)} {unit}"
