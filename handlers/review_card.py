"""Pure Block Kit builders for the review card and its modals: a case in, Slack JSON out; no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import escape, one_line, safe, truncate


class CardButton(StrEnum):
    """action_ids of the card's buttons; the listeners match on these."""

    APPROVE = "review_approve"
    EDIT = "review_edit"
    REJECT = "review_reject"
    ESCALATE = "review_escalate"
    TAKE = "review_take"
    RESOLVE = "review_resolve"


REJECT_CALLBACK_ID = "review_reject_modal"
EDIT_CALLBACK_ID = "review_edit_modal"

ACTIONS_BLOCK_ID = "card_actions"


class ModalBlock(StrEnum):
    """block_ids of the modals' inputs; each input's action_id is the same string."""

    REASON = "reason"
    NOTE = "note"
    REPLY = "reply"
    CATEGORY = "category"
    SUBCATEGORY = "subcategory"
    PRIORITY = "priority"


REJECT_REASONS: tuple[tuple[str, str], ...] = (
    ("wrong_category", "Wrong category"),
    ("inaccurate", "Inaccurate or incomplete"),
    ("tone", "Tone not right"),
    ("policy", "Against policy"),
    ("needs_human", "Needs a person"),
    ("other", "Other"),
)

# str | None keys: a card without a priority is looked up too, and gets the default.
_PRIORITY_EMOJI: dict[str | None, str] = {
    "urgent": ":red_circle:",
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":white_circle:",
}
_OUTCOMES = {"approved": "Approved and sent", "edited": "Edited and sent", "rejected": "Rejected",
             "escalated": "Escalated", "expired": "Review timed out"}
_PAST_TENSE = {
    "approve": "approved",
    "edit": "edited and sent",
    "reject": "rejected",
    "escalate": "escalated",
    "take": "took",
    "resolve": "marked resolved",
}
# How a resolved case was answered (db/lifecycle.py has the rule), as the card and `/case` say it.
RESOLUTION_LABELS = {
    "self_service": "self-service (auto-sent reply)",
    "collaborative": "collaborative (AI draft, reviewer approved)",
    "human": "handled by a person",
    "escalated": "escalated",
}


# Room left for the customer's text once the section's label and cut note are in.
_SUBJECT_MAX = 250
_REASON_MAX = 1000
_OUTCOME_MAX = 300
_CITATIONS_SHOWN = 10
_CITATION_TITLE_MAX = 150
_MODAL_MESSAGE_MAX = 1500
_MORE_LINE_MAX = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewCard:
    """Everything the card shows about one case awaiting (or past) review. Text fields are untrusted."""

    case_id: UUID
    short_id: str
    priority: str | None  # None: triage has not set one
    review_reason: str
    message: str
    state: str
    actionable: bool  # a reviewer can still act: the buttons show; otherwise they are spent and the card only reports
    category: str | None = None
    subcategory: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    tier: str | None = None
    confidence: float | None = None  # 0.0-1.0
    summary: str | None = None
    subject: str | None = None
    draft_id: UUID | None = None
    draft: str | None = None
    citations: tuple[tuple[str, str | None], ...] = ()  # (title, url)
    owner: str | None = None  # Slack user id; None means the bot owns the case
    outcome: str | None = None
    acted_by: str | None = None  # Slack user id
    acted_at: datetime | None = None
    jira_key: str | None = None
    jira_url: str | None = None
    review_id: UUID | None = None
    resolvable: bool = False  # a reviewer can mark it resolved: the Mark resolved button shows
    resolution_type: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None  # the reviewer who marked it resolved; None: resolved by the system
    csat: int | None = None  # the customer's score, 1-5


@dataclass(frozen=True, slots=True)
class CardRef:
    """What a button carries back: enough to find the case, the draft and the review row."""

    case_id: UUID
    draft_id: UUID | None
    review_id: UUID | None

    def to_value(self) -> str:
        return _compact({"case_id": self.case_id, "draft_id": self.draft_id, "review_id": self.review_id})

    @classmethod
    def from_value(cls, value: str) -> CardRef:
        data = json.loads(value)
        return cls(UUID(data["case_id"]), _uuid_or_none(data.get("draft_id")), _uuid_or_none(data.get("review_id")))


