"""Review card listeners: every click is acknowledged at once and its work queued as a job; the
reject modal opens here because Slack's trigger_id is only good for three seconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.review_card import (
    EDIT_CALLBACK_ID,
    REJECT_CALLBACK_ID,
    CardButton,
    CardRef,
    ModalBlock,
    ModalRef,
    ReviewCard,
    edit_modal,
    refusal_text,
    reject_modal,
)
from handlers.services import ReviewService, Services
from pipelines.jobs import ActionRequest, ReviewAction


def _ref(action: dict[str, Any]) -> CardRef:
    return CardRef.from_value(action["value"])


async def _click(ack: AsyncAck, body: dict[str, Any], services: Services, kind: ReviewAction) -> None:
    action = body["actions"][0]
    ref = _ref(action)
    container = body.get("container", {})
    request = ActionRequest(action=kind, reviewer=body["user"]["id"], case_id=ref.case_id, draft_id=ref.draft_id,
                            review_id=ref.review_id, channel=container.get("channel_id"),
                            ts=container.get("message_ts"))
    # Queued before the ack, so that an acknowledged click is never lost; a redelivery of the same
    # click (same user, same action_ts) is dropped there.
    await services.review.submit(f"click:{request.reviewer}:{action['action_ts']}", request)
    await ack()


async def on_approve(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ReviewAction.APPROVE)


async def on_take(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ReviewAction.TAKE)


async def on_escalate(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ReviewAction.ESCALATE)


async def on_resolve(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ReviewAction.RESOLVE)


async def _open_modal(ack: AsyncAck, body: dict[str, Any], services: Services, client: AsyncWebClient,
                      build: Callable[[ReviewService, ReviewCard, str, str], dict[str, Any]]) -> None:
    await ack()
    service, user = services.review, body["user"]["id"]
    container = body.get("container", {})
    if not await service.is_reviewer(user):
        await client.chat_postEphemeral(channel=container["channel_id"], user=user, text=refusal_text(user))
        return
    card = await service.card(_ref(body["actions"][0]).case_id)
    if card is None:
        return
    await client.views_open(trigger_id=body["trigger_id"],
                            view=build(service, card, container["channel_id"], container["message_ts"]))


async def on_reject(ack: AsyncAck, body: dict[str, Any], services: Services, client: AsyncWebClient) -> None:
    await _open_modal(ack, body, services, client, lambda _, card, channel, ts: reject_modal(card, channel=channel, ts=ts))


def _edit_view(service: ReviewService, card: ReviewCard, channel: str, ts: str) -> dict[str, Any]:
    categories, priorities = service.edit_choices()
    return edit_modal(card, categories=categories, priorities=priorities, channel=channel, ts=ts)


async def on_edit(ack: AsyncAck, body: dict[str, Any], services: Services, client: AsyncWebClient) -> None:
    await _open_modal(ack, body, services, client, _edit_view)


def _input(values: dict[str, Any], block: ModalBlock) -> Any:
    """An input's value: typed text, or the value of the selected option (None when left empty)."""
    state = values.get(block, {}).get(block, {})
    return (state.get("selected_option") or {}).get("value") if "selected_option" in state else state.get("value")


async def _submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], services: Services,
                     kind: ReviewAction, **fields: Any) -> None:
    meta = ModalRef.from_metadata(view["private_metadata"])
    request = ActionRequest(action=kind, reviewer=body["user"]["id"], case_id=meta.case_id, draft_id=meta.draft_id,
                            review_id=meta.review_id, channel=meta.channel, ts=meta.ts, **fields)
    # A resubmitted view (Slack retries an unacknowledged one) keeps its id: queued once.
    await services.review.submit(f"view:{view['id']}", request)
    await ack()


async def on_reject_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                              services: Services) -> None:
    values = view["state"]["values"]
    await _submitted(ack, body, view, services, ReviewAction.REJECT, reason=_input(values, ModalBlock.REASON),
                     note=_input(values, ModalBlock.NOTE))


async def on_edit_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                            services: Services) -> None:
    values = view["state"]["values"]
    reply = (_input(values, ModalBlock.REPLY) or "").strip()
    if not reply:
        await ack(response_action="errors", errors={ModalBlock.REPLY.value: "Write the reply to send."})
        return
    categories, _ = services.review.edit_choices()
    category, subcategory = _input(values, ModalBlock.CATEGORY), _input(values, ModalBlock.SUBCATEGORY)
    if subcategory and category and subcategory not in categories.get(category, ()):
        await ack(response_action="errors",
                  errors={ModalBlock.SUBCATEGORY.value: f"Not a subcategory of {category}."})
        return
    await _submitted(ack, body, view, services, ReviewAction.EDIT, reply=reply, category=category,
                     subcategory=subcategory, priority=_input(values, ModalBlock.PRIORITY),
                     note=_input(values, ModalBlock.NOTE))


def register(app: AsyncApp) -> None:
    app.action(CardButton.APPROVE.value)(on_approve)
    app.action(CardButton.TAKE.value)(on_take)
    app.action(CardButton.ESCALATE.value)(on_escalate)
    app.action(CardButton.RESOLVE.value)(on_resolve)
    app.action(CardButton.REJECT.value)(on_reject)
    app.action(CardButton.EDIT.value)(on_edit)
    app.view(REJECT_CALLBACK_ID)(on_reject_submitted)
    app.view(EDIT_CALLBACK_ID)(on_edit_submitted)
