"""Pure Block Kit builders for `/case` and `/kb`: a case in detail, lists of cases, the review
queue's size, knowledge-base results and their Share button. Data in, Slack JSON out; no I/O.
Every text that came from a customer, the AI, the knowledge base or the person typing is escaped."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from handlers import blocks as kit
from handlers import mrkdwn
from handlers.mrkdwn import escape, one_line, safe, truncate
from handlers.review_card import ACTIONS_BLOCK_ID, RESOLUTION_LABELS, ReviewCard, csat_text, review_card_blocks

KB_SHARE_ACTION = "kb_share"
KB_ACTIONS_BLOCK_ID = "kb_actions"

_INTERACTIONS = {
    "email_in": "Email from the customer",
    "email_out": "Reply sent",
    "webhook_in": "Received by webhook",
    "callback_out": "Reply sent by callback",
    "slack_in": "Received in Slack",
    "import": "Imported",
    "note": "Note",
    "triage": "Triaged",
    "draft": "Draft written",
    "review_action": "Review",
    "assignment": "Assigned",
    "escalation": "Escalated",
    "csat": "Satisfaction rating",
}
_ACTORS = {"ai": "the AI", "system": "the system", "customer": "the customer"}


_SUBJECT_MAX = 200
_EMAIL_MAX = 120
_QUERY_MAX = 200
_MESSAGE_MAX = 700
_SUMMARY_MAX = 600
_DRAFT_MAX = 1500
_TIMELINE_MESSAGE_MAX = 120
_TITLE_MAX = 150
_SNIPPET_MAX = 500
_CUT_NOTE = 60  # room kept for a "…and N more" line


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    at: datetime
    actor_type: str
    kind: str
    actor_id: str | None = None
    message: str | None = None
    from_status: str | None = None
    to_status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseDetail:
    """One case, as `/case` shows it. Text fields are untrusted."""

    case_id: UUID
    short_id: int
    status: str
    channel: str
    description: str
    created_at: datetime
    customer_email: str
    reviewable: bool = False  # a reviewer can act on it: the review card's buttons show here too
    subject: str | None = None
    summary: str | None = None
    category: str | None = None
    subcategory: str | None = None
    priority: str | None = None
    confidence: float | None = None  # 0.0-1.0
    owner: str | None = None  # Slack user id; None: the bot owns the case
    jira_issue_key: str | None = None
    customer_name: str | None = None
    tier: str | None = None
    draft_id: UUID | None = None
    draft: str | None = None
    drafted_at: datetime | None = None
    review_id: UUID | None = None
    resolvable: bool = False  # a reviewer can mark it resolved: the card's Mark resolved button shows here too
    resolution_type: str | None = None
    resolved_at: datetime | None = None
    csat: int | None = None  # the customer's score, 1-5
    timeline: tuple[TimelineEntry, ...] = ()  # the latest entries, oldest first
    timeline_total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseLine:
    """One case in a list."""

    case_id: UUID
    short_id: int
    status: str
    customer_email: str
    created_at: datetime
    subject: str | None = None
    priority: str | None = None
    category: str | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseAnswer:
    """What a lookup found: the case itself (`case`), or a list of `total` matches of which `matches` are the best."""

    case: CaseDetail | None = None
    matches: tuple[CaseLine, ...] = ()
    total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSize:
    awaiting_review: int
    oldest_wait: timedelta | None
    human_owned: int
    escalated: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MyCases:
    cases: tuple[CaseLine, ...]
    total: int
    queue: QueueSize


@dataclass(frozen=True, slots=True, kw_only=True)
class KbResult:
    """One knowledge-base article with the chunk that matched. Text fields are untrusted."""

    article_id: UUID
    chunk_id: UUID
    title: str
    url: str | None
    snippet: str
    score: float | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class KbShare:
    """What the Share button carries back: the query and the results, as (article, chunk) ids, so
    that the shared post shows exactly what the person saw without searching again."""

    query: str
    refs: tuple[tuple[UUID, UUID], ...]

    def to_value(self) -> str:
        refs = [[a.hex, c.hex] for a, c in self.refs]
        query = self.query
        value = _json({"q": query, "r": refs})
        # Cut the query (never the ids) until the value fits: JSON escapes can make it longer than its text.
        while len(value) > mrkdwn.BUTTON_VALUE:
            query = query[: max(0, len(query) - (len(value) - mrkdwn.BUTTON_VALUE) - 1)]
            value = _json({"q": query, "r": refs})
        return value

    @classmethod
    def from_value(cls, value: str) -> KbShare:
        data = json.loads(value)
        return cls(str(data["q"]), tuple((UUID(a), UUID(c)) for a, c in data["r"]))


@dataclass(frozen=True, slots=True)
class Reply:
    """A message: its blocks and the fallback text notifications and screen readers use."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


