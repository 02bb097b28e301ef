"""`cx demo --inbox DIR --out DIR`: every Slack call the offline pipeline would make, written as JSON,
validates with slack_sdk's models and stays inside Slack's limits, even for a hostile email."""

from __future__ import annotations

import json
import shutil
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from tests.cli_runner import ROOT, cx, cx_env

HOSTILE = "<!channel> <!here> <@U1> <https://evil.example|bank.com>"


def hostile_email() -> bytes:
    message = EmailMessage()
    message["From"] = "Mallory <mallory@example.com>"
    message["To"] = "support@demo-bank.example"
    message["Subject"] = ("My card was declined " + HOSTILE + " ") * 24  # about 2,000 characters
    message["Message-ID"] = "<hostile-1@example.com>"
    message["Date"] = "Mon, 09 Nov 2026 10:00:00 +0000"
    message.set_content("My card payment was declined at the shop. " + (HOSTILE + " lorem ipsum dolor ") * 800)
    return bytes(message)


def texts(value: Any) -> list[str]:
    """Every string inside a payload."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def check_blocks(blocks: list[dict[str, Any]], limit: int) -> None:
    assert len(blocks) <= limit
    for block in blocks:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError past a limit
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element.get("value", "")) <= 2000
                json.loads(element["value"])


def test_the_demo_writes_valid_slack_calls_with_hostile_text_escaped(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for sample in sorted((ROOT / "samples" / "inbox").glob("*.eml"))[:3]:
        shutil.copy(sample, inbox)
    (inbox / "99-hostile.eml").write_bytes(hostile_email())
    out = tmp_path / "slack"
    result = cx("demo", "--inbox", str(inbox), "--out", str(out),
                env=cx_env(CX_DATA_DIR=str(tmp_path / "data"), EMBEDDINGS="none"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "block-kit-builder/#" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    calls = [json.loads(p.read_text()) for p in sorted(out.glob("0*.json"))]
    assert len(calls) == summary["calls"] > 0
    cards = [c for c in calls if c["method"] == "chat.postMessage" and c["args"].get("blocks")]
    assert len(cards) >= 2  # the samples' review cards and the hostile one
    hostile_cards = [c for c in cards if "mallory@example.com" in json.dumps(c)]
    assert len(hostile_cards) == 1
    for call in calls:
        args = call["args"]
        assert set(call) == {"method", "args"} and "." in call["method"]
        if "blocks" in args:
            check_blocks(args["blocks"], 50)
        if "view" in args:
            View(**args["view"]).validate_json()
            check_blocks(args["view"]["blocks"], 100)
            assert len(args["view"].get("private_metadata", "")) <= 3000
        assert len(args.get("text", "")) <= 40_000
        for text in texts(args):
            for raw in ("<!channel>", "<!here>", "<@U1>", "<https://evil.example|"):
                assert raw not in text, (call["method"], raw)
    # The incident the demo plants: an alert in the alerts channel, with its buttons.
    (alert,) = [c for c in cards if c["args"]["channel"] == "#support-alerts"]
    assert "ERR_CARD_3051" in json.dumps(alert) and "alert_acknowledge" in json.dumps(alert)
    assert "Detection (cx detect run)" in result.stdout
    # The card shows the start of the long message; the thread holds the rest, escaped.
    (thread,) = [c for c in calls if c["method"] == "chat.postMessage" and c["args"].get("thread_ts")
                 and "lorem ipsum" in c["args"]["text"]]
    assert "&lt;!channel&gt;" in thread["args"]["text"]


def test_the_readme_manifest_declares_what_the_app_listens_for():
    readme = (ROOT / "README.md").read_text()
    manifest = yaml.safe_load(readme.split("## Slack", 1)[1].split("```yaml", 1)[1].split("```", 1)[0])
    features, settings = manifest["features"], manifest["settings"]
    assert {c["command"] for c in features["slash_commands"]} == {"/case", "/kb"}
    assert [s["callback_id"] for s in features["shortcuts"]] == ["create_support_case"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert {"app_home_opened", "message.channels"} <= set(settings["event_subscriptions"]["bot_events"])
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "usergroups:read", "users:read.email", "channels:history"} <= scopes
