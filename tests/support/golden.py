"""The golden set (samples/golden/cases.yaml): its cases, what the pipeline did with each, the figures over
them, and the verdict against floors, with a table of the figures and the failing cases. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import yaml

Route = Literal["auto_send", "review"]


@dataclass(frozen=True)
class GoldenCase:
    id: str
    sender: str
    subject: str
    body: str
    subcategory: str
    article: str  # samples/kb file stem
    route: Route


def load_cases(path: Path) -> list[GoldenCase]:
    return [GoldenCase(id=c["id"], sender=c["from"], subject=c["subject"], body=c["body"],
                       subcategory=c["subcategory"], article=c["article"], route=c["route"])
            for c in yaml.safe_load(path.read_text(encoding="utf-8"))]


def email_bytes(case: GoldenCase, message_id: str) -> bytes:
    """The case as the raw email the mailbox would hand intake."""
    message = EmailMessage()
    message["From"] = case.sender
    message["To"] = "support@northwind.example"
    message["Subject"] = case.subject
    message["Message-ID"] = message_id
    message["Date"] = "Tue, 01 Dec 2026 09:30:00 +0000"
    message.set_content(case.body)
    return bytes(message)


@dataclass(frozen=True)
class Outcome:
    """What the pipeline did with one case: its triage, the articles retrieved (in rank order), the ones the
    reply cites (file stems), and where the reply went (review: a person sees it first, or writes it)."""

    case: GoldenCase
    subcategory: str | None
    confidence: float
    retrieved: list[str]
    cited: list[str]
    route: Route
    reason: str = ""
    expected_route: Route | None = None  # the case's own route unless the configuration decides otherwise

    @property
    def wanted_route(self) -> Route:
        return self.expected_route or self.case.route

    @property
    def triaged_right(self) -> bool:
        return self.subcategory == self.case.subcategory

    @property
    def first(self) -> bool:
        return self.retrieved[:1] == [self.case.article]

    @property
    def in_top_3(self) -> bool:
        return self.case.article in self.retrieved[:3]

    @property
    def cites_expected(self) -> bool:
        return self.case.article in self.cited

    @property
    def routed_right(self) -> bool:
        return self.route == self.wanted_route

    @property
    def unsafe(self) -> bool:
        """Sent without a person although a person must see it (security, a language the history lacks)."""
        return self.route == "auto_send" and self.wanted_route == "review"

    @property
    def sent_wrong(self) -> bool:
        """Sent without a person, not citing the article that answers it."""
        return self.route == "auto_send" and not self.cites_expected


FIGURES = ("triage accuracy", "retrieval top 1", "retrieval top 3", "expected article cited", "route agreement",
           "unsafe auto-sends", "auto-sent citing the wrong article")
CEILINGS = frozenset({"unsafe auto-sends", "auto-sent citing the wrong article"})  # counts: lower is better


def figures(outcomes: list[Outcome]) -> dict[str, float]:
    n = len(outcomes)

    def share(flag: str) -> float:
        return round(sum(getattr(o, flag) for o in outcomes) / n, 3)

    return {
        "triage accuracy": share("triaged_right"),
        "retrieval top 1": share("first"),
        "retrieval top 3": share("in_top_3"),
        "expected article cited": share("cites_expected"),
        "route agreement": share("routed_right"),
        "unsafe auto-sends": sum(o.unsafe for o in outcomes),
        "auto-sent citing the wrong article": sum(o.sent_wrong for o in outcomes),
    }


@dataclass(frozen=True)
class Bounds:
    """Floors for the shares, ceilings for the counts (FIGURES, CEILINGS)."""

    limits: dict[str, float] = field(default_factory=dict)

    def holds(self, name: str, value: float) -> bool:
        limit = self.limits[name]
        return value <= limit if name in CEILINGS else value >= limit


def _case_line(o: Outcome) -> str:
    c = o.case
    marks = [
        "" if o.triaged_right else f"triage {c.subcategory} -> {o.subcategory} ({o.confidence:.2f})",
        "" if o.cites_expected else f"cite {c.article} -> {o.cited or '-'} (top 3 {o.retrieved[:3] or '-'})",
        "" if o.routed_right else f"route {o.wanted_route} -> {o.route} ({o.reason[:80]})",
    ]
    return f"  {c.id}: " + "; ".join(m for m in marks if m)


def verdict(config: str, outcomes: list[Outcome], bounds: Bounds) -> str | None:
    """None when every figure holds its bound; otherwise the figures table and the failing cases."""
    got = figures(outcomes)
    broken = [name for name in FIGURES if not bounds.holds(name, got[name])]
    if not broken:
        return None
    rows = [f"  {name:<36} {got[name]:>6}  {'≤' if name in CEILINGS else '≥'} {bounds.limits[name]:<6}"
            f"{'  FAILS' if name in broken else ''}" for name in FIGURES]
    failing = [_case_line(o) for o in outcomes if not (o.triaged_right and o.cites_expected and o.routed_right)]
    return (f"golden set, {config}: {', '.join(broken)} outside the bounds ({len(outcomes)} cases)\n"
            + "\n".join(rows) + f"\nfailing cases (expected -> got), {len(failing)}:\n" + "\n".join(failing))
