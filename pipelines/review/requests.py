"""A reviewer's click as a job payload, and what came of it. Free of the database, so that the
Slack listeners (which may not reach SQL) can build one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID


class ReviewAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    TAKE = "take"
    ESCALATE = "escalate"
    EDIT = "edit"  # edited reply sent, with corrected labels


@dataclass(frozen=True)
class ActionRequest:
    """A reviewer's click, as the Slack listener queues it."""

    action: ReviewAction
    reviewer: str  # Slack user id
    case_id: UUID
    draft_id: UUID | None = None
    review_id: UUID | None = None  # the review the card showed: decided by someone else = lost race
    channel: str | None = None  # the card's message, to update in place
    ts: str | None = None
    reason: str | None = None  # reject
    note: str | None = None
    reply: str | None = None  # edit: the text to send
    category: str | None = None  # edit: the reviewer's labels, when they differ from triage's
    subcategory: str | None = None
    priority: str | None = None

    def payload(self) -> bytes:
        return json.dumps({k: str(v) if isinstance(v, UUID) else v for k, v in asdict(self).items()}).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> ActionRequest:
        data: dict[str, Any] = json.loads(payload)
        ids = {k: UUID(data[k]) if data.get(k) else None for k in ("draft_id", "review_id")}
        return cls(**{**data, **ids, "action": ReviewAction(data["action"]), "case_id": UUID(data["case_id"])})


@dataclass(frozen=True)
class ActionResult:
    done: bool  # this click changed the case
    winner: str | None = None  # when it did not: who acted first (a Slack user id, or "auto-send")
    winner_action: str | None = None
    state: str | None = None  # the case's state when the click came too late
    refused: str | None = None  # an outside service said no (e.g. Jira rejected the issue): why
