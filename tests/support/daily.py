"""A desk's history for the daily metrics, built in Python with its expected figures computed here,
by plain code that reads the history as README "Daily metrics" defines each figure, never by the
SQL under test. Cases are stored as an import would store them (any status, explicit timestamps),
with their status moves, reviews, corrections, drafts and AI usage written as the product writes them."""

from __future__ import annotations

import random
import statistics
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from db.pool import transaction

DONE = ("resolved", "closed")
DECIDED = ("approved", "edited", "rejected", "escalated")


@dataclass
class Move:
    at: datetime
    from_status: str
    to_status: str


@dataclass
class Case:
    case_id: uuid.UUID
    created: datetime
    status: str = "new"
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    first_response_at: datetime | None = None
    resolution_type: str | None = None
    csat: int | None = None
    moves: list[Move] = field(default_factory=list)

    def move(self, at: datetime, to: str) -> None:
        """As db.cases.transition does: the timestamps follow the move."""
        self.moves.append(Move(at, self.status, to))
        if to == "resolved":
            self.resolved_at = at
        if to == "closed":
            self.closed_at = at
        if to == "reopened":
            self.resolved_at = self.closed_at = None
        if to == "replied" and self.first_response_at is None:
            self.first_response_at = at
        self.status = to


@dataclass
class Review:
    case_id: uuid.UUID
    created: datetime
    due_at: datetime
    status: str = "pending"
    reviewed_at: datetime | None = None
    review_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Feedback:
    case_id: uuid.UUID
    review_id: uuid.UUID | None
    feedback_type: str
    field: str | None
    at: datetime


@dataclass
class Draft:
    case_id: uuid.UUID
    at: datetime
    drafter: str
    cited: list[uuid.UUID]


@dataclass
class Usage:
    at: datetime
    cost: Decimal
    case_id: uuid.UUID | None


@dataclass
class Desk:
    cases: list[Case] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)


def bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """In UTC: arithmetic on datetimes of one ZoneInfo is wall-clock time, which a clock change bends."""
    return (datetime.combine(day, time(), zone).astimezone(UTC),
            datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC))


class _Builder:
    def __init__(self, rng: random.Random, desk: Desk, stop: datetime) -> None:
        self.rng, self.desk, self.stop = rng, desk, stop

    def later(self, at: datetime, low: int = 1, high: int = 600) -> datetime:
        return at + timedelta(minutes=self.rng.randint(low, high), seconds=self.rng.randint(1, 59))

    def go(self, case: Case, at: datetime, to: str) -> bool:
        """Make the move unless it would happen after the history ends."""
        if at >= self.stop:
            return False
        case.move(at, to)
        return True

    def usage(self, at: datetime, case: Case | None) -> None:
        if at < self.stop:
            cost = Decimal(self.rng.randint(0, 250_000)) / Decimal(10**8)
            self.desk.usage.append(Usage(at, cost, case.case_id if case else None))

    def draft(self, case: Case, at: datetime, drafter: str) -> None:
        cited = [uuid.uuid4() for _ in range(self.rng.choice([0, 0, 1, 1, 2]))] if drafter != "reviewer" else []
        self.desk.drafts.append(Draft(case.case_id, at, drafter, cited))
        self.usage(at, case)

    def live(self, case: Case) -> None:
        """A case through the pipeline, cut wherever the history ends."""
        rng = self.rng
        at = self.later(case.created, 1, 5)
        if not self.go(case, at, "triaged"):
            return
        self.usage(at, case)
        self.resolve_path(case, at, rng.random())

    def resolve_path(self, case: Case, at: datetime, path: float) -> None:
        rng = self.rng
        at = self.later(at, 1, 30)
        if not self.go(case, at, "drafting"):
            return
        at = self.later(at, 1, 10)
        if path < 0.35:  # auto-sent
            if not self.go(case, at, "sending"):
                return
            self.draft(case, at, rng.choice(["claude", "extractive"]))
            kind = "self_service"
        else:
            if not self.go(case, at, "awaiting_review"):
                return
            self.draft(case, at, rng.choice(["claude", "extractive"]))
            review = Review(case.case_id, at, at + timedelta(hours=2))
            self.desk.reviews.append(review)
            at = self.later(at, 5, 240)  # about a third come after the 2-hour SLA
            outcome = rng.choice(["approved", "edited", "rejected", "escalated", "pending"])
            if outcome == "pending" or at >= self.stop:
                return
            review.status, review.reviewed_at = outcome, at
            if outcome == "edited" and rng.random() < 0.5:
                self.desk.feedback.append(Feedback(case.case_id, review.review_id, "correction",
                                                   rng.choice(["category", "subcategory"]), at))
            if outcome == "edited" and rng.random() < 0.3:  # a priority correction: not a triage-accuracy miss
                self.desk.feedback.append(Feedback(case.case_id, review.review_id, "correction", "priority", at))
            if outcome in ("approved", "edited"):
                self.desk.feedback.append(Feedback(case.case_id, review.review_id,
                                                   "approval" if outcome == "approved" else "edit", "draft", at))
                self.go(case, at, "sending")
                kind = "collaborative"
            elif outcome == "rejected":
                self.go(case, at, "human_owned")
                at = self.later(at, 5, 300)
                if at >= self.stop:
                    return
                self.draft(case, at, "reviewer")
                kind = "human"
            else:
                self.go(case, at, "escalated")
                kind = "escalated"
        at = self.later(at, 0, 2)
        if not self.go(case, at, "replied"):
            return
        if rng.random() < 0.25:  # still waiting for the customer
            return
        at = self.later(at, 30, 1500)
        if not self.go(case, at, "resolved"):
            return
        case.resolution_type = kind
        case.csat = rng.choice([None, None, 1, 2, 3, 4, 5, 5])
        if rng.random() < 0.2:  # the customer writes again: reopened, and perhaps resolved again
            at = self.later(at, 10, 900)
            if self.go(case, at, "reopened"):
                case.resolution_type = None
                again = self.later(at, 1, 5)
                if rng.random() < 0.5 and self.go(case, again, "triaged"):
                    self.resolve_path(case, again, 0.0)
        elif rng.random() < 0.2:
            self.go(case, self.later(at, 60, 2000), "closed")


