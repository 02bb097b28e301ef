"""`cx demo`, run once for the module on the sample inbox plus a hostile email, then again on the same data:
what it prints, and every Slack call it would make (written as JSON by `--out`), which must validate with
slack_sdk's models, stay inside Slack's limits and keep the hostile text inert. One run serves every test
here: the demo is the slowest thing the suite does."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
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


@dataclass(frozen=True)
class DemoRun:
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    out: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    tmp = tmp_path_factory.mktemp("demo")
    inbox = tmp / "inbox"
    inbox.mkdir()
    for sample in sorted((ROOT / "samples" / "inbox").glob("*.eml")):
        shutil.copy(sample, inbox)
    (inbox / "99-hostile.eml").write_bytes(hostile_email())
    out = tmp / "out"
    env = cx_env(CX_DATA_DIR=str(tmp / "data"), EMBEDDINGS="none")
    first = cx("demo", "--inbox", str(inbox), "--out", str(out), env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    again = cx("demo", "--inbox", str(inbox), env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    return DemoRun(first, again, out)


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


def test_demo_triages_the_sample_inbox_offline_and_reports_health(demo: DemoRun):
    result = demo.first
    assert "database" in result.stdout and "pgvector" in result.stdout
    assert "PostgreSQL 18" in result.stdout
    assert "Inbox: appended 1, created 10, skipped 2" in result.stdout
    assert "Knowledge base: 24 articles" in result.stdout and "(24 new, 0 changed" in result.stdout
    rows = {line.split("│")[3].strip(): line for line in result.stdout.splitlines() if line.startswith("│ CX-")}
    assert len(rows) == 10
    assert "card_delivery / card_arrival" in rows["New card still hasn't arrived"]
    # German: the English history cannot vouch for it, so a person takes it.
    assert "human_owned" in rows["Karte gestohlen – bitte sofort sperren"]
    # Every drafted case shows its articles, its draft and why it waits for review (offline: always).
    card = result.stdout[result.stdout.index("New card still hasn't arrived · card_delivery/card_arrival"):]
    card = card[: card.index("╰")]
    assert "1. When will my card arrive?" in card
    assert "Decision review: an extractive (offline) draft is always reviewed" in card
    assert "Our help article" in card and "help.northwind.example/articles/card-arrival" in card
    again = demo.again
    assert "Inbox: duplicate 11, skipped 2" in again.stdout
    assert "(0 new, 0 changed, 0 chunks embedded)" in again.stdout
    assert "Training" not in again.stdout, "nothing new to learn, no retraining"


def test_the_demo_writes_valid_slack_calls_with_hostile_text_escaped(demo: DemoRun):
    result, out = demo.first, demo.out
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


def test_the_demo_ends_with_the_daily_report_of_its_day(demo: DemoRun):
    report = demo.out / "daily-report"
    (png,) = report.glob("daily-report-*.png")
    day = png.stem.removeprefix("daily-report-")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = (report / f"daily-report-{day}.html").read_text()
    assert f"Daily Support Insights - {day}" in html and png.name in html
    calls = [json.loads(p.read_text()) for p in sorted((report / "slack").glob("0*.json"))]
    methods = [c["method"] for c in calls]
    # The message, then the chart the current way: an upload URL, the bytes, the completed upload.
    assert methods.index("chat.postMessage") < methods.index("files.getUploadURLExternal") \
        < methods.index("upload") < methods.index("files.completeUploadExternal")
    (message,) = [c for c in calls if c["method"] == "chat.postMessage"]
    check_blocks(message["args"]["blocks"], 50)
    # The demo's day has its inbox (received today) and a two-week history behind the trend.
    line = next(line for line in demo.first.stdout.splitlines() if line.startswith(f"Daily report for {day}"))
    received = int(line.split("received ", 1)[1].split(",", 1)[0])
    assert received >= 10
    assert "a 14-day trend" in line
