"""Block Kit pieces every view shares: text objects that refuse to exceed Slack's limits, links and
mentions that untrusted text cannot forge, dates, and the labels of case states."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from handlers import mrkdwn
from handlers.mrkdwn import escape, one_line, safe, truncate

SHORT_TEXT_MAX = 60  # our own labels (states, ids, keys), bounded all the same

STATE_LABELS = {
    "new": "New",
    "triaged": "Triaged",
    "drafting": "Drafting",
    "awaiting_review": "Awaiting review",
    "sending": "Sending",
    "replied": "Replied",
    "resolved": "Resolved",
    "closed": "Closed",
    "human_owned": "With a person",
    "escalated": "Escalated",
    "reopened": "Reopened",
}

# A user id goes into `<@…>` only if it looks like one, so even a corrupted column cannot inject markup.
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_UNSAFE_URL = re.compile(r"[\s|<>]")
_URL_MAX = 1000  # keeps a status line with a link inside one context element


def mrkdwn_text(text: str, limit: int) -> dict[str, Any]:
    # verbatim: no automatic linking of bare URLs, #channels or @mentions in the untrusted parts; our own
    # `<…>` sequences (links, user mentions, dates) are still rendered.
    if len(text) > limit:
        raise ValueError(f"mrkdwn text of {len(text)} characters exceeds Slack's {limit}")
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit) or "-", "emoji": True}


def header(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "header", "block_id": block_id, "text": plain(text, mrkdwn.HEADER_TEXT)}


def section(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": block_id, "text": mrkdwn_text(text, mrkdwn.SECTION_TEXT)}


def context(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "context", "block_id": block_id, "elements": [mrkdwn_text(text, mrkdwn.CONTEXT_ELEMENT_TEXT)]}


def link(url: str | None, escaped_label: str) -> str:
    """A link when the URL is plainly http(s) and cannot break out of `<url|label>`; else just the label."""
    if url and url.startswith(("https://", "http://")) and len(url) <= _URL_MAX and not _UNSAFE_URL.search(url):
        # mrkdwn has no escape for "|", and a second one inside `<url|label>` is parsed however Slack pleases.
        return f"<{escape(url)}|{escaped_label.replace('|', '¦')}>"
    return escaped_label


def is_user_id(user_id: str) -> bool:
    return _SLACK_USER_ID.fullmatch(user_id) is not None


def who(user_id: str | None, *, none: str) -> str:
    """A mention of a Slack user, `none` for nobody, and anything else shown as escaped text."""
    if user_id is None:
        return none
    return f"<@{user_id}>" if is_user_id(user_id) else safe(one_line(user_id), SHORT_TEXT_MAX)


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def slack_date(at: datetime) -> str:
    # Slack renders the token in each reader's time zone; the fallback after `|` is for clients that cannot.
    at = aware(at)
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at.isoformat(timespec='minutes')}>"


def state_label(state: str) -> str:
    return STATE_LABELS.get(state) or safe(one_line(state.replace("_", " ")).capitalize(), SHORT_TEXT_MAX) or "Unknown"
