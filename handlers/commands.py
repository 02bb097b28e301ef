"""`/case` and `/kb`, and the Share button of `/kb`'s results.

The answer is ephemeral and, when it is ready in time, travels in the ack itself: one message, no
"working on it" flicker. A lookup is one or two indexed queries and a KB search about 10 ms, but a
search that must first embed the query calls the embedding provider; so the work gets
ACK_BUDGET_SECONDS, and past that the command is acknowledged with a short note and the answer
follows through the response_url. Either way the ack leaves well within Slack's three seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.case_query import HELP_WORDS, QUERY_MAX, WORD, CaseQuery, QueryKind, parse_case_query, plain_text
from handlers.case_views import (
    KB_SHARE_ACTION,
    KbShare,
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
from handlers.errors import CANNOT_POST
from handlers.mrkdwn import escape, one_line, safe
from handlers.services import CommandService, Services

ACK_BUDGET_SECONDS = 2.0
KB_RESULTS = 5

_SLOW_TEXT = ":hourglass_flowing_sand: Looking… the answer will appear here in a moment."


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


async def _case_reply(service: CommandService, query: CaseQuery, user_id: str) -> Reply:
    if query.kind is QueryKind.MINE:
        return my_cases_reply(user_id, await service.my_cases(user_id))
    answer = await service.find_case(query)
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


async def _kb_reply(service: CommandService, query: str) -> Reply:
    return kb_results_reply(query, await service.search_kb(query, KB_RESULTS))


def register(app: AsyncApp, *, ack_budget: float = ACK_BUDGET_SECONDS) -> None:
    async def on_case(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any], services: Services) -> None:
        text = command.get("text") or ""
        query = parse_case_query(text)
        if query is None:
            help_reply = case_help_reply(plain_text(text))
            await ack(response_type="ephemeral", text=help_reply.text, blocks=help_reply.blocks)
            return
        await _answer(ack, respond, _case_reply(services.commands, query, command["user_id"]), ack_budget)

    async def on_kb(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any], services: Services) -> None:
        query = plain_text(command.get("text") or "")[:QUERY_MAX]
        if not WORD.search(query) or query.lower() in HELP_WORDS:
            help_reply = kb_help_reply()
            await ack(response_type="ephemeral", text=help_reply.text, blocks=help_reply.blocks)
            return
        await _answer(ack, respond, _kb_reply(services.commands, query), ack_budget)

    async def on_kb_share(ack: AsyncAck, respond: AsyncRespond, body: dict[str, Any], action: dict[str, Any],
                          client: AsyncWebClient, services: Services) -> None:
        await ack()
        share = KbShare.from_value(action["value"])
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        # A redelivered click carries the same action_ts: it finds its id recorded and posts nothing.
        results = await services.commands.share_kb(f"kb_share:{user}:{action['action_ts']}", share)
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
            if error.response.get("error") not in CANNOT_POST:
                raise
            await respond(response_type="ephemeral", replace_original=False, text=kb_cannot_post_text())

    app.command("/case")(on_case)
    app.command("/kb")(on_kb)
    app.action(KB_SHARE_ACTION)(on_kb_share)
