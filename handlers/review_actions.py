"""Review card listeners: every click is acknowledged at once and its work queued as a job; the
reject modal opens here because Slack's trigger_id is only good for three seconds."""

from __future__ import annotations

import json
from typing import Any, Protocol
from uuid import UUID

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.review_card import ReviewCard, refusal_text, reject_modal
from handlers.reviewers import ReviewerCheck
from pipelines.review_requests import ActionRequest, ReviewAction


class ReviewDesk(Protocol):
    """What the listeners need from the wiring (bot.review_desk)."""

    reviewers: ReviewerCheck

    async def submit(self, delivery_id: str, request: ActionRequest) -> bool: ...

    async def card(self, case_id: UUID) -> ReviewCard | None: ...


def _desk(context: dict[str, Any]) -> ReviewDesk:
    return context["deps"].review


def _ids(action: dict[str, Any]) -> tuple[UUID, UUID | None]:
    value = json.loads(action["value"])
    return UUID(value["case_id"]), UUID(value["draft_id"]) if value.get("draft_id") else None


async def _click(ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], kind: ReviewAction) -> None:
    action = body["actions"][0]
    case_id, draft_id = _ids(action)
    container = body.get("container", {})
    request = ActionRequest(action=kind, reviewer=body["user"]["id"], case_id=case_id, draft_id=draft_id,
                            channel=container.get("channel_id"), ts=container.get("message_ts"))
    # Queued before the ack, so that an acknowledged click is never lost; a redelivery of the same
    # click (same user, same action_ts) is dropped there.
    await _desk(context).submit(f"click:{request.reviewer}:{action['action_ts']}", request)
    await ack()


async def on_approve(ack: AsyncAck, body: dict[str, Any], context: dict[str, Any]) -> None:
    await _click(ack, body, context, ReviewAction.APPROVE)


async def on_take(ack: AsyncAck, body: dict[str, Any], context: dict[str, Any]) -> None:
    await _click(ack, body, context, ReviewAction.TAKE)


async def on_escalate(ack: AsyncAck, body: dict[str, Any], context: dict[str, Any]) -> None:
    await _click(ack, body, context, ReviewAction.ESCALATE)


async def on_reject(ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient) -> None:
    await ack()
    desk, user = _desk(context), body["user"]["id"]
    container = body.get("container", {})
    if not await desk.reviewers.allows(user):
        await client.chat_postEphemeral(channel=container["channel_id"], user=user, text=refusal_text(user))
        return
    card = await desk.card(_ids(body["actions"][0])[0])
    if card is None:
        return
    await client.views_open(trigger_id=body["trigger_id"],
                            view=reject_modal(card, channel=container["channel_id"], ts=container["message_ts"]))


async def on_reject_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                              context: dict[str, Any]) -> None:
    meta = json.loads(view["private_metadata"])
    values = view["state"]["values"]
    reason = (values["reason"]["reason"].get("selected_option") or {}).get("value")
    note = values.get("note", {}).get("note", {}).get("value")
    request = ActionRequest(action=ReviewAction.REJECT, reviewer=body["user"]["id"], case_id=UUID(meta["case_id"]),
                            draft_id=UUID(meta["draft_id"]) if meta.get("draft_id") else None,
                            channel=meta.get("channel"), ts=meta.get("ts"), reason=reason, note=note)
    await _desk(context).submit(f"view:{view['id']}", request)
    await ack()


def register(app: AsyncApp) -> None:
    app.action("review_approve")(on_approve)
    app.action("review_take")(on_take)
    app.action("review_escalate")(on_escalate)
    app.action("review_reject")(on_reject)
    app.view("review_reject_modal")(on_reject_submitted)
