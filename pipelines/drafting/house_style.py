"""The desk's own recent replies as the stable few-shot block of the drafting prompt.

They are chosen as of the start of the UTC day, so every draft of the day sends the same block:
after the instructions and the tool schema it makes the prefix Anthropic caches. The drafter adds
only as many as take that prefix past the model's minimum cacheable length, and none when it
cannot get there: below the minimum they would be paid in full on every draft (ClaudeDrafter).
A reply with any personal data the redactor finds is left out, so no value or placeholder of
another customer's is ever shown as an example."""

from __future__ import annotations

from datetime import UTC, datetime

from db import drafts as drafts_db
from db.connection import Connection
from pipelines.privacy.redaction import find
from pipelines.replies.answer import answer_text

SCANNED = 100  # latest sent replies looked at: a busy desk (the only one that reads them) covers 12 subcategories in far fewer
EXAMPLES = 12  # at most, one per subcategory
EXAMPLE_CHARS = 1200


async def house_examples(conn: Connection, now: datetime) -> tuple[str, ...]:
    """Up to EXAMPLES replies, newest first, each the body of a reply sent before today (UTC) in a
    subcategory of its own, without greeting and sign-off."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chosen: dict[str | None, str] = {}
    for subcategory, body in await drafts_db.sent_before(conn, day, SCANNED):
        if subcategory in chosen:
            continue
        text = answer_text(body)
        if len(text) < 80 or len(text) > EXAMPLE_CHARS or find(text):
            continue  # too short to show a style, too long to be worth its tokens, or personal
        chosen[subcategory] = text
        if len(chosen) == EXAMPLES:
            break
    return tuple(chosen.values())
