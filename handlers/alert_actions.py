"""Alert listeners: Acknowledge, Create Jira and Resolve are queued as a job before the click is
acknowledged, as the review card's are; the job checks who clicked, applies it and edits the alert."""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp

from handlers.alert_card import AlertButton, alert_id_of
from handlers.services import Services
from pipelines.jobs import AlertAction, AlertActionRequest

log = structlog.get_logger(__name__)


async def _click(ack: AsyncAck, body: dict[str, Any], services: Services, kind: AlertAction) -> None:
    action = body["actions"][0]
    container = body.get("container", {})
    try:
        alert_id = alert_id_of(action["value"])  # the button carries only the alert's id
    except (KeyError, ValueError):
        log.warning("alert.bad_button_value", action_id=action.get("action_id"))
        await ack()
        return
    if services.alerts is None:
        await ack()
        return
    request = AlertActionRequest(action=kind, reviewer=body["user"]["id"], alert_id=alert_id,
                                 channel=container.get("channel_id"), ts=container.get("message_ts"))
    # Queued before the ack, so that an acknowledged click is never lost; a redelivery of the same
    # click (same user, same action_ts) is dropped there.
    await services.alerts.submit(f"click:{request.reviewer}:{action['action_ts']}", request)
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