def generate_desk(day: date, zone: ZoneInfo, *, cases: int = 240, seed: int = 12) -> Desk:
    """`cases` random cases over the local days day-2 .. day+1 (two thirds through the pipeline with
    their status moves, a third imported with timestamps only), history ending 30 hours after `day`,
    plus the hand-made edge cases of `edge_cases`."""
    rng = random.Random(seed)
    desk = Desk()
    first, _ = bounds(day - timedelta(days=2), zone)
    _, last = bounds(day + timedelta(days=1), zone)
    stop = bounds(day, zone)[1] + timedelta(hours=30)
    builder = _Builder(rng, desk, stop)
    span = int((last - first).total_seconds())
    for _ in range(cases):
        created = first + timedelta(seconds=rng.randrange(span))
        case = Case(uuid.uuid4(), created)
        desk.cases.append(case)
        if rng.random() < 2 / 3:
            builder.usage(created, case)
            builder.live(case)
            continue
        # Imported: where it ended up, with its timestamps and no moves.
        case.status = rng.choice(["resolved", "resolved", "closed", "replied", "triaged", "escalated"])
        if case.status in ("resolved", "closed", "replied"):
            case.first_response_at = builder.later(created, 5, 900)
        if case.status in ("resolved", "closed"):
            case.resolved_at = builder.later(case.first_response_at or created, 10, 3000)
            case.resolution_type = rng.choice(["self_service", "collaborative", "human", "escalated"])
            case.csat = rng.choice([None, 2, 3, 4, 5])
        if case.status == "closed":
            case.closed_at = builder.later(case.resolved_at or created, 10, 600)
        if case.status == "replied" and rng.random() < 0.3:
            case.csat = rng.choice([1, 5])  # rated, not resolved: no part of csat_avg
    for _ in range(30):  # AI calls of no case (KB imports, searches) count in the day's cost
        builder.usage(first + timedelta(seconds=rng.randrange(span)), None)
    edge_cases(desk, day, zone)
    return desk


