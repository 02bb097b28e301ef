"""`/case` and `/kb`, and the Share button of `/kb`'s results.

The answer is ephemeral and, when it is ready in time, travels in the ack itself: one message, no
"working on it" flicker. A lookup is one or two indexed queries and a KB search about 10 ms, but a
search that must first embed the query calls the embedding provider; so the work gets
ACK_BUDGET_SECONDS, and past that the command is acknowledged with a short note and the answer
follows through the response_url. Either way the ack leaves well within Slack's three seconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.case_views import (
    KB_SHARE_ACTION,
    CaseAnswer,
    KbResult,
    KbShare,
    MyCases,
    Reply,
    case_help_reply,
    case_ref,
    case_reply,
    kb_cannot_post_text,
    kb_gone_text,
    kb_help_reply,
    kb_results_reply,
    kb_shared_reply,
    matches_reply,
    my_cases_reply,
    not_found_reply,
)
from handlers.mrkdwn import escape, one_line, safe

ACK_BUDGET_SECONDS = 2.0
KB_RESULTS = 5
# Longer text is cut before it is searched: a search is for a question, not a pasted email thread.
QUERY_MAX = 1000

_SLOW_TEXT = ":hourglass_flowing_sand: Looking… the answer will appear here in a moment."
_HELP_WORDS = frozenset({"help", "?", "-h", "--help"})
# Slack sends links, mentions and emails in command text as <target|label> and escapes & < > as
# entities; a query is read as the person typed it.
_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_SHORT_ID = re.compile(r"(?:cx-?|#)?(\d{1,19})", re.I)
_LOOKS_LIKE_SHORT_ID = re.compile(r"cx(?:-|\d)\S*", re.I)
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_WORD = re.compile(r"\w")
# Cases get short ids from 1001; a bigint holds at most this.
_SHORT_ID_MAX = 2**63 - 1
# Deliveries Slack cannot make: the bot is not in the conversation, or cannot write there.
_CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                          "cant_post_in_channel"})


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


class CommandDesk(Protocol):
    """What the listeners need from the wiring (bot.services.commands)."""

    async def find_case(self, query: CaseQuery) -> CaseAnswer: ...

    async def my_cases(self, user_id: str) -> MyCases: ...

    async def search_kb(self, query: str, k: int) -> list[KbResult]: ...

    async def share_kb(self, delivery_id: str, share: KbShare) -> list[KbResult] | None:
        """The shared results still published; None for a redelivered click."""
        ...


def plain_text(text: str) -> str:
    """Command text as typed: Slack's <target|label> markup replaced by its label, entities decoded."""
    text = _SLACK_MARKUP.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def parse_case_query(text: str) -> CaseQuery | None:
    """What `/case <text>` asks for; None when it is not a query (help, a flag, a malformed id)."""
    typed = plain_text(text)
    if not typed:
        return CaseQuery(QueryKind.MINE)
    if typed.lower() in _HELP_WORDS or typed.startswith("-"):
        return None
    if _UUID.fullmatch(typed):
        return CaseQuery(QueryKind.ID, str(UUID(typed)), typed)
    short = _SHORT_ID.fullmatch(typed)
    # A number no short id can be (0, or past a bigint) is searched for as text: a card or payment reference.
    if short and 0 < int(short.group(1)) <= _SHORT_ID_MAX:
        return CaseQuery(QueryKind.SHORT_ID, str(int(short.group(1))), typed)
    if _LOOKS_LIKE_SHORT_ID.fullmatch(typed):
        return None  # "CX-", "CX-12a": a short id mistyped, not words to search for
    if _EMAIL.fullmatch(typed):
        return CaseQuery(QueryKind.EMAIL, typed.lower(), typed)
    if not _WORD.search(typed):
        return None
    return CaseQuery(QueryKind.WORDS, typed[:QUERY_MAX], typed)


def _desk(context: dict[str, Any]) -> CommandDesk:
    return context["deps"].commands