@dataclass(frozen=True, slots=True)
class ModalRef:
    """A modal's private_metadata: the card's ids plus where the card is, so a submit can update it."""

    case_id: UUID
    draft_id: UUID | None
    review_id: UUID | None
    channel: str
    ts: str

    def to_metadata(self) -> str:
        metadata = _compact(
            {
                "case_id": self.case_id,
                "draft_id": self.draft_id,
                "review_id": self.review_id,
                "channel": self.channel,
                "ts": self.ts,
            }
        )
        if len(metadata) > mrkdwn.PRIVATE_METADATA:
            raise ValueError(f"private_metadata would be {len(metadata)} characters")
        return metadata

    @classmethod
    def from_metadata(cls, metadata: str) -> ModalRef:
        data = json.loads(metadata)
        return cls(
            UUID(data["case_id"]),
            _uuid_or_none(data.get("draft_id")),
            _uuid_or_none(data.get("review_id")),
            str(data["channel"]),
            str(data["ts"]),
        )


def card_ref(card: ReviewCard) -> CardRef:
    return CardRef(card.case_id, card.draft_id, card.review_id)


def review_card_blocks(card: ReviewCard) -> list[dict[str, Any]]:
    """The review card: who wrote, what they said, what the AI would answer, and what a reviewer can do now."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": "card_header", "text": kit.plain(_header_text(card), mrkdwn.HEADER_TEXT)},
        {"type": "section", "block_id": "card_facts", "fields": _fact_fields(card)},
        kit.section("card_reason", _labelled("Why it needs review", safe(card.review_reason, _REASON_MAX))),
    ]
    if card.summary:
        blocks.append(kit.section("card_summary", _labelled("Summary", safe(card.summary, _REASON_MAX))))
    blocks.append(kit.section("card_message", _message_text(card)))
    blocks.append({"type": "divider", "block_id": "card_divider"})
    blocks.append(kit.section("card_draft", _draft_text(card)))
    if card.citations:
        blocks.append(kit.section("card_sources", _citations_text(card.citations)))
    blocks.append(
        {
            "type": "context",
            "block_id": "card_status",
            "elements": [kit.mrkdwn_text(_status_text(card), mrkdwn.CONTEXT_ELEMENT_TEXT)],
        }
    )
    buttons = _buttons(card)
    if buttons:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": buttons})
    return blocks


def card_fallback_text(card: ReviewCard) -> str:
    """The notification line and screen-reader text; kept short, as notifications show one line."""
    about = one_line(card.subject or "") or one_line(card.message) or "new case"
    return safe(f"Review {one_line(card.short_id)}: {about}", 150)


def reject_modal(card: ReviewCard, *, channel: str, ts: str) -> dict[str, Any]:
    """The Reject dialog: a reason (required) and a note for the learning loop."""
    options = [_option(label, value) for value, label in REJECT_REASONS]
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK_ID,
        "title": kit.plain("Reject draft", mrkdwn.MODAL_TITLE),
        "submit": kit.plain("Reject", mrkdwn.MODAL_TITLE),
        "close": kit.plain("Cancel", mrkdwn.MODAL_TITLE),
        "private_metadata": _modal_ref(card, channel, ts).to_metadata(),
        "blocks": [
            kit.section("modal_case", _case_line(card)),
            {
                "type": "input",
                "block_id": ModalBlock.REASON.value,
                "label": kit.plain("Why is the draft wrong?", 2000),
                "element": {
                    "type": "static_select",
                    "action_id": ModalBlock.REASON.value,
                    "placeholder": kit.plain("Pick a reason", 150),
                    "options": options,
                },
            },
            _note_input("What should it have said? (helps the AI learn)"),
        ],
    }


def edit_modal(
    card: ReviewCard,
    *,
    categories: Mapping[str, Sequence[str]],
    priorities: Sequence[str],
    channel: str,
    ts: str,
) -> dict[str, Any]:
    """The Edit dialog: the reply (prefilled with the draft), the case's labels and a note; submitting sends."""
    blocks: list[dict[str, Any]] = [
        kit.section("modal_case", _case_line(card)),
        kit.section("modal_message", _labelled("Customer wrote", safe(card.message, _MODAL_MESSAGE_MAX) or "_(empty)_")),
    ]
    reply: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ModalBlock.REPLY.value,
        "multiline": True,
        "max_length": mrkdwn.PLAIN_INPUT_MAX,
    }
    prefill = truncate(card.draft or "", mrkdwn.PLAIN_INPUT_MAX, suffix="")
    if prefill:
        reply["initial_value"] = prefill
    blocks.append(
        {"type": "input", "block_id": ModalBlock.REPLY.value, "label": kit.plain("Reply", 2000), "element": reply}
    )
    if prefill != (card.draft or ""):
        # The reviewer must know: what is in the box is exactly what will be sent.
        blocks.append(
            kit.context(
                "reply_cut",
                f":warning: The draft is {len(card.draft or ''):,} characters; Slack lets this box hold "
                f"{mrkdwn.PLAIN_INPUT_MAX:,}, so only its first {len(prefill):,} are here. "
                "What you send is what is in the box.",
            )
        )

    category_options, categories_cut = _category_options(categories, card.category)
    if category_options:
        blocks.append(_select("Category", ModalBlock.CATEGORY, category_options, card.category))
        if categories_cut:
            blocks.append(kit.context("category_cut", f"Only {len(category_options)} categories fit in a Slack menu."))
    groups, subcategories_cut = _subcategory_groups(categories, card.category)
    if groups:
        blocks.append(_grouped_select("Subcategory", ModalBlock.SUBCATEGORY, groups, card.subcategory))
    if subcategories_cut:
        listed = "only the current category's are listed" if groups else "none are listed until the case has a category"
        blocks.append(kit.context("subcategory_cut", f"Too many subcategories for one Slack menu: {listed}."))
    priority_options = [_option(p, p) for p in _dedupe(priorities) if len(p) <= mrkdwn.OPTION_VALUE]
    if priority_options:
        blocks.append(
            _select("Priority", ModalBlock.PRIORITY, priority_options[: mrkdwn.OPTIONS_PER_SELECT], card.priority)
        )
    blocks.append(_note_input("Note for the team (not sent to the customer)"))
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK_ID,
        "title": kit.plain("Edit and send", mrkdwn.MODAL_TITLE),
        "submit": kit.plain("Send", mrkdwn.MODAL_TITLE),
        "close": kit.plain("Cancel", mrkdwn.MODAL_TITLE),
        "private_metadata": _modal_ref(card, channel, ts).to_metadata(),
        "blocks": blocks,
    }


