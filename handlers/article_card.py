"""Pure Block Kit builders for a drafted knowledge-base article in the metrics channel: what gap it
fills, its text (cut to fit; the Edit modal holds all of it), where it stands, and Publish / Edit /
Discard. The drafts are written from customers' cases, so every text is escaped and bounded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import one_line, safe


class ArticleButton(StrEnum):
    """action_ids of the draft's buttons; the listeners match on these."""

    PUBLISH = "article_publish"
    EDIT = "article_edit"
    DISCARD = "article_discard"


EDIT_CALLBACK_ID = "article_edit_submit"
TITLE_BLOCK = "article_title"
# The Edit modal holds the body in boxes of Slack's largest plain-text input, split at line breaks,
# joined again with one on submission.
BODY_BLOCK_PREFIX = "article_body_"
BODY_BOXES = 6
TITLE_MAX = 150
_BODY_SHOWN = 2800
_SUMMARY_MAX = 1000
_TAGS_MAX = 500
_GAP_TITLE_MAX = 200
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", re.M)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_DECIDED_WORDS = {"published": "published this article", "discarded": "discarded this draft"}


@dataclass(frozen=True, slots=True)
class ArticleCard:
    draft_id: UUID
    title: str
    summary: str | None
    body: str  # Markdown
    tags: tuple[str, ...]
    drafter: str  # claude | template
    model: str | None
    gap_title: str
    case_count: int
    best_article: str | None
    best_score: float | None
    status: str  # drafted | published | discarded
    edited_by: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    page_url: str | None = None  # the Confluence page, once published there


def draft_id_of(value: str) -> UUID:
    """The button's value is the draft's id and nothing else."""
    return UUID(value)


def _origin(card: ArticleCard) -> str:
    by = (f"Claude ({safe(one_line(card.model), kit.SHORT_TEXT_MAX)})" if card.model else "Claude") \
        if card.drafter == "claude" else "a template from the replies that resolved the cases (no AI)"
    best = (f"the closest article, “{safe(one_line(card.best_article), _GAP_TITLE_MAX)}”, scored "
            f"{card.best_score:.2f}" if card.best_article and card.best_score is not None
            else "the knowledge base had no article for them")
    gap = safe(one_line(card.gap_title), _GAP_TITLE_MAX)
    edited = f" · edited by {kit.who(card.edited_by, none='someone')}" if card.edited_by else ""
    return (f":books: KB gap: {card.case_count} recent cases like “{gap}”; {best}. "
            f"Drafted by {by}{edited}.")


def _status(card: ArticleCard) -> str:
    if card.status == "drafted":
        return ":hourglass_flowing_sand: Waiting for a reviewer. *Publish* adds it to the knowledge base; nothing " \
               "is published before."
    who = kit.who(card.decided_by, none="Someone")
    when = f" on {kit.slack_date(card.decided_at)}" if card.decided_at else ""
    if card.status == "published":
        page = f" · {kit.link(card.page_url, 'Confluence page')}" if card.page_url else ""
        return f":white_check_mark: Published by {who}{when}: the knowledge base search finds it now{page}."
    return f":wastebasket: Discarded by {who}{when}."


def _button(label: str, action: ArticleButton, draft_id: UUID, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action.value, "text": kit.plain(label, 75),
                              "value": str(draft_id)}
    if style:
        button["style"] = style
    return button


def as_mrkdwn(markdown: str) -> str:
    """The draft's Markdown as Slack shows it: headings and **bold** as bold (escaped first)."""
    text = _HEADING.sub(lambda m: f"*{m[1].strip()}*", mrkdwn.escape(markdown.strip()))
    return _BOLD.sub(r"*\1*", text)


def article_blocks(card: ArticleCard) -> list[dict[str, Any]]:
    body = as_mrkdwn(card.body)
    shown = mrkdwn.truncate(body, _BODY_SHOWN, suffix="")
    blocks = [
        kit.header("article_header", f"KB draft: {one_line(card.title)}"),
        kit.context("article_origin", _origin(card)),
    ]
    if card.summary:
        blocks.append(kit.section("article_summary", f"*Summary:* {safe(one_line(card.summary), _SUMMARY_MAX)}"))
    blocks.append(kit.section("article_body", shown or "_(empty)_"))
    if shown != body:
        blocks.append(kit.context("article_cut", f"… {len(body) - len(shown):,} more characters: *Edit* shows the "
                                                 "whole article."))
    if card.tags:
        blocks.append(kit.context("article_tags", "Tags: " + safe(", ".join(one_line(t) for t in card.tags),
                                                                    _TAGS_MAX)))
    blocks.append(kit.context("article_status", _status(card)))
    if card.status == "drafted":
        blocks.append({"type": "actions", "block_id": "article_actions", "elements": [
            _button("Publish", ArticleButton.PUBLISH, card.draft_id, "primary"),
            _button("Edit", ArticleButton.EDIT, card.draft_id),
            _button("Discard", ArticleButton.DISCARD, card.draft_id, "danger"),
        ]})
    return blocks