# ---- a case --------------------------------------------------------------------------------------------------


def case_reply(case: CaseDetail) -> Reply:
    """The case: facts, the customer's message, the latest draft, the timeline, and the review
    card's buttons while a reviewer can still act."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": "case_header", "text": kit.plain(_header(case), mrkdwn.HEADER_TEXT)},
        {"type": "section", "block_id": "case_facts", "fields": _facts(case)},
        kit.section("case_message", _message(case)),
    ]
    if case.summary and case.summary.strip():
        blocks.append(kit.section("case_summary", f"*AI summary*\n{safe(case.summary, _SUMMARY_MAX)}"))
    blocks.append(kit.section("case_draft", _draft(case)))
    blocks.append(kit.section("case_timeline", _timeline(case)))
    actions = _review_actions(case)
    if actions is not None:
        blocks.append(actions)
    note = f"Case id `{case.case_id}`"
    if actions is not None:
        note += " · The buttons act as on the review card; this message does not change. Run `/case` again to see."
    blocks.append(kit.context("case_note", note))
    about = safe(one_line(case.subject or ""), 100) or "case"
    return Reply(_fallback(f"{case_ref(case.short_id)}: {about}"), blocks)


def case_ref(short_id: int) -> str:
    return f"CX-{short_id}"


def _header(case: CaseDetail) -> str:
    # plain_text: Slack parses no markup there, and only our own labels go in (no customer text).
    parts = [case_ref(case.short_id), kit.state_label(case.status)]
    if case.priority:
        parts.append(one_line(case.priority))
    label = " / ".join(one_line(x) for x in (case.category, case.subcategory) if x)
    if label:
        parts.append(label)
    return " · ".join(parts)


def _facts(case: CaseDetail) -> list[dict[str, Any]]:
    customer = safe(one_line(case.customer_email), _EMAIL_MAX)
    if case.customer_name and case.customer_name.strip():
        customer = f"{safe(one_line(case.customer_name), _EMAIL_MAX)} ({customer})"
    if case.tier:
        customer += f" · {safe(one_line(case.tier), kit.SHORT_TEXT_MAX)}"
    category = " / ".join(safe(one_line(x), kit.SHORT_TEXT_MAX) for x in (case.category, case.subcategory) if x)
    facts = [
        ("State", escape(kit.state_label(case.status))),
        ("Owner", kit.who(case.owner, none="the bot")),
        ("Customer", customer),
        ("Priority", safe(one_line(case.priority or ""), kit.SHORT_TEXT_MAX) or "not triaged"),
        ("Category", category or "not triaged"),
        ("AI confidence", f"{case.confidence:.0%}" if case.confidence is not None else "n/a"),
        ("Opened", f"{kit.slack_date(case.created_at)} via {safe(one_line(case.channel), kit.SHORT_TEXT_MAX)}"),
    ]
    if case.jira_issue_key:
        facts.append(("Jira", safe(one_line(case.jira_issue_key), kit.SHORT_TEXT_MAX)))
    if case.resolved_at:
        how = RESOLUTION_LABELS.get(case.resolution_type or "")
        facts.append(("Resolved", kit.slack_date(case.resolved_at) + (f"\n{how}" if how else "")))
    if case.csat is not None:
        facts.append(("Satisfaction", csat_text(case.csat)))
    return [kit.mrkdwn_text(f"*{name}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for name, value in facts]


def _message(case: CaseDetail) -> str:
    head = "*Customer message*\n"
    if case.subject and case.subject.strip():
        head = f"*Subject:* {safe(one_line(case.subject), _SUBJECT_MAX)}\n{head}"
    body = safe(case.description, _MESSAGE_MAX) if case.description.strip() else "_(empty)_"
    return head + body


def _draft(case: CaseDetail) -> str:
    if not case.draft or not case.draft.strip():
        return "*Latest draft*\n_No draft yet._"
    head = "*Latest draft*" + (f" · {kit.slack_date(case.drafted_at)}" if case.drafted_at else "") + "\n"
    body = escape(case.draft)
    if len(body) > _DRAFT_MAX:
        body = truncate(body, _DRAFT_MAX) + "\n_Cut here: the whole draft is on the review card and in Edit._"
    return head + body


def _timeline(case: CaseDetail) -> str:
    shown = len(case.timeline)
    head = "*Timeline*"
    if case.timeline_total > shown:
        head += f" (the latest {shown} of {case.timeline_total})"
    if not case.timeline:
        return head + "\n_Nothing yet._"
    return _whole_lines(head, [_timeline_line(entry) for entry in case.timeline])


def _timeline_line(entry: TimelineEntry) -> str:
    if entry.kind == "status_change" and entry.to_status:
        what = f"{kit.state_label(entry.from_status or 'new')} → {kit.state_label(entry.to_status)}"
        what = escape(what)
    else:
        what = _INTERACTIONS.get(entry.kind) or safe(one_line(entry.kind.replace("_", " ")), kit.SHORT_TEXT_MAX)
    line = f"• {kit.slack_date(entry.at)} · {what} · {_actor(entry)}"
    if entry.message and entry.message.strip():
        line += f": {safe(one_line(entry.message), _TIMELINE_MESSAGE_MAX)}"
    return line


def _actor(entry: TimelineEntry) -> str:
    if entry.actor_id and kit.is_user_id(entry.actor_id):
        return f"<@{entry.actor_id}>"
    return _ACTORS.get(entry.actor_type) or safe(one_line(entry.actor_type), kit.SHORT_TEXT_MAX)


def _review_actions(case: CaseDetail) -> dict[str, Any] | None:
    """The review card's own actions block, so that the buttons, their ids and values are exactly the card's."""
    if not case.reviewable and not case.resolvable:
        return None
    card = ReviewCard(
        case_id=case.case_id, short_id=case_ref(case.short_id), priority=case.priority,
        review_reason="", message="", state=case.status, actionable=case.reviewable, draft_id=case.draft_id,
        draft=case.draft, owner=case.owner, review_id=case.review_id, resolvable=case.resolvable,
    )
    return next((b for b in review_card_blocks(card) if b.get("block_id") == ACTIONS_BLOCK_ID), None)


# ---- lists of cases ------------------------------------------------------------------------------------------


def matches_reply(looked_for: str, answer: CaseAnswer) -> Reply:
    """Several cases matched: the best of them, one section each. `looked_for` is what the person typed."""
    what = f"“{safe(one_line(looked_for), _QUERY_MAX)}”"
    blocks: list[dict[str, Any]] = [
        kit.section("matches_head", f"*{_matches(answer.total)}* {what}"),
        *(_case_line_block(f"match_{i}", line) for i, line in enumerate(answer.matches)),
    ]
    hint = "Type `/case CX-1234` for a case's details."
    if answer.total > len(answer.matches):
        hint = (f"Showing {len(answer.matches)} of {answer.total}. Add words, use \"a phrase\" or -word to narrow "
                "it down. " + hint)
    blocks.append(kit.context("matches_hint", hint))
    return Reply(_fallback(f"{_matches(answer.total)} {what}"), blocks)


def not_found_reply(text: str) -> Reply:
    """`text` is mrkdwn: ours, with any untrusted part escaped by the caller."""
    return Reply(_fallback(text), [kit.section("not_found", truncate(text, mrkdwn.SECTION_TEXT))])


def my_cases_reply(user_id: str, mine: MyCases) -> Reply:
    """`/case` alone: the person's open cases and how the review queue stands."""
    if mine.cases:
        head = f"*Your open cases* ({_count(mine.total, 'open case')}, latest change first)"
    else:
        head = "*You own no open cases.* Cases become yours when you take or reject them on a review card."
    blocks: list[dict[str, Any]] = [
        kit.section("mine_head", head),
        *(_case_line_block(f"mine_{i}", line) for i, line in enumerate(mine.cases)),
    ]
    if mine.total > len(mine.cases):
        blocks.append(kit.context("mine_more", f"…and {mine.total - len(mine.cases)} more."))
    blocks.append({"type": "divider", "block_id": "mine_divider"})
    blocks.append({"type": "section", "block_id": "queue", "fields": _queue_fields(mine.queue)})
    blocks.append(kit.context("mine_hint", "Look a case up with `/case CX-1234`, `/case customer@example.com` or "
                                        "`/case some words`."))
    text = f"You have {_count(mine.total, 'open case')}; {_count(mine.queue.awaiting_review, 'case')} awaiting review."
    return Reply(_fallback(text), blocks)