def outcome_text(review_status: str | None, comments: str | None) -> str | None:
    """What became of the case's review, as the card's status line says it (None while undecided)."""
    outcome = _OUTCOMES.get(review_status or "")
    if outcome and comments:
        outcome = f"{outcome}: {comments}"
    return outcome


def no_longer_waiting_text(state: str | None) -> str:
    """Ephemeral answer to a click on a case that has moved on (sent, escalated, closed)."""
    label = kit.state_label(state) if state else "decided"
    return f"This case is no longer waiting for review (it is {escape(label.lower())})."


def refusal_text(user_id: str) -> str:
    """Ephemeral answer to someone outside the reviewer group who pressed a card button."""
    who = f"<@{user_id}>, only" if kit.is_user_id(user_id) else "Only"
    return f"{who} reviewers can act on review cards. Ask a CX admin to add you to the reviewer group."


def lost_race_text(winner: str | None, action: str, *, at: datetime | None = None) -> str:
    """Ephemeral answer to the second of two reviewers who acted on one card at the same moment."""
    who = f"<@{winner}>" if winner and kit.is_user_id(winner) else "Someone else"
    did = _PAST_TENSE.get(action.removeprefix("review_")) or safe(one_line(action), kit.SHORT_TEXT_MAX)
    when = f" at {kit.slack_date(at)}" if at else ""
    return f"{who} already {did} this{when}, so your action was not applied. The card shows where it stands now."


def _header_text(card: ReviewCard) -> str:
    # plain_text: Slack parses no markup here, so the labels need no escaping, only a length bound.
    emoji = _PRIORITY_EMOJI.get(card.priority, ":white_circle:")
    parts = [f"{emoji} {one_line(card.short_id)}", one_line(card.priority or "no priority")]
    label = " / ".join(one_line(x) for x in (card.category, card.subcategory) if x)
    if label:
        parts.append(label)
    return " · ".join(parts)