def article_text(card: ArticleCard) -> str:
    """The notification text (and what clients without Block Kit show)."""
    state = {"drafted": "waiting for review", "published": "published", "discarded": "discarded"}
    return mrkdwn.truncate(f"KB article draft ({state.get(card.status, card.status)}): "
                           f"{mrkdwn.escape(one_line(card.title))}", mrkdwn.FALLBACK_TEXT)


def body_boxes(body: str) -> list[str]:
    """The body in pieces that each fit one input box, cut at line breaks where possible."""
    pieces, rest = [], body.strip()
    while len(rest) > mrkdwn.PLAIN_INPUT_MAX:
        cut = rest.rfind("\n", 0, mrkdwn.PLAIN_INPUT_MAX + 1)
        if cut <= 0:
            cut = mrkdwn.PLAIN_INPUT_MAX
            pieces.append(rest[:cut])
            rest = rest[cut:]
        else:
            pieces.append(rest[:cut])
            rest = rest[cut + 1:]
    return [*pieces, rest]


def _input(block_id: str, label: str, value: str | None, *, multiline: bool, limit: int,
           optional: bool = False) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": block_id, "multiline": multiline,
                               "max_length": limit}
    if value:
        element["initial_value"] = value
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": kit.plain(label, 2000),
                             "element": element}
    if optional:
        block["optional"] = True
    return block


def edit_modal(card: ArticleCard, *, channel: str, ts: str) -> dict[str, Any]:
    """The Edit dialog: the title and the whole body; submitting keeps the draft for Publish."""
    boxes = body_boxes(card.body)[:BODY_BOXES]
    blocks = [
        kit.context("edit_hint", "Markdown. Your text replaces the draft; *Publish* on the message then adds it to "
                                 "the knowledge base."),
        _input(TITLE_BLOCK, "Title", mrkdwn.truncate(one_line(card.title), TITLE_MAX, suffix=""), multiline=False,
               limit=TITLE_MAX),
    ]
    total = max(len(boxes), 1)
    for i in range(total):
        label = "Article" if total == 1 else f"Article (part {i + 1} of {total})"
        blocks.append(_input(f"{BODY_BLOCK_PREFIX}{i}", label, boxes[i] if i < len(boxes) else None, multiline=True,
                             limit=mrkdwn.PLAIN_INPUT_MAX, optional=i > 0))
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK_ID,
        "title": kit.plain("Edit article", mrkdwn.MODAL_TITLE),
        "submit": kit.plain("Save", mrkdwn.MODAL_TITLE),
        "close": kit.plain("Cancel", mrkdwn.MODAL_TITLE),
        "private_metadata": f"{card.draft_id}|{channel}|{ts}",
        "blocks": blocks,
    }


@dataclass(frozen=True, slots=True)
class EditSubmission:
    draft_id: UUID
    channel: str | None
    ts: str | None
    title: str
    body: str


def edit_submission(view: dict[str, Any]) -> EditSubmission:
    """The modal's fields, the body's pieces joined again. Raises ValueError on foreign metadata."""
    draft, channel, ts = view["private_metadata"].split("|")
    values = view["state"]["values"]

    def typed(block_id: str) -> str:
        return str(values.get(block_id, {}).get(block_id, {}).get("value") or "")

    parts = [typed(f"{BODY_BLOCK_PREFIX}{i}") for i in range(BODY_BOXES) if f"{BODY_BLOCK_PREFIX}{i}" in values]
    return EditSubmission(UUID(draft), channel or None, ts or None, one_line(typed(TITLE_BLOCK)),
                          "\n".join(p for p in parts if p.strip()).strip())


def refusal_text(user_id: str) -> str:
    """Ephemeral answer to someone outside the reviewer group who pressed a draft's button."""
    who = f"<@{user_id}>, only" if kit.is_user_id(user_id) else "Only"
    return f"{who} reviewers can publish, edit or discard article drafts. Ask a CX admin to add you to the reviewer group."


def decided_text(status: str, decided_by: str | None, decided_at: datetime | None) -> str:
    """Ephemeral answer to a click on a draft someone already decided."""
    who = kit.who(decided_by, none="Someone else")
    did = _DECIDED_WORDS.get(status, "decided on this draft")
    when = f" on {kit.slack_date(decided_at)}" if decided_at else ""
    return f"{who} already {did}{when}, so your action was not applied."