def edge_cases(desk: Desk, day: date, zone: ZoneInfo) -> None:
    """Cases on the day's edges: a second before and at local midnight at both ends, one created long
    before and resolved on the day, one resolved on the day and reopened after it, one resolved and
    reopened within the day, a correction on a case nobody reviewed that day."""
    start, end = bounds(day, zone)
    second = timedelta(seconds=1)
    for created in (start - second, start, end - second, end):
        desk.cases.append(Case(uuid.uuid4(), created, status="triaged"))

    old = Case(uuid.uuid4(), start - timedelta(days=5))
    old.move(old.created + timedelta(minutes=3), "triaged")
    old.move(old.created + timedelta(minutes=4), "human_owned")
    old.move(start + timedelta(hours=2), "replied")
    old.move(start + timedelta(hours=3), "resolved")
    old.resolution_type, old.csat = "human", 4
    desk.cases.append(old)

    reopened_later = Case(uuid.uuid4(), start - timedelta(hours=30))
    reopened_later.move(reopened_later.created + timedelta(minutes=1), "triaged")
    reopened_later.move(reopened_later.created + timedelta(minutes=2), "human_owned")
    reopened_later.move(reopened_later.created + timedelta(minutes=3), "replied")
    reopened_later.move(end - timedelta(minutes=5), "resolved")
    reopened_later.move(end + timedelta(hours=5), "reopened")  # not resolved on the day any more; done at its end
    desk.cases.append(reopened_later)

    reopened_within = Case(uuid.uuid4(), start + timedelta(hours=1))
    reopened_within.move(reopened_within.created + timedelta(minutes=1), "triaged")
    reopened_within.move(reopened_within.created + timedelta(minutes=2), "human_owned")
    reopened_within.move(reopened_within.created + timedelta(minutes=3), "replied")
    reopened_within.move(reopened_within.created + timedelta(hours=2), "resolved")
    reopened_within.move(reopened_within.created + timedelta(hours=4), "reopened")  # open at the day's end
    desk.cases.append(reopened_within)

    desk.feedback.append(Feedback(desk.cases[-4].case_id, None, "correction", "category", start + second))

    # Resolved exactly at the day's start and a second before its end, with a CSAT each.
    for at, csat in ((start, 5), (end - second, 3)):
        boundary = Case(uuid.uuid4(), at - timedelta(hours=10), status="resolved", resolved_at=at,
                        first_response_at=at - timedelta(hours=9), resolution_type="self_service", csat=csat)
        desk.cases.append(boundary)


async def load_desk(pool: Any, desk: Desk) -> None:
    async with transaction(pool) as conn:
        customer = await conn.fetchval("INSERT INTO customers (email) VALUES ('history@example.com') RETURNING customer_id")
        await conn.executemany(
            "INSERT INTO cases (case_id, customer_id, channel, description, status, created_at, updated_at, "
            "resolved_at, closed_at, first_response_at, resolution_type, csat) "
            "VALUES ($1, $2, 'import', 'a past case', $3, $4, $4, $5, $6, $7, $8, $9)",
            [(c.case_id, customer, c.status, c.created, c.resolved_at, c.closed_at, c.first_response_at,
              c.resolution_type, c.csat) for c in desk.cases],
        )
        await conn.executemany(
            "INSERT INTO case_interactions (case_id, actor_type, actor_id, interaction_type, from_status, to_status, "
            "created_at) VALUES ($1, 'system', 'history', 'status_change', $2, $3, $4)",
            [(c.case_id, m.from_status, m.to_status, m.at) for c in desk.cases for m in c.moves],
        )
        await conn.executemany(
            "INSERT INTO review_queue (review_id, case_id, status, reviewed_at, due_at, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [(r.review_id, r.case_id, r.status, r.reviewed_at, r.due_at, r.created) for r in desk.reviews],
        )
        await conn.executemany(
            "INSERT INTO agent_feedback (case_id, review_id, feedback_type, field, created_at) VALUES ($1, $2, $3, $4, $5)",
            [(f.case_id, f.review_id, f.feedback_type, f.field, f.at) for f in desk.feedback],
        )
        await conn.executemany(
            "INSERT INTO case_drafts (case_id, body, cited_article_ids, confidence, drafter, decision, "
            "decision_reason, created_at) VALUES ($1, 'a draft', $2, 0.8, $3, 'review', 'test', $4)",
            [(d.case_id, d.cited, d.drafter, d.at) for d in desk.drafts],
        )
        await conn.executemany(
            "INSERT INTO llm_usage (step, provider, model, cost_usd, case_id, created_at) "
            "VALUES ('test', 'anthropic', 'claude-sonnet-4-6', $1, $2, $3)",
            [(u.cost, u.case_id, u.at) for u in desk.usage],
        )


