"""The review card and its modals: valid Block Kit within Slack's limits, whatever customers and the AI write."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from slack_sdk.models.views import View

from handlers import mrkdwn
from handlers.mrkdwn import escape, truncate
from handlers.review_card import (
    ACTIONS_BLOCK_ID,
    EDIT_CALLBACK_ID,
    REJECT_CALLBACK_ID,
    CardButton,
    CardRef,
    ModalRef,
    ReviewCard,
    card_fallback_text,
    edit_modal,
    lost_race_text,
    refusal_text,
    reject_modal,
    review_card_blocks,
)
from tests.support.blocks import assert_valid_blocks, text_objects

CASE_ID = UUID("11111111-1111-4111-8111-111111111111")
DRAFT_ID = UUID("22222222-2222-4222-8222-222222222222")
REVIEW_ID = UUID("33333333-3333-4333-8333-333333333333")
OWNER = "U0OWNER01"
ACTOR = "U0ACTOR01"
KB_URL = "https://kb.example.com/refunds?lang=en&v=2"
JIRA_URL = "https://jira.example.com/browse/SUP-12"
ACTED_AT = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)

HOSTILE = "Hi <!channel> and <!here>, ask <@U123> in <#C1> or see <https://evil.example|bank.com>. &lt; is literal."
CATEGORIES = {"billing": ["refund", "invoice"], "technical": ["bug", "outage"], "account": []}
PRIORITIES = ["urgent", "high", "medium", "low"]

ALL_STATES = [
    "new",
    "triaged",
    "drafting",
    "awaiting_review",
    "sending",
    "replied",
    "resolved",
    "closed",
    "human_owned",
    "escalated",
    "reopened",
]


def make_card(**changes: Any) -> ReviewCard:
    card = ReviewCard(
        case_id=CASE_ID,
        short_id="CX-1A2B3C",
        priority="urgent",
        category="billing",
        subcategory="refund",
        customer_name="Ada Lovelace",
        customer_email="ada@example.com",
        tier="enterprise",
        confidence=0.62,
        review_reason="Confidence below the auto-send threshold",
        summary="Customer asks for a refund of a duplicate charge.",
        subject="Charged twice",
        message="I was charged twice this month. Please refund one of the charges.",
        draft_id=DRAFT_ID,
        draft="Sorry about the double charge: we have refunded it.",
        citations=(("Refund policy", KB_URL),),
        state="awaiting_review",
        actionable=True,
        owner=None,
        outcome=None,
        acted_by=None,
        acted_at=None,
        jira_key=None,
        jira_url=None,
        review_id=REVIEW_ID,
    )
    return replace(card, **changes)


def hostile_card(**changes: Any) -> ReviewCard:
    """Everything a customer or the model controls is hostile and oversized; our own ids are real."""
    fields: dict[str, Any] = dict(
        customer_name="Eve <@U123> <!channel>",
        customer_email="eve@example.com<!here>",
        tier="<!everyone> gold",
        review_reason=f"Model said: {HOSTILE}",
        summary=f"Summary: {HOSTILE} " * 40,
        subject=(HOSTILE + " ") * 20 + "S" * 2000,
        message=(HOSTILE + " ") * 600,  # about 60 kB
        draft=(f"Dear customer, {HOSTILE} " * 100)[:10_000],
        citations=(
            (f"Refunds {HOSTILE}", KB_URL),
            ("Script", "javascript:alert(1)"),
            ("Piped", "https://kb.example.com/a|<!channel>"),
            ("Spaced", "https://kb.example.com/a b"),
            (HOSTILE, None),
        ),
        owner=OWNER,
        outcome=f"Rejected: {HOSTILE}",
        acted_by=ACTOR,
        acted_at=ACTED_AT,
    )
    fields.update(changes)
    return make_card(**fields)


def assert_valid_modal(view: dict[str, Any]) -> None:
    View(**view).validate_json()
    assert View(**view).to_dict() == view
    assert len(view["title"]["text"]) <= mrkdwn.MODAL_TITLE
    assert len(view["submit"]["text"]) <= mrkdwn.MODAL_TITLE
    assert len(view["close"]["text"]) <= mrkdwn.MODAL_TITLE
    assert len(view["private_metadata"]) <= mrkdwn.PRIVATE_METADATA
    assert_valid_blocks(view["blocks"], max_blocks=mrkdwn.BLOCKS_PER_VIEW)


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [t["text"] for t in text_objects(blocks) if t["type"] == "mrkdwn"]


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) <= 1
    return {e["action_id"]: e for a in actions for e in a["elements"]}


# ---------------------------------------------------------------- mrkdwn


def test_escape_replaces_exactly_slacks_three_control_characters():
    assert escape("<!channel> & <@U1> > *bold*") == "&lt;!channel&gt; &amp; &lt;@U1&gt; &gt; *bold*"
    # A literal entity the customer typed must survive as text, not decode into a control character.
    assert escape("&lt;!here&gt;") == "&amp;lt;!here&amp;gt;"
    assert escape("café ✓ @here #general") == "café ✓ @here #general"


def test_truncate_returns_short_text_unchanged():
    assert truncate("short enough", 12) == "short enough"
    assert truncate("", 0) == ""


def test_truncate_cuts_at_a_space_and_counts_the_suffix():
    text = "the quick brown fox jumps over the lazy dog"
    assert truncate(text, 20) == "the quick brown fox…"  # "fox" ends exactly where the room does
    assert truncate(text, 19) == "the quick brown…"
    assert truncate(text, 20, suffix=" [more]") == "the quick [more]"


def test_truncate_never_exceeds_its_limit_and_ends_on_a_word_boundary():
    rng = random.Random(20260304)
    alphabet = "abcdefgh &<>\n"
    for _ in range(3000):
        text = escape("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))
        limit = rng.randint(0, 130)
        suffix = rng.choice(["…", "", " (cut)"])
        cut = truncate(text, limit, suffix=suffix)
        assert len(cut) <= limit
        if len(text) <= limit:
            assert cut == text
            continue
        if limit <= len(suffix):
            assert cut == suffix[:limit]
            continue
        body = cut[: len(cut) - len(suffix)] if suffix else cut
        assert text.startswith(body)
        assert not re.search(r"&(a|am|amp|l|lt|g|gt)$", body), (text, body)  # no entity split
        room = limit - len(suffix)
        if room > 0 and " " in text[room // 2 + 1 : room + 1].replace("\n", " "):
            assert text[len(body)].isspace(), (text, limit, cut)


def test_truncate_never_splits_an_entity():
    text = escape("a" * 8 + " <" + "b" * 20)  # "aaaaaaaa &lt;bbbb…"
    for limit in range(10, 16):
        body = truncate(text, limit, suffix="")
        assert not body.endswith(("&", "&l", "&lt")), body
    assert truncate(escape("<<<<<<<<<<"), 13, suffix="") == "&lt;&lt;&lt;"


def test_truncate_cuts_inside_one_huge_word_rather_than_returning_nothing():
    text = "token " + "x" * 500
    cut = truncate(text, 100)
    assert len(cut) == 100 and cut.startswith("token x")


def test_truncate_handles_a_suffix_longer_than_the_limit():
    assert truncate("abcdef", 2, suffix="...") == ".."
    with pytest.raises(ValueError):
        truncate("abc", -1)


# ---------------------------------------------------------------- the card


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("make", [make_card, hostile_card], ids=["plain", "hostile"])
def test_every_card_is_valid_block_kit_within_slacks_limits(make, state):
    blocks = review_card_blocks(make(state=state))
    assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)


def test_a_minimal_card_is_valid():
    card = ReviewCard(
        case_id=CASE_ID, short_id="CX-000001", priority="low", review_reason="", message="", state="awaiting_review",
        actionable=True,
    )
    blocks = review_card_blocks(card)
    assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)
    assert set(buttons(blocks)) == {"review_edit", "review_reject", "review_escalate", "review_take"}


def test_customer_and_ai_text_cannot_mention_or_link_anyone():
    card = hostile_card(state="escalated", jira_key="SUP-12", jira_url=JIRA_URL)
    blocks = review_card_blocks(card)
    serialized = json.dumps(blocks) + card_fallback_text(card)
    for injected in ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<#C1>", "<https://evil", "<!channel", "|<"):
        assert injected not in serialized
    # Every `<…>` left is one we made from trusted ids: the owner, the actor, a date, the KB page, the Jira issue.
    allowed = re.compile(
        rf"<@({OWNER}|{ACTOR})>"
        r"|<!date\^\d+\^\{date_short_pretty\} \{time\}\|[0-9T:+-]+>"
        rf"|<{re.escape(escape(KB_URL))}\|[^<>|]*>"
        rf"|<{re.escape(JIRA_URL)}\|SUP-12>"
    )
    for text in mrkdwn_texts(blocks):
        for token in re.findall(r"<[^>]*>?", text):
            assert allowed.fullmatch(token), token
    assert all(t.get("verbatim") is True for t in text_objects(blocks) if t["type"] == "mrkdwn")
    # The literal "&lt;" the customer typed shows as typed.
    assert any("&amp;lt; is literal" in t for t in mrkdwn_texts(blocks))


def test_a_long_message_is_cut_to_one_section_with_a_pointer_to_the_thread():
    blocks = review_card_blocks(hostile_card())
    message = next(b for b in blocks if b["block_id"] == "card_message")["text"]["text"]
    assert len(message) <= mrkdwn.SECTION_TEXT
    assert len(message) > mrkdwn.SECTION_TEXT - 200  # cut, not dropped
    assert "full message is in the thread" in message
    assert "Subject:" in message

    short = review_card_blocks(make_card())
    message = next(b for b in short if b["block_id"] == "card_message")["text"]["text"]
    assert "in the thread" not in message
    assert "I was charged twice this month. Please refund one of the charges." in message


def test_a_long_draft_is_cut_with_a_pointer_to_edit():
    blocks = review_card_blocks(hostile_card())
    draft = next(b for b in blocks if b["block_id"] == "card_draft")["text"]["text"]
    assert len(draft) <= mrkdwn.SECTION_TEXT
    assert "full draft is in Edit" in draft
    short = next(b for b in review_card_blocks(make_card()) if b["block_id"] == "card_draft")["text"]["text"]
    assert "Sorry about the double charge: we have refunded it." in short
    assert "in Edit" not in short


def test_header_and_facts():
    blocks = review_card_blocks(make_card(confidence=0.87))
    header = blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"] == ":red_circle: CX-1A2B3C · urgent · billing / refund"
    facts = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "Ada Lovelace (ada@example.com)" in facts
    assert "87%" in facts and "enterprise" in facts and "Awaiting review" in facts and "the bot" in facts

    long = review_card_blocks(make_card(category="c" * 200, subcategory="s" * 200))
    assert len(long[0]["text"]["text"]) <= mrkdwn.HEADER_TEXT


def test_owner_is_a_mention_only_when_it_is_a_slack_user_id():
    taken = json.dumps(review_card_blocks(make_card(owner=OWNER)))
    assert f"<@{OWNER}>" in taken
    forged = json.dumps(review_card_blocks(make_card(owner="<!channel>", acted_by="U1|x>", outcome="Approved")))
    assert "<!channel>" not in forged and "<@U1|x>" not in forged
    assert "&lt;!channel&gt;" in forged


def test_buttons_while_awaiting_review_with_a_draft():
    blocks = review_card_blocks(make_card())
    actions = [b for b in blocks if b["type"] == "actions"]
    assert actions[0]["block_id"] == ACTIONS_BLOCK_ID
    found = buttons(blocks)
    # Mark resolved waits until a reviewer has taken or answered the case.
    assert list(found) == [a.value for a in CardButton if a is not CardButton.RESOLVE]
    assert found["review_approve"]["style"] == "primary"
    assert found["review_reject"]["style"] == "danger"
    assert found["review_approve"]["text"]["text"] == "Approve & send"
    for button in found.values():
        assert CardRef.from_value(button["value"]) == CardRef(CASE_ID, DRAFT_ID, REVIEW_ID)
        assert json.loads(button["value"]) == {
            "case_id": str(CASE_ID),
            "draft_id": str(DRAFT_ID),
            "review_id": str(REVIEW_ID),
        }


@pytest.mark.parametrize("draft", [None, "", "   \n"])
def test_without_a_draft_there_is_no_approve_but_edit_remains(draft):
    found = buttons(review_card_blocks(make_card(draft=draft, draft_id=None)))
    assert "review_approve" not in found
    assert "review_edit" in found
    value = json.loads(found["review_edit"]["value"])
    assert value["draft_id"] is None
    assert CardRef.from_value(found["review_edit"]["value"]).draft_id is None


def test_take_is_hidden_once_someone_owns_the_case():
    found = buttons(review_card_blocks(make_card(state="human_owned", owner=OWNER)))
    assert "review_take" not in found
    assert {"review_approve", "review_edit", "review_reject", "review_escalate"} <= set(found)


@pytest.mark.parametrize("state", ["sending", "replied", "resolved", "closed", "escalated", "new", "drafting"])
def test_spent_buttons_disappear_after_an_outcome(state):
    card = make_card(state=state, actionable=False, outcome="Approved and sent", acted_by=ACTOR, acted_at=ACTED_AT)
    blocks = review_card_blocks(card)
    assert buttons(blocks) == {}
    status = next(b for b in blocks if b["block_id"] == "card_status")["elements"][0]["text"]
    assert f"Approved and sent by <@{ACTOR}> <!date^{int(ACTED_AT.timestamp())}^" in status
    assert "|2026-03-04T05:06+00:00>" in status


def test_an_escalated_card_links_its_jira_issue():
    card = make_card(state="escalated", jira_key="SUP-12", jira_url=JIRA_URL, outcome="Escalated to SUP-12")
    status = next(b for b in review_card_blocks(card) if b["block_id"] == "card_status")["elements"][0]["text"]
    assert f"<{JIRA_URL}|SUP-12>" in status
    pending = make_card(state="escalated")
    status = next(b for b in review_card_blocks(pending) if b["block_id"] == "card_status")["elements"][0]["text"]
    assert "not created yet" in status
    bad = make_card(state="escalated", jira_key="SUP-12", jira_url="javascript:alert(1)")
    assert "javascript" not in json.dumps(review_card_blocks(bad))


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "https://kb.example.com/a|<!channel>",
        "https://kb.example.com/a>b",
        "https://kb.example.com/a b",
        "ftp://kb.example.com/a",
        "//kb.example.com/a",
        None,
    ],
)
def test_a_citation_with_a_bad_url_is_shown_as_plain_text(url):
    blocks = review_card_blocks(make_card(citations=(("Refunds <&> policy", url),)))
    sources = next(b for b in blocks if b["block_id"] == "card_sources")["text"]["text"]
    assert "• Refunds &lt;&amp;&gt; policy" in sources
    assert "<" not in sources


def test_good_citations_are_links_with_escaped_titles():
    blocks = review_card_blocks(make_card(citations=(("Refunds <&> policy", KB_URL), ("FAQ", "http://faq.example/x"))))
    sources = next(b for b in blocks if b["block_id"] == "card_sources")["text"]["text"]
    assert f"<{escape(KB_URL)}|Refunds &lt;&amp;&gt; policy>" in sources
    assert "<http://faq.example/x|FAQ>" in sources


def test_many_long_citations_still_fit_one_section():
    citations = tuple((f"Article {i} " + "t" * 300, f"https://kb.example.com/{'p' * 900}/{i}") for i in range(40))
    blocks = review_card_blocks(make_card(citations=citations))
    sources = next(b for b in blocks if b["block_id"] == "card_sources")["text"]["text"]
    assert len(sources) <= mrkdwn.SECTION_TEXT
    shown = sources.count("• <https://")
    assert 0 < shown <= 10
    assert f"…and {40 - shown} more" in sources
    assert_valid_blocks(blocks, max_blocks=mrkdwn.BLOCKS_PER_MESSAGE)


def test_no_citations_means_no_sources_block():
    assert all(b["block_id"] != "card_sources" for b in review_card_blocks(make_card(citations=())))


def test_fallback_text_is_short_and_escaped():
    assert card_fallback_text(make_card()) == "Review CX-1A2B3C: Charged twice"
    text = card_fallback_text(hostile_card())
    assert text.startswith("Review CX-1A2B3C: Hi &lt;!channel&gt;")
    assert len(text) <= 150 <= mrkdwn.FALLBACK_TEXT
    assert "<" not in text
    assert card_fallback_text(make_card(subject=None)).startswith("Review CX-1A2B3C: I was charged twice")


# ---------------------------------------------------------------- modals


def test_reject_modal():
    view = reject_modal(hostile_card(), channel="C0REVIEW", ts="1712345678.000100")
    assert_valid_modal(view)
    assert view["callback_id"] == REJECT_CALLBACK_ID
    assert view["title"]["text"] == "Reject draft" and view["submit"]["text"] == "Reject"
    assert ModalRef.from_metadata(view["private_metadata"]) == ModalRef(
        CASE_ID, DRAFT_ID, REVIEW_ID, "C0REVIEW", "1712345678.000100"
    )
    by_id = {b["block_id"]: b for b in view["blocks"]}
    reason = by_id["reason"]
    assert reason["type"] == "input" and not reason.get("optional")
    assert reason["element"]["action_id"] == "reason"
    assert [o["value"] for o in reason["element"]["options"]] == [
        "wrong_category",
        "inaccurate",
        "tone",
        "policy",
        "needs_human",
        "other",
    ]
    note = by_id["note"]
    assert note["optional"] is True
    assert note["element"] == {
        "type": "plain_text_input",
        "action_id": "note",
        "multiline": True,
        "max_length": 3000,
    }
    assert "<!channel>" not in json.dumps(view)


def test_edit_modal_prefills_the_whole_draft_when_it_fits():
    view = edit_modal(make_card(), categories=CATEGORIES, priorities=PRIORITIES, channel="C1", ts="1.2")
    assert_valid_modal(view)
    assert view["callback_id"] == EDIT_CALLBACK_ID
    assert view["title"]["text"] == "Edit and send" and view["submit"]["text"] == "Send"
    by_id = {b["block_id"]: b for b in view["blocks"]}
    reply = by_id["reply"]["element"]
    assert reply["action_id"] == "reply" and reply["multiline"] is True
    assert reply["initial_value"] == "Sorry about the double charge: we have refunded it."
    assert "reply_cut" not in by_id
    assert by_id["category"]["element"]["initial_option"]["value"] == "billing"
    assert [o["value"] for o in by_id["category"]["element"]["options"]] == ["billing", "technical", "account"]
    groups = by_id["subcategory"]["element"]["option_groups"]
    assert [(g["label"]["text"], [o["value"] for o in g["options"]]) for g in groups] == [
        ("billing", ["refund", "invoice"]),
        ("technical", ["bug", "outage"]),
    ]
    assert by_id["subcategory"]["element"]["initial_option"]["value"] == "refund"
    assert by_id["priority"]["element"]["initial_option"]["value"] == "urgent"
    assert by_id["note"]["optional"] is True
    assert ModalRef.from_metadata(view["private_metadata"]).ts == "1.2"


def test_edit_modal_cuts_a_long_draft_at_a_word_and_says_so():
    card = hostile_card()
    assert len(card.draft or "") == 10_000
    view = edit_modal(card, categories=CATEGORIES, priorities=PRIORITIES, channel="C1", ts="1.2")
    assert_valid_modal(view)
    by_id = {b["block_id"]: b for b in view["blocks"]}
    prefill = by_id["reply"]["element"]["initial_value"]
    assert len(prefill) <= mrkdwn.PLAIN_INPUT_MAX
    assert (card.draft or "").startswith(prefill)
    assert (card.draft or "")[len(prefill)].isspace()
    # Raw text in a plain_text_input: the reviewer edits what the customer will get, not escaped markup.
    assert "<!channel>" in prefill and "&lt;" in prefill
    assert "10,000 characters" in by_id["reply_cut"]["elements"][0]["text"]


def test_edit_modal_without_a_draft_has_an_empty_reply_box():
    view = edit_modal(
        make_card(draft=None, draft_id=None), categories=CATEGORIES, priorities=PRIORITIES, channel="C1", ts="1"
    )
    assert_valid_modal(view)
    reply = next(b for b in view["blocks"] if b["block_id"] == "reply")["element"]
    assert "initial_value" not in reply


def test_edit_modal_keeps_menus_within_slacks_option_limits():
    categories = {f"category-{i:03}": [f"sub-{i:03}-{j}" for j in range(3)] for i in range(150)}
    categories["x" * 200] = ["too-long-key"]
    card = make_card(category="category-140", subcategory="sub-140-2", priority="p" * 80)
    view = edit_modal(card, categories=categories, priorities=PRIORITIES + ["p" * 80], channel="C1", ts="1")
    assert_valid_modal(view)
    by_id = {b["block_id"]: b for b in view["blocks"]}
    options = by_id["category"]["element"]["options"]
    assert len(options) == 100
    assert by_id["category"]["element"]["initial_option"]["value"] == "category-140"
    assert "category_cut" in by_id
    groups = by_id["subcategory"]["element"]["option_groups"]
    assert [g["label"]["text"] for g in groups] == ["category-140"]
    assert by_id["subcategory"]["element"]["initial_option"]["value"] == "sub-140-2"
    assert "subcategory_cut" in by_id
    priority = by_id["priority"]["element"]
    assert len(priority["initial_option"]["text"]["text"]) <= mrkdwn.OPTION_TEXT


def test_edit_modal_subcategory_values_are_unique_across_categories():
    categories = {"billing": ["general", "refund"], "technical": ["general", "bug"]}
    view = edit_modal(make_card(), categories=categories, priorities=PRIORITIES, channel="C1", ts="1")
    assert_valid_modal(view)


def test_private_metadata_refuses_to_outgrow_slack():
    with pytest.raises(ValueError):
        reject_modal(make_card(), channel="C" * 3000, ts="1")


# ---------------------------------------------------------------- ephemeral texts


def test_refusal_text():
    assert refusal_text("U0STRANGER").startswith("<@U0STRANGER>, only reviewers can act on review cards.")
    assert refusal_text("<!channel>").startswith("Only reviewers can act on review cards.")


def test_lost_race_text():
    text = lost_race_text(OWNER, "review_approve", at=ACTED_AT)
    assert text.startswith(f"<@{OWNER}> already approved this at <!date^{int(ACTED_AT.timestamp())}^")
    assert lost_race_text(None, "reject").startswith("Someone else already rejected this,")
    hostile = lost_race_text("<!here>", "<!channel>")
    assert "<!" not in hostile and "&lt;!channel&gt;" in hostile