def _queue_fields(queue: QueueSize) -> list[dict[str, Any]]:
    waiting = str(queue.awaiting_review)
    if queue.awaiting_review and queue.oldest_wait is not None:
        waiting += f" (oldest waiting {_duration(queue.oldest_wait)})"
    facts = [("Awaiting review", waiting), ("With a person", str(queue.human_owned)),
             ("Escalated", str(queue.escalated))]
    return [kit.mrkdwn_text(f"*{name}*\n{value}", mrkdwn.SECTION_FIELD_TEXT) for name, value in facts]


def _case_line_block(block_id: str, line: CaseLine) -> dict[str, Any]:
    facts = [f"*{case_ref(line.short_id)}*", escape(kit.state_label(line.status))]
    facts += [safe(one_line(x), kit.SHORT_TEXT_MAX) for x in (line.priority, line.category) if x]
    if line.owner:
        facts.append(f"owner {kit.who(line.owner, none='the bot')}")
    subject = safe(one_line(line.subject or ""), _SUBJECT_MAX) or "_(no subject)_"
    about = f"{subject} — {safe(one_line(line.customer_email), _EMAIL_MAX)} · opened {kit.slack_date(line.created_at)}"
    return kit.section(block_id, " · ".join(facts) + "\n" + about)


# ---- help ----------------------------------------------------------------------------------------------------


