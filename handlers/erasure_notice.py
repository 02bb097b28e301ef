"""What a Slack message about an erased customer's case says instead of its content."""

from __future__ import annotations

from typing import Any

ERASED_TEXT = "The content of this message was erased at the customer's request."


def erased_blocks() -> list[dict[str, Any]]:
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": f":wastebasket: _{ERASED_TEXT}_"}]}]