def _round(value: Decimal | float, places: int) -> float:
    """Half away from zero, as PostgreSQL's round(numeric) does."""
    return float(Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _minutes(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 60


def _rate(part: int, whole: int) -> float | None:
    return _round(Decimal(part) / Decimal(whole), 4) if whole else None


def _open_at(case: Case, moment: datetime) -> bool:
    """Was the case waiting on someone at `moment`? Walk its moves; a case with none was open until
    its recorded resolution or closing."""
    if case.created >= moment:
        return False
    if case.moves:
        status = case.moves[0].from_status
        for m in case.moves:
            if m.at < moment:
                status = m.to_status
        return status not in DONE
    done_at = case.resolved_at or case.closed_at or case.created
    return not (case.status in DONE and done_at < moment)


def expected_metrics(desk: Desk, day: date, zone: ZoneInfo) -> dict[str, Any]:
    start, end = bounds(day, zone)

    def within(at: datetime | None) -> bool:
        return at is not None and start <= at < end

    received = sum(1 for c in desk.cases if within(c.created))
    resolved = [c for c in desk.cases if within(c.resolved_at)]
    self_service = sum(1 for c in resolved if c.resolution_type == "self_service")
    ratings = [c.csat for c in resolved if c.csat is not None]
    responded = [c for c in desk.cases if within(c.first_response_at)]
    escalated = {c.case_id for c in desk.cases for m in c.moves if m.to_status == "escalated" and within(m.at)}

    decided = [r for r in desk.reviews if r.status in DECIDED and within(r.reviewed_at)]
    counts = {s: sum(1 for r in decided if r.status == s) for s in DECIDED}
    reviewed = {r.case_id for r in decided}
    corrected = {f.case_id for f in desk.feedback if f.feedback_type == "correction"
                 and f.field in ("category", "subcategory") and within(f.at) and f.case_id in reviewed}
    breaches = sum(1 for r in desk.reviews if within(r.due_at) and (r.reviewed_at is None or r.reviewed_at > r.due_at))

    drafted: dict[uuid.UUID, bool] = {}
    for d in desk.drafts:
        if d.drafter != "reviewer" and within(d.at):
            drafted[d.case_id] = drafted.get(d.case_id, False) or bool(d.cited)
    cost = sum((u.cost for u in desk.usage if within(u.at)), Decimal(0))
    llm_cost = _round(cost, 6)

    return {
        "received": received,
        "resolved": len(resolved),
        "self_service_resolved": self_service,
        "self_service_rate": _rate(self_service, len(resolved)),
        "median_resolution_minutes": _round(statistics.median(_minutes(c.resolved_at, c.created) for c in resolved), 1)
        if resolved else None,
        "csat_avg": _round(Decimal(sum(ratings)) / Decimal(len(ratings)), 2) if ratings else None,
        "csat_count": len(ratings),
        "first_responses": len(responded),
        "median_first_response_minutes": _round(statistics.median(
            _minutes(c.first_response_at, c.created) for c in responded), 1) if responded else None,
        "escalated": len(escalated),
        "reviews": len(decided),
        "approve_count": counts["approved"],
        "edit_count": counts["edited"],
        "reject_count": counts["rejected"],
        "escalate_count": counts["escalated"],
        "approve_rate": _rate(counts["approved"], len(decided)),
        "edit_rate": _rate(counts["edited"], len(decided)),
        "reject_rate": _rate(counts["rejected"], len(decided)),
        "reviewed_cases": len(reviewed),
        "corrected_cases": len(corrected),
        "triage_accuracy": _round(1 - Decimal(len(corrected)) / Decimal(len(reviewed)), 4) if reviewed else None,
        "review_sla_breaches": breaches,
        "drafted_cases": len(drafted),
        "kb_matched_cases": sum(drafted.values()),
        "kb_match_rate": _rate(sum(drafted.values()), len(drafted)),
        "llm_calls": sum(1 for u in desk.usage if within(u.at)),
        "llm_cost_usd": llm_cost,
        "llm_cost_per_case": _round(Decimal(str(llm_cost)) / Decimal(received), 6) if received else None,
        "backlog": sum(1 for c in desk.cases if _open_at(c, end)),
    }
