"""Tracker over Jira (the `jira` package, REST API v2): files one escalation issue per case and one issue per
proactive alert. The client is synchronous (requests), so every call runs in a worker thread, never on the event
loop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import requests
from jira import JIRA, JIRAError

from pipelines.ports import AlertIssue, BugComment, BugReport, Escalation, IssueRef, TrackerError

# Jira Cloud's default priority scheme; a project with its own scheme answers 400, which is a setup error.
JIRA_PRIORITIES: dict[str, str] = {"urgent": "Highest", "high": "High", "medium": "Medium", "low": "Low"}
# Jira counts Java chars (UTF-16 code units), so an emoji costs two.
SUMMARY_LIMIT = 255
DESCRIPTION_LIMIT = 32_767
LABEL_LIMIT = 255
NOTE_LIMIT = 4_000
CASE_LABEL = "cx-case-{case_id}"
ALERT_LABEL = "cx-alert-{alert_id}"
BUG_ISSUE_TYPE = "Bug"
# A label goes into JQL between quotes; ours are made of these only.
SAFE_LABEL = re.compile(r"[A-Za-z0-9_-]{1,255}")
PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# `{noformat}` or `{noformat:title=…}` in any case would end our block early and let the rest render as markup.
NOFORMAT = re.compile(r"\{noformat(?::[^}]*)?\}", re.I)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_T = TypeVar("_T")
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class JiraTracker:
    def __init__(
        self,
        url: str,
        email: str,
        api_token: str,
        project_key: str,
        *,
        issue_type: str = "Task",
        timeout: float = 10.0,
    ) -> None:
        if not PROJECT_KEY.fullmatch(project_key):
            raise ValueError(f"not a Jira project key: {project_key!r}")  # it goes into JQL
        self._url = url.rstrip("/")
        self._auth = (email, api_token)
        self._project = project_key
        self._issue_type = issue_type
        self._timeout = timeout
        self._jira: JIRA | None = None
        # One escalation at a time: requests.Session is not thread-safe, and two concurrent escalations of one
        # case would both search, find nothing, and both create. Escalations come at human pace.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        async with self._lock:
            if self._jira is not None:
                jira, self._jira = self._jira, None
                await asyncio.to_thread(jira.close)

    async def escalate(self, escalation: Escalation) -> IssueRef:
        label = CASE_LABEL.format(case_id=escalation.case_id)
        async with self._lock:
            return await asyncio.to_thread(self._file, label, lambda: self._fields(escalation, label))

    async def file_alert(self, issue: AlertIssue) -> IssueRef:
        label = ALERT_LABEL.format(alert_id=issue.alert_id)
        async with self._lock:
            return await asyncio.to_thread(self._file, label, lambda: self._alert_fields(issue, label))

    async def find_by_label(self, label: str) -> IssueRef | None:
        label = _safe_label(label)
        async with self._lock:
            return await asyncio.to_thread(self._translated, lambda: self._find(label))

    async def file_bug(self, bug: BugReport) -> IssueRef:
        label = _safe_label(bug.label)
        async with self._lock:
            return await asyncio.to_thread(self._file, label, lambda: self._bug_fields(bug, label))

    async def comment(self, key: str, comment: BugComment) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self._translated, lambda: self._comment(key, comment))

    def _file(self, label: str, fields: Callable[[], dict[str, object]]) -> IssueRef:
        """The issue labelled `label`, created with `fields` unless it exists."""
        def find_or_create() -> IssueRef:
            # A retried job must not file a second issue. Jira has no idempotency key, so the label is it.
            # Jira Cloud's search index can lag a create by seconds, so a retry that comes sooner (after a
            # create whose answer was lost) can still miss the issue and file a second one.
            found = self._find(label)
            if found is not None:
                return found
            issue = self._client().create_issue(fields=fields(), prefetch=False)
            return IssueRef(issue.key, issue.permalink())

        return self._translated(find_or_create)

    def _find(self, label: str) -> IssueRef | None:
        found = self._client().search_issues(
            f'project = "{self._project}" AND labels = "{label}" ORDER BY created ASC',
            maxResults=1,
            fields=["summary"],
        )
        return IssueRef(found[0].key, found[0].permalink()) if found else None

    def _comment(self, key: str, comment: BugComment) -> bool:
        jira = self._client()
        # A retried job finds its comment by the marker, its last line, rather than adding it twice.
        if any(comment.marker in (c.body or "").splitlines() for c in jira.comments(key)):
            return False
        jira.add_comment(key, _sectioned("", comment.sections, tail=f"\n{comment.marker}"))
        return True

    def _translated(self, call: Callable[[], _T]) -> _T:
        """`call`'s result, with the client's failures as TrackerError."""
        try:
            return call()
        except JIRAError as exc:
            raise _jira_error(exc) from exc
        except TRANSIENT as exc:
            raise TrackerError(f"Jira could not be reached: {type(exc).__name__}", retryable=True) from exc
        except requests.RequestException as exc:
            raise TrackerError(f"Jira request failed: {exc}", retryable=False) from exc

    def _client(self) -> JIRA:
        # Built on first use, in the worker thread, because the constructor makes a request (serverInfo).
        if self._jira is None:
            self._jira = JIRA(
                server=self._url,
                basic_auth=self._auth,
                timeout=self._timeout,
                # serverInfo tells Cloud from Data Center; without it the library searches through
                # /rest/api/2/search, which Jira Cloud has retired in favour of /search/jql.
                get_server_info=True,
                # The library sleeps 20 s and more in this thread between retries, and retries a POST after a
                # connection error, which could file the issue twice. The job queue retries instead, and each
                # retry searches first.
                max_retries=0,
            )
        return self._jira

    def _fields(self, escalation: Escalation, label: str) -> dict[str, object]:
        return {
            "project": {"key": self._project},
            "issuetype": {"name": self._issue_type},
            "summary": _summary(escalation),
            "description": _description(escalation),
            "priority": {"name": JIRA_PRIORITIES[escalation.priority]},
            "labels": _labels(escalation.labels, label),
        }


    def _bug_fields(self, bug: BugReport, label: str) -> dict[str, object]:
        return {
            "project": {"key": self._project},
            "issuetype": {"name": BUG_ISSUE_TYPE},
            "summary": _fit(_one_line(bug.summary) or "Recurring defect reported by customers", SUMMARY_LIMIT),
            "description": _sectioned("Found by CX-Catalyst: similar customer cases about one defect.\n",
                                      bug.sections),
            "labels": [label],
        }

    def _alert_fields(self, issue: AlertIssue, label: str) -> dict[str, object]:
        return {
            "project": {"key": self._project},
            "issuetype": {"name": self._issue_type},
            "summary": _fit(_one_line(issue.summary) or f"CX alert {issue.alert_id}", SUMMARY_LIMIT),
            "description": _alert_description(issue),
            "priority": {"name": JIRA_PRIORITIES[issue.priority]},
            "labels": _labels(issue.labels, label),
        }


def _one_line(text: str) -> str:
    return " ".join(CONTROL.sub("", text).split())


def _summary(escalation: Escalation) -> str:
    one_line = " ".join(CONTROL.sub("", escalation.summary).split())
    return _fit(one_line or f"Escalated CX case {escalation.short_id}", SUMMARY_LIMIT)


def _labels(labels: tuple[str, ...], case_label: str) -> list[str]:
    # Jira refuses a label with a space in it.
    cleaned = (_fit("-".join(label.split()), LABEL_LIMIT, marker="") for label in (*labels, case_label))
    return list(dict.fromkeys(label for label in cleaned if label))


def _description(escalation: Escalation) -> str:
    head = f"Escalated from CX case {escalation.short_id} ({escalation.case_id}).\n\n"
    if escalation.reporter_note and escalation.reporter_note.strip():
        head += "*Note from the support team*\n" + _noformat(escalation.reporter_note, NOTE_LIMIT) + "\n\n"
    head += "*Customer message*\n"
    budget = DESCRIPTION_LIMIT - _units(head) - _units(_noformat(""))
    return head + _noformat(escalation.description, budget)


def _alert_description(issue: AlertIssue) -> str:
    return _sectioned(f"Raised by CX-Catalyst's proactive detection: alert {issue.alert_id}.\n", issue.sections)


def _sectioned(head: str, sections: tuple[tuple[str, str], ...], tail: str = "") -> str:
    """`head`, then each section under its heading, its text in a {noformat} block, then `tail`; the
    sections share what the limit leaves, a short one handing its unused share on to the ones after it."""
    headings = [f"\n*{_one_line(heading) or 'Details'}*\n" for heading, _ in sections]
    overhead = _units(head) + _units(tail) + sum(_units(h) + _units(_noformat("")) + 1 for h in headings)
    budget = DESCRIPTION_LIMIT - overhead
    parts = [head]
    for i, (heading, (_, text)) in enumerate(zip(headings, sections)):
        block = _noformat(text, max(0, budget // (len(headings) - i)))
        budget -= _units(block) - _units(_noformat(""))
        parts.append(heading + block + "\n")
    return ("".join(parts).rstrip("\n") + tail).lstrip("\n")


def _noformat(text: str, limit: int | None = None) -> str:
    """`text` as a {noformat} block: shown verbatim, so customer text cannot format, link or break the issue."""
    text = CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    while (stripped := NOFORMAT.sub("", text)) != text:  # "{no{noformat}format}" strips to a new token
        text = stripped
    if limit is not None:
        text = _fit(text, limit, marker="\n[… truncated]")
    return "{noformat}\n" + text.strip("\n") + "\n{noformat}"


def _safe_label(label: str) -> str:
    if not SAFE_LABEL.fullmatch(label):
        raise ValueError(f"not a label we file: {label!r}")  # it goes into JQL
    return label


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to `limit` UTF-16 code units, never inside a surrogate pair, with `marker` where it was cut."""
    if _units(text) <= limit:
        return text
    budget, used = limit - _units(marker), 0
    for end, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return text[:end].rstrip() + marker
    return text


def _jira_error(exc: JIRAError) -> TrackerError:
    # exc.text is Jira's own errorMessages/errors; str(exc) would add response headers and bodies.
    status = exc.status_code
    detail = (exc.text or "").strip() or "no error text"
    if status == 401:
        return TrackerError(f"Jira refused the credentials (401): check the email and API token ({detail})", False, 401)
    retryable = status is not None and (status == 429 or status >= 500)
    return TrackerError(f"Jira answered {status}: {detail}", retryable, status)
