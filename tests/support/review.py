"""A reviewer's click on a review card, as the Slack listener would queue it."""

from __future__ import annotations

from uuid import UUID

from pipelines.jobs import ActionRequest, ReviewAction


def click(action: ReviewAction, reviewer: str, case_id: UUID, draft_id: UUID | None = None,
          **fields: object) -> ActionRequest:
    """ActionRequest(action=..., reviewer=..., case_id=..., draft_id=..., **fields) in one short call."""
    return ActionRequest(action=action, reviewer=reviewer, case_id=case_id, draft_id=draft_id, **fields)
