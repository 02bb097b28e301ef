"""What a button click on one of our messages says: who clicked, on what, where, and the key that
drops Slack's redelivery of the same click. The listeners queue a job with it before they ack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Click:
    user: str
    target: UUID  # what the button's value names: an alert, an article draft
    channel: str | None  # the message, to update in place
    ts: str | None
    delivery_id: str  # the same for a redelivery of this click (same user, same action_ts)


def click_of(body: dict[str, Any], target_of: Callable[[str], UUID]) -> Click | None:
    """The click in a block_actions payload; None (logged) when its button carries no valid value."""
    action = body["actions"][0]
    container = body.get("container", {})
    try:
        target = target_of(action["value"])
    except (KeyError, ValueError):
        log.warning("click.bad_button_value", action_id=action.get("action_id"))
        return None
    user = body["user"]["id"]
    return Click(user, target, container.get("channel_id"), container.get("message_ts"),
                 f"click:{user}:{action['action_ts']}")
