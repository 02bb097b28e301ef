"""What triage tests share: the banking taxonomy and thresholds, a scripted local triager, Claude's
triager on the fake Anthropic API and an answer for it to give, and a small labelled history."""

from __future__ import annotations

import csv
import random

from anthropic import AsyncAnthropic

from pipelines.adapters.anthropic_llm import AnthropicLLM
from pipelines.models import TriageResult
from pipelines.ports import Triaged, TriageInput
from pipelines.taxonomy import load_taxonomy
from pipelines.triage.routing import Thresholds
from pipelines.triage.triagers import ClaudeTriager
from prompts import load
from tests.cli_runner import ROOT
from tests.fakes.anthropic import FakeAnthropic

TAXONOMY = load_taxonomy(ROOT / "prompts" / "taxonomy-banking.yaml")
THRESHOLDS = Thresholds(high=0.85, medium=0.60)

# A small labelled history of three intents, and the category of each.
HISTORY = {
    "card_arrival": ["my card has not arrived yet", "still waiting for my new card", "when will my card be delivered",
                     "card not here after two weeks", "the card you sent never came", "where is my card"],
    "lost_or_stolen_card": ["my card was stolen", "I lost my card yesterday", "someone took my wallet with my card",
                            "card stolen at the station", "I cannot find my card anywhere", "block my lost card"],
    "exchange_rate": ["what exchange rate do you use", "how do you set the exchange rate", "is the rate fair",
                      "which exchange rates apply", "rate for euros to dollars", "exchange rate today"],
}
CATEGORY = {"card_arrival": "card_delivery", "lost_or_stolen_card": "security", "exchange_rate": "exchange"}


class ScriptedLocal:
    """An in-repo stand-in for the local triager: always the same answer."""

    name = "local"

    def __init__(self, confidence: float, label: str = "card_arrival", priority="medium", sentiment="neutral") -> None:
        self.confidence, self.label, self.calls = confidence, label, 0
        self.priority, self.sentiment = priority, sentiment

    async def triage(self, item: TriageInput) -> Triaged:
        self.calls += 1
        category, sub = TAXONOMY.resolve(self.label)
        return Triaged(TriageResult(category=category, subcategory=sub, priority=self.priority,
                                    sentiment=self.sentiment, confidence=self.confidence,
                                    reason="nearest examples agree", triager="local", model="test-local"))


def claude_for(fake: FakeAnthropic, *, timeout: float = 5.0, model: str = "claude-haiku-4-5") -> ClaudeTriager:
    client = AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=1, timeout=timeout)
    return ClaudeTriager(AnthropicLLM(client), TAXONOMY, model=model,
                         system=load("triage"), request=load("triage_request"))


def answer(**overrides) -> dict:
    base = {"category": "transfers", "subcategory": "transfer_not_received_by_recipient", "priority": "high",
            "sentiment": "negative", "language": "en", "summary": "Salary transfer missing", "error_codes": [],
            "confidence": 0.93, "reason": "The customer says the recipient never got the money."}
    return {**base, **overrides}


BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"


def few_labelled(labels: int = 15, per_label: int = 5) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """A new team's history from BANKING77: `per_label` labelled requests of each of `labels`
    labels, 60% of the rest unlabelled and 40% to test on (seeded)."""
    by_label: dict[str, list[str]] = {}
    for row in csv.DictReader(BANKING77.open(newline="")):
        by_label.setdefault(row["category"], []).append(row["text"])
    draw = random.Random(0)
    labelled, unlabelled, test = [], [], []
    for label in sorted(by_label)[:labels]:
        texts = by_label[label][:]
        draw.shuffle(texts)
        rest = texts[per_label:]
        cut = int(len(rest) * 0.6)
        labelled += [(t, label) for t in texts[:per_label]]
        unlabelled += rest[:cut]
        test += [(t, label) for t in rest[cut:]]
    return labelled, unlabelled, test