def _fact_fields(card: ReviewCard) -> list[dict[str, Any]]:
    budget = mrkdwn.SECTION_FIELD_TEXT - 50
    customer = " ".join(
        part
        for part in (
            safe(one_line(card.customer_name or ""), budget // 2),
            f"({safe(card.customer_email.strip(), budget // 2)})" if card.customer_email else "",
        )
        if part
    )
    confidence = f"{card.confidence:.0%}" if card.confidence is not None else "n/a"
    facts = [
        ("Customer", customer or "unknown"),
        ("Tier", safe(one_line(card.tier or ""), 100) or "n/a"),
        ("AI confidence", confidence),
        ("State", escape(kit.state_label(card.state))),
        ("Owner", kit.who(card.owner, none="the bot")),
    ]
    return [kit.mrkdwn_text(f"*{name}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for name, value in facts]


def _message_text(card: ReviewCard) -> str:
    head = "*Customer message*\n"
    if card.subject and card.subject.strip():
        head = f"*Subject:* {safe(one_line(card.subject), _SUBJECT_MAX)}\n{head}"
    return _cut_section(head, card.message, "_Cut here: the full message is in the thread._")


def _draft_text(card: ReviewCard) -> str:
    if not card.draft or not card.draft.strip():
        return "*AI draft*\n_No draft. Use Edit to write the reply yourself._"
    return _cut_section("*AI draft*\n", card.draft, "_Cut here: the full draft is in Edit._")


def _cut_section(head: str, untrusted: str, cut_note: str) -> str:
    """head + the escaped text, cut (with a note saying where the rest is) so the whole fits in one section."""
    body = escape(untrusted) if untrusted.strip() else "_(empty)_"
    whole = head + body
    if len(whole) <= mrkdwn.SECTION_TEXT:
        return whole
    note = "\n" + cut_note
    return head + truncate(body, mrkdwn.SECTION_TEXT - len(head) - len(note)) + note


def _citations_text(citations: Sequence[tuple[str, str | None]]) -> str:
    lines = ["*Knowledge base sources*"]
    size = len(lines[0])
    left_out = 0
    for title, url in citations:
        line = f"• {kit.link(url, safe(one_line(title), _CITATION_TITLE_MAX) or 'untitled')}"
        # Whole lines or nothing: a link cut in half would show its raw markup.
        if len(lines) > _CITATIONS_SHOWN or size + 1 + len(line) > mrkdwn.SECTION_TEXT - _MORE_LINE_MAX:
            left_out += 1
            continue
        lines.append(line)
        size += 1 + len(line)
    if left_out:
        lines.append(f"_…and {left_out} more_")
    return "\n".join(lines)


def _status_text(card: ReviewCard) -> str:
    parts = [escape(kit.state_label(card.state)), f"owner {kit.who(card.owner, none='the bot')}"]
    if card.outcome:
        done = safe(one_line(card.outcome), _OUTCOME_MAX)
        if card.acted_by:
            done += f" by {kit.who(card.acted_by, none='')}"
        if card.acted_at:
            done += f" {kit.slack_date(card.acted_at)}"
        parts.append(done)
    if card.state == "escalated" or card.jira_key:
        if card.jira_key:
            parts.append(f"Jira {kit.link(card.jira_url, safe(one_line(card.jira_key), kit.SHORT_TEXT_MAX))}")
        else:
            parts.append("Jira issue not created yet")
    if card.state == "resolved":
        parts.append(resolved_text(card.resolution_type, card.resolved_by, card.resolved_at))
    if card.csat is not None:
        parts.append(csat_text(card.csat))
    return " · ".join(parts)


def resolved_text(resolution_type: str | None, resolved_by: str | None, resolved_at: datetime | None) -> str:
    """How and by whom a case was resolved, for the card's status line."""
    text = f"Resolved by {kit.who(resolved_by, none='')}" if resolved_by else "Resolved automatically (the customer did not write back)"
    if resolved_at:
        text += f" {kit.slack_date(resolved_at)}"
    label = RESOLUTION_LABELS.get(resolution_type or "")
    return f"{text} ({label})" if label else text


def csat_text(score: int) -> str:
    return f"CSAT {':star:' * score} {score}/5"


def _buttons(card: ReviewCard) -> list[dict[str, Any]]:
    value = card_ref(card).to_value()
    buttons = _review_buttons(card, value) if card.actionable else []
    if card.resolvable:
        resolve = _button("Mark resolved", CardButton.RESOLVE, value)
        resolve["confirm"] = {
            "title": kit.plain("Mark resolved?", 100),
            "text": kit.plain(f"{one_line(card.short_id)} is closed as resolved; the customer is not told. "
                              "If they write again, it reopens.", 300),
            "confirm": kit.plain("Mark resolved", 30),
            "deny": kit.plain("Cancel", 30),
        }
        buttons.append(resolve)
    return buttons


def _review_buttons(card: ReviewCard, value: str) -> list[dict[str, Any]]:
    buttons = []
    if card.draft and card.draft.strip() and card.draft_id is not None:
        buttons.append(_button("Approve & send", CardButton.APPROVE, value, style="primary"))
    buttons.append(_button("Edit", CardButton.EDIT, value))
    buttons.append(_button("Reject", CardButton.REJECT, value, style="danger"))
    buttons.append(_button("Escalate", CardButton.ESCALATE, value))
    if card.owner is None:
        buttons.append(_button("Take it", CardButton.TAKE, value))
    return buttons


def _button(text: str, action: CardButton, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action.value,
        "text": kit.plain(text, mrkdwn.BUTTON_TEXT),
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _case_line(card: ReviewCard) -> str:
    line = f"*{safe(one_line(card.short_id), kit.SHORT_TEXT_MAX)}*"
    if card.subject and card.subject.strip():
        line += f": {safe(one_line(card.subject), _SUBJECT_MAX)}"
    return line


def _note_input(label: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": ModalBlock.NOTE.value,
        "optional": True,
        "label": kit.plain(label, 2000),
        "element": {
            "type": "plain_text_input",
            "action_id": ModalBlock.NOTE.value,
            "multiline": True,
            "max_length": mrkdwn.PLAIN_INPUT_MAX,
        },
    }


def _category_options(
    categories: Mapping[str, Sequence[str]], current: str | None
) -> tuple[list[dict[str, Any]], bool]:
    # An option's value carries the category back, so a key Slack cannot hold (over 150) cannot be offered.
    names = [name for name in categories if name and len(name) <= mrkdwn.OPTION_VALUE]
    cut = len(names) > mrkdwn.OPTIONS_PER_SELECT
    if cut:
        kept = names[: mrkdwn.OPTIONS_PER_SELECT]
        if current in names and current not in kept:
            kept[-1] = current
        names = kept
    return [_option(name, name) for name in names], cut


def _subcategory_groups(
    categories: Mapping[str, Sequence[str]], current: str | None
) -> tuple[list[tuple[str, list[str]]], bool]:
    seen: set[str] = set()
    groups: list[tuple[str, list[str]]] = []
    for category, subs in categories.items():
        # One value per subcategory: a label repeated under two categories keeps its first place.
        kept = [s for s in _dedupe(subs) if s and len(s) <= mrkdwn.OPTION_VALUE and s not in seen]
        seen.update(kept)
        if kept and category:
            groups.append((category, kept))
    total = sum(len(subs) for _, subs in groups)
    if total <= mrkdwn.OPTIONS_PER_SELECT and len(groups) <= mrkdwn.OPTIONS_PER_SELECT:
        return groups, False
    mine = [(category, subs[: mrkdwn.OPTIONS_PER_SELECT]) for category, subs in groups if category == current]
    return mine, True


def _select(label: str, block: ModalBlock, options: list[dict[str, Any]], current: str | None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "static_select", "action_id": block.value, "options": options}
    initial = next((o for o in options if o["value"] == current), None)
    if initial is not None:
        element["initial_option"] = initial
    return {"type": "input", "block_id": block.value, "label": kit.plain(label, 2000), "element": element}


def _grouped_select(
    label: str, block: ModalBlock, groups: list[tuple[str, list[str]]], current: str | None
) -> dict[str, Any]:
    option_groups: list[dict[str, Any]] = [
        {"label": kit.plain(category, mrkdwn.OPTION_TEXT), "options": [_option(s, s) for s in subs]}
        for category, subs in groups
    ]
    element: dict[str, Any] = {"type": "static_select", "action_id": block.value, "option_groups": option_groups}
    initial = next((o for g in option_groups for o in g["options"] if o["value"] == current), None)
    if initial is not None:
        element["initial_option"] = initial
    # Optional: a category may have no subcategories, and the reviewer must still be able to submit.
    return {
        "type": "input",
        "block_id": block.value,
        "optional": True,
        "label": kit.plain(label, 2000),
        "element": element,
    }


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": kit.plain(text, mrkdwn.OPTION_TEXT), "value": value}






def _labelled(label: str, escaped_text: str) -> str:
    return f"*{label}*\n{escaped_text or '_(empty)_'}"
















def _modal_ref(card: ReviewCard, channel: str, ts: str) -> ModalRef:
    return ModalRef(card.case_id, card.draft_id, card.review_id, channel, ts)


def _compact(data: Mapping[str, UUID | str | None]) -> str:
    plain = {key: (str(value) if isinstance(value, UUID) else value) for key, value in data.items()}
    return json.dumps(plain, separators=(",", ":"))


def _uuid_or_none(value: object) -> UUID | None:
    return UUID(str(value)) if value else None


def _dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
