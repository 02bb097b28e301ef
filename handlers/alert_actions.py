"""Alert listeners: Acknowledge, Create Jira and Resolve are queued as a job before the click is
acknowledged, as the review card's are; the job checks who clicked, applies it and edits the alert."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from handlers.alert_card import AlertButton, alert_id_of
from handlers.clicks import click_of
from handlers.services import Services
from pipelines.jobs import AlertAction, AlertActionRequest


async def _click(ack: AsyncAck, body: dict[str, Any], services: Services, kind: AlertAction) -> None:
    click = click_of(body, alert_id_of)  # the button carries only the alert's id
    if click is not None and services.alerts is not None:
        # Queued before the ack, so that an acknowledged click is never lost; a redelivery is dropped there.
        await services.alerts.submit(click.delivery_id, AlertActionRequest(
            action=kind, reviewer=click.user, alert_id=click.target, channel=click.channel, ts=click.ts))
    await ack()


async def on_acknowledge(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, AlertAction.ACKNOWLEDGE)


async def on_create_jira(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, AlertAction.CREATE_JIRA)


async def on_resolve(ack: AsyncAck, body: dict[str, Any], services: Services) -> None:
    await _click(ack, body, services, AlertAction.RESOLVE)


def register(app: AsyncApp) -> None:
    app.action(AlertButton.ACKNOWLEDGE.value)(on_acknowledge)
    app.action(AlertButton.CREATE_JIRA.value)(on_create_jira)
    app.action(AlertButton.RESOLVE.value)(on_resolve)
