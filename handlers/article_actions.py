"""Article draft listeners: Publish and Discard are queued as a job before the click is acknowledged,
as the review card's are; Edit opens its modal at once (Slack's trigger_id lasts three seconds) and
the modal's submission is queued the same way. The job checks who acted and applies it."""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from handlers.article_card import (
    EDIT_CALLBACK_ID,
    TITLE_BLOCK,
    ArticleButton,
    decided_text,
    draft_id_of,
    edit_modal,
    edit_submission,
    refusal_text,
)
from handlers.clicks import click_of
from handlers.services import Services
from pipelines.jobs import ArticleAction, ArticleActionRequest

log = structlog.get_logger(__name__)


async def _click(ack: AsyncAck, body: dict[str, Any], services: Services, kind: ArticleAction) -> None:
    click = click_of(body, draft_id_of)
    if click is not None and services.articles is not None:
        # Queued before the ack, so that an acknowledged click is never lost; a redelivery is dropped there.
        await services.articles.submit(click.delivery_id, ArticleActionRequest(
            action=kind, reviewer=click.user, draft_id=click.target, channel=click.channel, ts=click.ts))
    await ack()


async def on_publish(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ArticleAction.PUBLISH)


async def on_discard(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, ArticleAction.DISCARD)


async def on_edit(ack: AsyncAck, body: dict[str, Any], services: Services, client: AsyncWebClient) -> None:
    await ack()
    service, user = services.articles, body["user"]["id"]
    container = body.get("container", {})
    try:
        draft_id = draft_id_of(body["actions"][0]["value"])
    except (KeyError, ValueError):
        return
    if service is None:
        return
    if not await service.is_reviewer(user):
        await client.chat_postEphemeral(channel=container["channel_id"], user=user, text=refusal_text(user))
        return
    card = await service.card(draft_id)
    if card is None:
        return
    if card.status != "drafted":
        await client.chat_postEphemeral(channel=container["channel_id"], user=user,
                                        text=decided_text(card.status, card.decided_by, card.decided_at))
        return
    await client.views_open(trigger_id=body["trigger_id"],
                            view=edit_modal(card, channel=container["channel_id"], ts=container["message_ts"]))


async def on_edit_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], services: Services) -> None:
    try:
        edit = edit_submission(view)
    except (KeyError, ValueError):
        log.warning("article.bad_modal", view_id=view.get("id"))
        await ack()
        return
    if not edit.title or not edit.body:
        await ack(response_action="errors", errors={TITLE_BLOCK: "The article needs a title and a text."})
        return
    if services.articles is None:
        await ack()
        return
    request = ArticleActionRequest(action=ArticleAction.EDIT, reviewer=body["user"]["id"], draft_id=edit.draft_id,
                                   channel=edit.channel, ts=edit.ts, title=edit.title, body=edit.body)
    # A resubmitted view (Slack retries an unacknowledged one) keeps its id: queued once.
    await services.articles.submit(f"view:{view['id']}", request)
    await ack()


def register(app: AsyncApp) -> None:
    app.action(ArticleButton.PUBLISH.value)(on_publish)
    app.action(ArticleButton.EDIT.value)(on_edit)
    app.action(ArticleButton.DISCARD.value)(on_discard)
    app.view(EDIT_CALLBACK_ID)(on_edit_submitted)