def case_help_reply(typed: str = "") -> Reply:
    lines = []
    if typed.strip():
        lines.append(f"I could not read “{safe(one_line(typed), _QUERY_MAX)}” as a case.")
    lines += [
        "*Look up a case*",
        "• `/case CX-1234` or `/case 1234`: the case with that short id",
        "• `/case 5f0c6a4e-…`: the case with that full id",
        "• `/case customer@example.com`: the customer's cases",
        "• `/case card not arrived`: cases whose subject and message contain all those words "
        "(also \"a phrase\", `or`, and -word to leave a word out)",
        "• `/case`: your open cases and the review queue",
    ]
    return Reply("How to use /case", [kit.section("help", "\n".join(lines))])


def kb_help_reply() -> Reply:
    text = ("*Search the knowledge base*\n• `/kb how long does a card take to arrive`: the five best articles, "
            "with a Share button that posts them in the channel")
    return Reply("How to use /kb", [kit.section("help", text)])


# ---- knowledge base ------------------------------------------------------------------------------------------


def kb_results_reply(query: str, results: Sequence[KbResult]) -> Reply:
    """The search's results, only for the person who searched, with a button to share them."""
    what = f"“{safe(one_line(query), _QUERY_MAX)}”"
    if not results:
        return Reply(_fallback(f"No article matches {what}"),
                     [kit.section("kb_head", f"No published article matches {what}. Try other words.")])
    blocks: list[dict[str, Any]] = [kit.section("kb_head", f"*Knowledge base: {what}*")]
    blocks += [kit.section(f"kb_{i}", _result_text(i + 1, r, with_score=True)) for i, r in enumerate(results)]
    share = KbShare(query, tuple((r.article_id, r.chunk_id) for r in results))
    blocks.append({
        "type": "actions",
        "block_id": KB_ACTIONS_BLOCK_ID,
        "elements": [{
            "type": "button",
            "action_id": KB_SHARE_ACTION,
            "text": kit.plain("Share in channel", mrkdwn.BUTTON_TEXT),
            "value": share.to_value(),
        }],
    })
    blocks.append(kit.context("kb_note", "Only you can see this. Scores are the search's fused rank score: "
                                      "higher is a better match."))
    return Reply(_fallback(f"{_count(len(results), 'article')} for {what}"), blocks)


