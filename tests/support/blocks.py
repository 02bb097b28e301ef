"""Block Kit checks: every message or view a test sees must be valid within Slack's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk.models.blocks import Block

from handlers import mrkdwn


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict nested in a Block Kit payload."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def text_objects(node: Any) -> Iterator[dict[str, Any]]:
    return (d for d in walk(node) if d.get("type") in ("mrkdwn", "plain_text") and isinstance(d.get("text"), str))


def assert_valid_blocks(blocks: list[dict[str, Any]], *, max_blocks: int) -> None:
    """slack_sdk's validators (to_dict validates every nested object) plus the limits slack_sdk does not check."""
    assert 0 < len(blocks) <= max_blocks
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        # Equality also proves slack_sdk knew every key: it drops the ones it does not.
        assert parsed.to_dict() == block
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= mrkdwn.HEADER_TEXT
        if block["type"] == "section":
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= mrkdwn.SECTION_TEXT
            fields = block.get("fields", [])
            assert len(fields) <= mrkdwn.SECTION_FIELDS
            assert all(1 <= len(f["text"]) <= mrkdwn.SECTION_FIELD_TEXT for f in fields)
        if block["type"] == "context":
            assert len(block["elements"]) <= mrkdwn.CONTEXT_ELEMENTS
            assert all(len(e["text"]) <= mrkdwn.CONTEXT_ELEMENT_TEXT for e in block["elements"])
    for node in walk(blocks):
        if node.get("type") == "button":
            assert len(node["text"]["text"]) <= mrkdwn.BUTTON_TEXT
            assert len(node["value"]) <= mrkdwn.BUTTON_VALUE
        if node.get("type") == "static_select":
            options = node.get("options") or [o for g in node["option_groups"] for o in g["options"]]
            assert len(options) <= mrkdwn.OPTIONS_PER_SELECT
            assert len(node.get("option_groups", [])) <= mrkdwn.OPTIONS_PER_SELECT
            for group in node.get("option_groups", []):
                assert len(group["label"]["text"]) <= mrkdwn.OPTION_TEXT
            for option in options:
                assert len(option["text"]["text"]) <= mrkdwn.OPTION_TEXT
                assert len(option["value"]) <= mrkdwn.OPTION_VALUE
            values = [o["value"] for o in options]
            assert len(values) == len(set(values))
            if "initial_option" in node:
                assert node["initial_option"] in options
        if node.get("type") == "plain_text_input":
            assert node.get("max_length", mrkdwn.PLAIN_INPUT_MAX) <= mrkdwn.PLAIN_INPUT_MAX
            if "initial_value" in node:
                assert 0 < len(node["initial_value"]) <= node["max_length"]
    for text in text_objects(blocks):
        assert text["text"], "Slack rejects empty text objects"