async def _answer(ack: AsyncAck, respond: AsyncRespond, work: Awaitable[Reply], budget: float) -> None:
    """Ack with the reply if it is ready within `budget`; else ack now and send it when it is."""
    task = asyncio.ensure_future(work)
    try:
        reply = await asyncio.wait_for(asyncio.shield(task), budget)
    except TimeoutError:
        await ack(response_type="ephemeral", text=_SLOW_TEXT)
        reply = await task
        await respond(response_type="ephemeral", text=reply.text, blocks=reply.blocks)
        return
    except Exception:
        # Acknowledged, so that Slack shows no "dispatch failed"; the error funnel tells the person.
        await ack()
        raise
    await ack(response_type="ephemeral", text=reply.text, blocks=reply.blocks)


async def _case_reply(desk: CommandDesk, query: CaseQuery, user_id: str) -> Reply:
    if query.kind is QueryKind.MINE:
        return my_cases_reply(user_id, await desk.my_cases(user_id))
    answer = await desk.find_case(query)
    if answer.case is not None:
        return case_reply(answer.case)
    if answer.matches:
        return matches_reply(query.typed, answer)
    return not_found_reply(_not_found_text(query))


def _not_found_text(query: CaseQuery) -> str:
    typed = safe(one_line(query.typed), 200)
    if query.kind is QueryKind.SHORT_ID:
        return (f"There is no case {case_ref(int(query.value))}. To search case text for the number instead, "
                f"quote it: `/case \"{escape(query.value)}\"`.")
    if query.kind is QueryKind.ID:
        return f"There is no case with id `{typed}`."
    if query.kind is QueryKind.EMAIL:
        return f"There are no cases from {typed}."
    return f"No case matches “{typed}”. Every word must appear in the subject or the message; try fewer words."


async def _kb_reply(desk: CommandDesk, query: str) -> Reply:
    return kb_results_reply(query, await desk.search_kb(query, KB_RESULTS))


def register(app: AsyncApp, *, ack_budget: float = ACK_BUDGET_SECONDS) -> None:
    async def on_case(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any],
                      context: dict[str, Any]) -> None:
        text = command.get("text") or ""
        query = parse_case_query(text)
        if query is None:
            help_reply = case_help_reply(plain_text(text))
            await ack(response_type="ephemeral", text=help_reply.text, blocks=help_reply.blocks)
            return
        await _answer(ack, respond, _case_reply(_desk(context), query, command["user_id"]), ack_budget)

    async def on_kb(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any], context: dict[str, Any]) -> None:
        query = plain_text(command.get("text") or "")[:QUERY_MAX]
        if not _WORD.search(query) or query.lower() in _HELP_WORDS:
            help_reply = kb_help_reply()
            await ack(response_type="ephemeral", text=help_reply.text, blocks=help_reply.blocks)
            return
        await _answer(ack, respond, _kb_reply(_desk(context), query), ack_budget)

    async def on_kb_share(ack: AsyncAck, respond: AsyncRespond, body: dict[str, Any], action: dict[str, Any],
                          client: AsyncWebClient, context: dict[str, Any]) -> None:
        await ack()
        share = KbShare.from_value(action["value"])
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        # A redelivered click carries the same action_ts: it finds its id recorded and posts nothing.
        results = await _desk(context).share_kb(f"kb_share:{user}:{action['action_ts']}", share)
        if results is None:
            return
        if not results:
            await respond(response_type="ephemeral", replace_original=False, text=kb_gone_text())
            return
        post = kb_shared_reply(user, share.query, results)
        try:
            await client.chat_postMessage(channel=channel, text=post.text, blocks=post.blocks,
                                          unfurl_links=False, unfurl_media=False)
        except SlackApiError as error:
            if error.response.get("error") not in _CANNOT_POST:
                raise
            await respond(response_type="ephemeral", replace_original=False, text=kb_cannot_post_text())

    app.command("/case")(on_case)
    app.command("/kb")(on_kb)
    app.action(KB_SHARE_ACTION)(on_kb_share)