def kb_shared_reply(user_id: str, query: str, results: Sequence[KbResult]) -> Reply:
    """The post in the channel: who shared, what they searched for, and the articles."""
    who = kit.who(user_id, none="Someone")
    what = f"“{safe(one_line(query), _QUERY_MAX)}”"
    blocks: list[dict[str, Any]] = [kit.section("kb_shared_head", f"{who} shared knowledge-base articles for {what}:")]
    blocks += [kit.section(f"kb_{i}", _result_text(i + 1, r, with_score=False)) for i, r in enumerate(results)]
    return Reply(_fallback(f"{who} shared {_count(len(results), 'knowledge-base article')}"), blocks)


def kb_gone_text() -> str:
    return "Those articles are no longer published, so there is nothing to share. Search again with `/kb`."


def kb_cannot_post_text() -> str:
    return "I cannot post in this conversation. Invite me to the channel first, then press Share again."


def _result_text(n: int, result: KbResult, *, with_score: bool) -> str:
    title = safe(one_line(result.title), _TITLE_MAX) or "untitled"
    head = f"*{n}. {kit.link(result.url, title)}*"
    extra = []
    if with_score and result.score is not None:
        extra.append(f"score {result.score:.4f}")
    if result.category:
        extra.append(safe(one_line(result.category), kit.SHORT_TEXT_MAX))
    if extra:
        head += " · " + " · ".join(extra)
    snippet = safe(one_line(result.snippet), _SNIPPET_MAX)
    return head + (f"\n>{snippet}" if snippet else "")


# ---- shared pieces -------------------------------------------------------------------------------------------


def _whole_lines(head: str, lines: Sequence[str]) -> str:
    """head and as many whole lines as fit one section: a line cut in half could show raw markup."""
    kept, size = [head], len(head)
    for line in lines:
        if size + 1 + len(line) > mrkdwn.SECTION_TEXT - _CUT_NOTE:
            break
        kept.append(line)
        size += 1 + len(line)
    left_out = len(lines) - (len(kept) - 1)
    if left_out:
        kept.append(f"_…and {left_out} more that do not fit here_")
    return "\n".join(kept)










def _fallback(escaped_text: str) -> str:
    # The top-level text is mrkdwn too (notifications): callers escape untrusted parts; kept short.
    return truncate(one_line(escaped_text), 150)


def _matches(n: int) -> str:
    return f"{n} case matches" if n == 1 else f"{n} cases match"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")










def _duration(wait: timedelta) -> str:
    minutes = max(0, int(wait.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
