"""What `/case` and `/kb` text asks for, read as the person typed it: Slack's markup undone, and a
case query told apart from help, a flag or a mistyped id. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from pipelines.models import SHORT_ID_MAX

# Longer text is cut before it is searched: a search is for a question, not a pasted email thread.
QUERY_MAX = 1000
HELP_WORDS = frozenset({"help", "?", "-h", "--help"})
# Slack sends links, mentions and emails in command text as <target|label> and escapes & < > as
# entities; a query is read as the person typed it.
_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_SHORT_ID = re.compile(r"(?:cx-?|#)?(\d{1,19})", re.I)
_LOOKS_LIKE_SHORT_ID = re.compile(r"cx(?:-|\d)\S*", re.I)
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
WORD = re.compile(r"\w")


class QueryKind(StrEnum):
    MINE = "mine"  # no argument: my cases and the queue
    ID = "id"
    SHORT_ID = "short_id"
    EMAIL = "email"
    WORDS = "words"


@dataclass(frozen=True, slots=True)
class CaseQuery:
    kind: QueryKind
    value: str = ""  # the UUID, the short id's digits, the lower-cased email, or the words
    typed: str = ""  # as the person typed it, to echo back (untrusted)


def plain_text(text: str) -> str:
    """Command text as typed: Slack's <target|label> markup replaced by its label, entities decoded."""
    text = _SLACK_MARKUP.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def parse_case_query(text: str) -> CaseQuery | None:
    """What `/case <text>` asks for; None when it is not a query (help, a flag, a malformed id)."""
    typed = plain_text(text)
    if not typed:
        return CaseQuery(QueryKind.MINE)
    if typed.lower() in HELP_WORDS or typed.startswith("-"):
        return None
    if _UUID.fullmatch(typed):
        return CaseQuery(QueryKind.ID, str(UUID(typed)), typed)
    short = _SHORT_ID.fullmatch(typed)
    # A number no short id can be (0, or past a bigint) is searched for as text: a card or payment reference.
    if short and 0 < int(short.group(1)) <= SHORT_ID_MAX:
        return CaseQuery(QueryKind.SHORT_ID, str(int(short.group(1))), typed)
    if _LOOKS_LIKE_SHORT_ID.fullmatch(typed):
        return None  # "CX-", "CX-12a": a short id mistyped, not words to search for
    if _EMAIL.fullmatch(typed):
        return CaseQuery(QueryKind.EMAIL, typed.lower(), typed)
    if not WORD.search(typed):
        return None
    return CaseQuery(QueryKind.WORDS, typed[:QUERY_MAX], typed)
