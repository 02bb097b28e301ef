"""Proactive detection replayed over a synthetic desk with planted incidents: precision, recall and
time to detect.

    python bench/detect_replay.py [--seed 0] [--days-baseline 30] [--days-replay 3] [--daily-cases 600]
                                  [--step-minutes N] [--replay-start 2026-11-05] [--new-wordings]
                                  [--data ../shared/data/banking77/train.csv] [--cache DIR] [--json]

The desk: real paraphrased banking questions (the BANKING77 train split, ../shared/data/banking77/),
labelled as the demo labels them (prompts/taxonomy-banking.yaml: an intent is a subcategory, its
group the category), arriving at hour-of-day and weekday rates (daytime-heavy, quieter weekends)
with Poisson noise and some day-to-day drift per intent, from customers of every tier. One question
("I forgot my passcode") comes every day at a steady rate. The baseline and the replay draw from
the same texts (steady traffic asks what it always asked); --new-wordings splits each intent's
texts in two instead, the replay drawing only wordings the baseline never saw.

Planted during the replay days, two or three a day, every kind at least once (texts of the new
failures and of the error-code messages: bench/replay_data/planted.yaml):
- cluster: 6-15 paraphrases of a new failure within 1-3 h, labelled across several categories;
- error_code: 5-10 cases quoting one code (ERR_PAY_2001 first) within about an hour, mixed wording;
- volume: an existing intent asked at least 1.5 times an hour, at 4-6 times its hourly rate for
  1-2 h (the extra cases);
- metric: a health metric over its threshold (prompts/metric_thresholds.yaml) for 30-60 min,
  among points of four metrics every 5 minutes that otherwise stay below their thresholds.
Hard negatives that must not alert: a day where one usual question is at the top of its baseline
range (its busiest baseline day's count), one customer writing three times about one refund, and
two cases of an intent the baseline never saw; the daily passcode question is one too.

The run: a scratch database (on DATABASE_URL's server or a fresh embedded one in a temporary
directory); the baseline days stored through the product's past-case import, with their vectors in
bulk; then every --step-minutes (default DETECT_INTERVAL_MINUTES) of the replay, that step's cases
and metric points are stored and one detection pass runs as of the step's end, as the scheduler's
job would (bot.detection.detect: thresholds and windows from the settings, so VOLUME_Z and the like
can be tried from the environment). The pass embeds the new cases itself. Vectors come from the
local MiniLM model and are cached on disk by text hash (CX_DATA_DIR/bench-cache/), so a rerun embeds
nothing.

A planted incident is found when an alert created or updated by a pass at most 2 h after the
incident's start (and not before it) has evidence among the incident's cases, or for a metric its
metric's fingerprint. Precision: alerts that match a planted incident over all alerts the replay
opened; every other alert is a false alarm, listed with its figures and what its cases were.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import csv
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.ai import build_embedder  # noqa: E402
from bot.detection import detect, detect_config  # noqa: E402
from bot.runtime.database import scratch_pool  # noqa: E402
from bot.runtime.logs import configure_logging  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from db import case_import as case_import_db  # noqa: E402
from db import detection as detection_db  # noqa: E402
from pipelines.detection import metric_points  # noqa: E402
from pipelines.detection.metrics import metric_fingerprint  # noqa: E402
from pipelines.detection.thresholds import install_threshold_defaults, load_threshold_defaults  # noqa: E402
from pipelines.intake.case_history import PastCase, store_cases  # noqa: E402
from pipelines.ports import Embedder, LLMUsage  # noqa: E402
from pipelines.ports import case_embedding_text as embedding_text  # noqa: E402
from pipelines.taxonomy import Taxonomy, load_taxonomy  # noqa: E402

BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
TAXONOMY = ROOT / "prompts" / "taxonomy-banking.yaml"
PLANTED = Path(__file__).resolve().parent / "replay_data" / "planted.yaml"

# Share of a day's cases per hour (UTC, the desk's TIMEZONE) and level per weekday (Monday first).
HOUR_WEIGHTS = np.array([0.15, 0.1, 0.08, 0.08, 0.1, 0.18, 0.35, 0.7, 1.2, 1.6, 1.8, 1.85,
                         1.75, 1.7, 1.7, 1.6, 1.45, 1.25, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25])
HOUR_SHARE = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
WEEKDAY_LEVEL = [1.1, 1.05, 1.0, 1.0, 0.95, 0.55, 0.45]
INTENT_SIGMA = 0.7  # spread of the intents' popularity (lognormal)
DESK_DAY_CV = 0.08  # the whole desk's day-to-day drift
INTENT_DAY_CV = 0.2  # one intent's day-to-day drift on top of it
CUSTOMERS = 5000
TIERS = (("standard", 0.83), ("premium", 0.13), ("enterprise", 0.04))

RECURRING_INTENT = "passcode_forgotten"  # the daily "how do I reset my password" question
RECURRING_PER_DAY = 30.0  # on an average weekday, whatever the other intents do
HELD_OUT_INTENT = "virtual_card_not_working"  # never in the baseline: the two-case newcomer
REPEAT_INTENT = "Refund_not_showing_up"  # one customer asks three times
VOLUME_MIN_RATE = 1.5  # cases an hour of the intent a planted spike multiplies

# Each replay day's incidents start inside these hours (a slot each), so they rarely overlap.
SLOTS = ((8.5, 10.5), (12.0, 14.0), (15.5, 18.0))
METRICS = (  # (name, service): all get a point every 5 minutes; planted crossings take them in turn
    ("payment_failure_rate", "payments-api"), ("login_failure_rate", "auth"), ("api_error_rate", "core-api"),
    ("api_latency_p95_ms", "core-api"),
)
METRIC_EVERY = timedelta(minutes=5)
FOUND_WITHIN = timedelta(hours=2)
KINDS = ("cluster", "error_code", "volume", "metric")


# ---- the simulated desk ----------------------------------------------------------------------------


@dataclass
class SimCase:
    at: datetime
    text: str
    category: str | None
    subcategory: str | None
    email: str
    tag: str  # "steady", "recurring", or the id of the planted incident or hard negative it belongs to
    intent: str  # the BANKING77 intent, or the failure theme / error code it was written for
    external_id: str = ""
    case_id: uuid.UUID | None = None


@dataclass
class Planted:
    id: str
    kind: str
    start: datetime
    end: datetime
    what: str
    cases: list[SimCase] = field(default_factory=list)
    fingerprint: str | None = None  # a metric's
    points: int = 0


@dataclass
class Negative:
    id: str
    kind: str
    what: str
    cases: list[SimCase] = field(default_factory=list)


@dataclass
class Desk:
    baseline: list[SimCase]
    replay: list[SimCase]
    points: list[metric_points.MetricPoint]
    planted: list[Planted]
    negatives: list[Negative]
    tiers: dict[str, str]


class Traffic:
    """Expected cases per hour and intent, and draws of texts and customers."""

    def __init__(self, rng: np.random.Generator, texts: dict[str, list[str]], taxonomy: Taxonomy,
                 baseline_start: datetime, replay_start: datetime, days: int, daily: float,
                 new_wordings: bool) -> None:
        self.rng = rng
        self.taxonomy = taxonomy
        self.baseline_start, self.replay_start = baseline_start, replay_start
        self.intents = sorted(texts)
        # Steady traffic asks what it always asked: the baseline and the replay draw an intent's
        # wordings from the same texts. With new_wordings, each draws from its own half instead: a
        # hundred-odd texts an intent make two lumpy halves, and which wordings sit close together
        # changes from one half to the other (a shift of the distribution, not steady traffic).
        self.pools: dict[str, tuple[list[str], list[str]]] = {}
        for intent in self.intents:
            shuffled = list(texts[intent])
            rng.shuffle(shuffled)
            half = max(1, len(shuffled) // 2)
            self.pools[intent] = (shuffled[:half], shuffled[half:] or shuffled[:half]) if new_wordings \
                else (shuffled, shuffled)
        weights = rng.lognormal(0.0, INTENT_SIGMA, len(self.intents))
        weights[self.intents.index(HELD_OUT_INTENT)] = 0.0
        weights[self.intents.index(RECURRING_INTENT)] = 0.0
        self.share = weights / weights.sum()
        self.daily = daily
        self.desk_day = rng.gamma(1 / DESK_DAY_CV**2, DESK_DAY_CV**2, days)
        self.intent_day = rng.gamma(1 / INTENT_DAY_CV**2, INTENT_DAY_CV**2, (days, len(self.intents)))
        recurring = self.intents.index(RECURRING_INTENT)
        self.intent_day[:, recurring] = 1.0
        self.recurring = recurring
        weekday_mean = statistics.fmean(WEEKDAY_LEVEL[:5])
        self.level = [w / weekday_mean for w in WEEKDAY_LEVEL]
        self.emails = [f"customer{n}@example.com" for n in range(CUSTOMERS)]
        activity = rng.pareto(1.5, CUSTOMERS) + 1  # a few customers write far more than most
        self.activity = activity / activity.sum()
        draws = rng.random(CUSTOMERS)
        cumulative = np.cumsum([p for _, p in TIERS])
        self.tiers = {email: TIERS[int(np.searchsorted(cumulative, d))][0] for email, d in zip(self.emails, draws)}

    def day_index(self, at: datetime) -> int:
        return int((at - self.baseline_start).total_seconds() // 86400)

    def hourly(self, hour_start: datetime) -> np.ndarray:
        """Expected cases per intent in the hour starting at `hour_start`."""
        day = self.day_index(hour_start)
        level = self.daily * self.level[hour_start.weekday()] * HOUR_SHARE[hour_start.hour]
        rates = level * self.desk_day[day] * self.share * self.intent_day[day]
        rates[self.recurring] = RECURRING_PER_DAY * self.level[hour_start.weekday()] * HOUR_SHARE[hour_start.hour]
        return rates

    def labels(self, intent: str) -> tuple[str | None, str | None]:
        return self.taxonomy.resolve(intent) or (None, None)

    def text(self, intent: str, at: datetime) -> str:
        pool = self.pools[intent][0 if at < self.replay_start else 1]
        return pool[int(self.rng.integers(len(pool)))]

    def customer(self) -> str:
        return self.emails[int(self.rng.choice(CUSTOMERS, p=self.activity))]

    def case(self, intent: str, at: datetime, tag: str) -> SimCase:
        category, subcategory = self.labels(intent)
        return SimCase(at, self.text(intent, at), category, subcategory, self.customer(), tag, intent)

    def in_hour(self, hour_start: datetime, n: int) -> list[datetime]:
        return sorted(hour_start + timedelta(seconds=float(s)) for s in self.rng.uniform(0, 3600, n))


def steady_traffic(traffic: Traffic, start: datetime, end: datetime) -> list[SimCase]:
    cases = []
    hour = start
    while hour < end:
        counts = traffic.rng.poisson(traffic.hourly(hour))
        for i in np.flatnonzero(counts):
            intent = traffic.intents[i]
            tag = "recurring" if i == traffic.recurring else "steady"
            cases += [traffic.case(intent, at, tag) for at in traffic.in_hour(hour, int(counts[i]))]
        hour += timedelta(hours=1)
    return cases


def read_banking77(path: Path) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            texts[row["category"]].append(" ".join(row["text"].split()))
    return dict(texts)


def label_pair(label: str) -> tuple[str, str | None]:
    category, _, subcategory = label.partition("/")
    return category, subcategory or None


def spread_in(rng: np.random.Generator, start: datetime, span: timedelta, n: int) -> list[datetime]:
    return sorted(start + span * float(u) for u in rng.uniform(0, 1, n))


def plan_replay(traffic: Traffic, rng: np.random.Generator, planted_texts: dict[str, Any], days: int,
                baseline: list[SimCase]) -> tuple[list[Planted], list[Negative], list[SimCase]]:
    """The planted incidents and hard negatives of the replay days, with their cases (the steady
    traffic of the replay is made apart, and the top-of-range negative replaces one intent's day)."""
    start = traffic.replay_start
    queue: list[str] = []
    failures = list(planted_texts["failures"].items())
    codes = planted_texts["error_codes"]
    used = {RECURRING_INTENT, HELD_OUT_INTENT, REPEAT_INTENT}
    used |= {label_pair(lab)[1] or "" for theme in planted_texts["failures"].values() for lab in theme["labels"]}
    used |= {label_pair(lab)[1] or "" for lab in codes["labels"]}
    popular = [traffic.intents[i] for i in np.argsort(-traffic.share) if traffic.intents[i] not in used]
    counters: Counter[str] = Counter()
    planted: list[Planted] = []
    for day in range(days):
        midnight = start + timedelta(days=day)
        n = int(rng.choice([2, 3]))
        slots = sorted(rng.choice(len(SLOTS), n, replace=False).tolist())
        for slot in slots:
            if not queue:
                queue = list(rng.permutation(KINDS))
            kind = queue.pop(0)
            k = counters[kind]
            counters[kind] += 1
            lo, hi = SLOTS[slot]
            at = midnight + timedelta(hours=float(rng.uniform(lo, hi)))
            planted.append(make_incident(traffic, rng, kind, k, at, failures, codes, popular))
    negatives = make_negatives(traffic, rng, days, baseline, used | {c.intent for p in planted for c in p.cases})
    return planted, negatives, [c for p in planted for c in p.cases] + [c for n in negatives for c in n.cases]


def make_incident(traffic: Traffic, rng: np.random.Generator, kind: str, k: int, at: datetime,
                  failures: list[tuple[str, Any]], codes: dict[str, Any], popular: list[str]) -> Planted:
    ident = f"{kind}-{k + 1}"
    if kind == "cluster":
        theme, spec = failures[k % len(failures)]
        n = int(rng.integers(6, 16))
        span = timedelta(hours=float(rng.uniform(1, 3)))
        texts = [spec["texts"][i] for i in rng.choice(len(spec["texts"]), n, replace=False)]
        incident = Planted(ident, kind, at, at + span, f"{theme}: {n} paraphrases of a new failure in "
                           f"{span.total_seconds() / 3600:.1f} h")
        for when, text in zip(spread_in(rng, at, span, n), texts):
            category, subcategory = label_pair(spec["labels"][int(rng.integers(len(spec["labels"])))])
            incident.cases.append(SimCase(when, text, category, subcategory, traffic.customer(), ident, theme))
        return incident
    if kind == "error_code":
        code = codes["codes"][k % len(codes["codes"])]
        n = int(rng.integers(5, 11))
        span = timedelta(minutes=float(rng.uniform(40, 70)))
        templates = [codes["texts"][i] for i in rng.choice(len(codes["texts"]), n, replace=False)]
        incident = Planted(ident, kind, at, at + span, f"{code} quoted in {n} cases in {span.total_seconds() / 60:.0f} min")
        for when, template in zip(spread_in(rng, at, span, n), templates):
            category, subcategory = label_pair(codes["labels"][int(rng.integers(len(codes["labels"])))])
            incident.cases.append(SimCase(when, template.format(code=code), category, subcategory,
                                          traffic.customer(), ident, code))
        return incident
    if kind == "volume":
        # A spike of a question asked a few times an hour: four times a rare one is still a case or
        # two. When no question is that busy in the slot (a weekend evening), the spike comes at midday.
        for start in (at, at.replace(hour=12, minute=int(rng.integers(60)))):
            rates = traffic.hourly(start.replace(minute=0, second=0, microsecond=0))
            intent = max(popular, key=lambda i: rates[traffic.intents.index(i)])
            if rates[traffic.intents.index(intent)] >= VOLUME_MIN_RATE:
                break
        at = start
        popular.remove(intent)  # each spike its own question
        factor = float(rng.uniform(4, 6))
        span = timedelta(hours=float(rng.uniform(1, 2)))
        rate = float(rates[traffic.intents.index(intent)])
        # The extra cases are what the higher rate adds on average; the steady traffic around them is random.
        n = max(1, round((factor - 1) * rate * span.total_seconds() / 3600))
        incident = Planted(ident, kind, at, at + span, f"{intent} at x{factor:.1f} its hourly rate "
                           f"({rate:.1f}/h) for {span.total_seconds() / 3600:.1f} h: {n} extra cases")
        incident.cases = [traffic.case(intent, when, ident) for when in spread_in(rng, at, span, n)]
        return incident
    name, service = METRICS[k % len(METRICS)]
    span = timedelta(minutes=float(rng.uniform(30, 60)))
    return Planted(ident, kind, at, at + span, f"{name}@{service} over its threshold for "
                   f"{span.total_seconds() / 60:.0f} min", fingerprint=metric_fingerprint(name, service))


def make_negatives(traffic: Traffic, rng: np.random.Generator, days: int, baseline: list[SimCase],
                   used: set[str]) -> list[Negative]:
    start = traffic.replay_start
    negatives = []

    repeat = Negative("repeat-customer", "repeat_customer", f"one customer writes 3 times in 40 min ({REPEAT_INTENT})")
    when = start + timedelta(hours=float(rng.uniform(9, 19)))
    email = traffic.customer()
    for minutes in (0, 15, 40):
        case = traffic.case(REPEAT_INTENT, when + timedelta(minutes=minutes), repeat.id)
        case.email = email
        repeat.cases.append(case)
    negatives.append(repeat)

    # The busiest baseline day of a usual (mid-popularity) question, on a replay day.
    day = min(1, days - 1)
    midnight = start + timedelta(days=day)
    weekend = midnight.weekday() >= 5
    ranked = [traffic.intents[i] for i in np.argsort(-traffic.share)]
    # Not in the repeat customer's category: each hard negative tests one thing.
    repeat_category = traffic.labels(REPEAT_INTENT)[0]
    intent = next(i for i in ranked[len(ranked) // 4:] if i not in used and traffic.labels(i)[0] != repeat_category)
    per_day = Counter(c.at.date() for c in baseline if c.intent == intent and (c.at.weekday() >= 5) == weekend)
    top = max(per_day.values(), default=1)
    top_day = Negative("top-of-range", "top_of_range", f"{intent}: {top} cases on day {day + 1}, its busiest "
                       f"baseline {'weekend' if weekend else 'weekday'} (mean {statistics.fmean(per_day.values()):.1f})")
    hours = rng.multinomial(top, HOUR_SHARE)
    for hour, count in enumerate(hours):
        top_day.cases += [traffic.case(intent, at, top_day.id)
                          for at in traffic.in_hour(midnight + timedelta(hours=hour), int(count))]
    negatives.append(top_day)

    newcomer = Negative("new-subcategory", "new_subcategory", f"2 cases of {HELD_OUT_INTENT}, never seen before")
    when = start + timedelta(days=days - 1, hours=float(rng.uniform(9, 17)))
    newcomer.cases = [traffic.case(HELD_OUT_INTENT, when + timedelta(minutes=m), newcomer.id) for m in (0, 35)]
    negatives.append(newcomer)
    return negatives


def metric_series(rng: np.random.Generator, start: datetime, end: datetime, planted: list[Planted],
                  thresholds: dict[str, tuple[float | None, float | None, str | None]]) -> list[metric_points.MetricPoint]:
    """A point per metric every METRIC_EVERY: below its warning threshold (a little higher by day),
    over it while a planted crossing lasts."""
    crossing = {p.fingerprint: p for p in planted if p.kind == "metric"}
    points = []
    at = start + METRIC_EVERY
    while at <= end:
        for name, service in METRICS:
            warning, critical, unit = thresholds[name]
            assert warning is not None
            day_part = HOUR_WEIGHTS[at.hour] / HOUR_WEIGHTS.max()
            value = warning * float(np.clip(0.2 + 0.25 * day_part + rng.normal(0, 0.06), 0.05, 0.8))
            incident = crossing.get(metric_fingerprint(name, service))
            if incident is not None and incident.start <= at <= incident.end:
                peak = (critical or 2 * warning) * 1.2
                progress = (at - incident.start) / (incident.end - incident.start)
                value = warning * 1.05 + (peak - warning * 1.05) * min(1.0, 2 * progress) * float(rng.uniform(0.8, 1))
                incident.points += 1
            points.append(metric_points.MetricPoint(name=name, value=round(value, 3), unit=unit, service=service,
                                                    recorded_at=at.isoformat()))
        at += METRIC_EVERY
    return points


def build_desk(seed: int, days_baseline: int, days_replay: int, daily: float, replay_start: datetime,
               taxonomy: Taxonomy, thresholds_path: Path, *, new_wordings: bool = False,
               data: Path = BANKING77) -> Desk:
    sequences = np.random.SeedSequence(seed).spawn(3)
    traffic_rng, plan_rng, metric_rng = (np.random.default_rng(s) for s in sequences)
    baseline_start = replay_start - timedelta(days=days_baseline)
    traffic = Traffic(traffic_rng, read_banking77(data), taxonomy, baseline_start, replay_start,
                      days_baseline + days_replay, daily, new_wordings)
    baseline = steady_traffic(traffic, baseline_start, replay_start)
    replay_end = replay_start + timedelta(days=days_replay)
    steady = steady_traffic(traffic, replay_start, replay_end)
    planted_texts = yaml.safe_load(PLANTED.read_text())
    traffic.rng = plan_rng  # the plan draws apart: the steady traffic of a seed is the same whatever is planted
    planted, negatives, extra = plan_replay(traffic, plan_rng, planted_texts, days_replay, baseline)
    top = next(n for n in negatives if n.kind == "top_of_range")
    replaced = (top.cases[0].intent, top.cases[0].at.date()) if top.cases else None
    replay = [c for c in steady if (c.intent, c.at.date()) != replaced] + extra
    replay.sort(key=lambda c: c.at)
    for n, case in enumerate(baseline + replay):
        case.external_id = f"replay-{seed}-{n}"
    defaults = load_threshold_defaults(thresholds_path).metrics
    thresholds = {name: (d.warning, d.critical, d.unit) for name, d in defaults.items()}
    points = metric_series(metric_rng, replay_start, replay_end, planted, thresholds)
    return Desk(baseline, replay, points, planted, negatives, traffic.tiers)


def every_text(data: Path) -> list[str]:
    planted = yaml.safe_load(PLANTED.read_text())
    texts = [t for intent in read_banking77(data).values() for t in intent]
    texts += [t for theme in planted["failures"].values() for t in theme["texts"]]
    texts += [t.format(code=code) for t in planted["error_codes"]["texts"] for code in planted["error_codes"]["codes"]]
    return texts


# ---- embeddings, cached by text ---------------------------------------------------------------------


class CachedEmbedder:
    """The local model behind a disk cache keyed by the text's hash: a rerun embeds nothing. The
    detection pass calls it as it would the model itself."""

    provider = "local"

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        self.model = inner.model
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self.computed = 0
        if path.exists():
            with np.load(path) as saved:
                self.vectors = dict(zip((str(k) for k in saved["keys"]), saved["vectors"]))
        self.dimensions = next(iter(self.vectors.values())).shape[0] if self.vectors else inner.dimensions

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, LLMUsage]:
        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.vectors))
        for first in range(0, len(missing), 512):
            batch = missing[first:first + 512]
            vectors, _ = await self.inner.embed(batch)
            self.vectors.update(zip(map(self.key, batch), vectors.astype(np.float32)))
            self.computed += len(batch)
            self.dimensions = vectors.shape[1]
        rows = np.vstack([self.vectors[self.key(t)] for t in texts]) if texts else np.zeros((0, self.dimensions))
        return rows, LLMUsage(step="embed", provider="local", model=self.model)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        partial = self.path.with_suffix(".tmp.npz")
        np.savez(partial, keys=np.array(keys, dtype="U64"), vectors=np.vstack([self.vectors[k] for k in keys]))
        partial.replace(self.path)


# ---- storing and replaying --------------------------------------------------------------------------


async def store(pool: Any, cases: Sequence[SimCase], taxonomy: Taxonomy, status: str) -> None:
    """Store cases through the past-case import (their own timestamps and labels) and note their ids."""
    if not cases:
        return
    context: dict[str, object] = {"taxonomy": taxonomy, "now": datetime.now(UTC), "labels": {}}
    ordered = sorted(cases, key=lambda c: c.at)
    past = [PastCase.model_validate({
        "external_id": c.external_id, "received_at": c.at, "customer_email": c.email, "description": c.text,
        "category": c.category, "subcategory": c.subcategory, "status": status, "channel": "web",
    }, context=context) for c in ordered]
    result = await store_cases(pool, past)
    for case, case_id in zip(ordered, result.case_ids, strict=True):
        case.case_id = case_id


async def set_tiers(pool: Any, tiers: dict[str, str]) -> None:
    await pool.execute(
        "UPDATE customers c SET account_tier = t.tier FROM unnest($1::text[], $2::text[]) AS t(email, tier) "
        "WHERE lower(c.email) = t.email AND t.tier <> 'standard'",
        list(tiers), list(tiers.values()),
    )


@dataclass(frozen=True)
class Event:
    """An alert a pass created or updated, as the pass left it."""

    at: datetime
    alert_id: uuid.UUID
    outcome: str
    case_ids: frozenset[uuid.UUID]
    fingerprints: frozenset[str]


async def replay(pool: Any, settings: Settings, embedder: Embedder, desk: Desk, taxonomy: Taxonomy,
                 start: datetime, end: datetime, step: timedelta, say: Any) -> tuple[list[Event], list[float]]:
    events: list[Event] = []
    seconds: list[float] = []
    cases = iter(desk.replay)
    points = iter(desk.points)
    pending_case = next(cases, None)
    pending_point = next(points, None)
    now = start
    while now < end:
        now += step
        batch = []
        while pending_case is not None and pending_case.at <= now:
            batch.append(pending_case)
            pending_case = next(cases, None)
        await store(pool, batch, taxonomy, "triaged")
        measured = []
        while pending_point is not None and pending_point.recorded_at is not None and pending_point.recorded_at <= now:
            measured.append(pending_point)
            pending_point = next(points, None)
        if measured:
            await metric_points.record_metric_points(pool, metric_points.MetricsRequest(metrics=measured))
        started = time.perf_counter()
        report = await detect(pool, settings, now, embedder)
        seconds.append(time.perf_counter() - started)
        for alert in report.alerts:
            outcome = report.outcomes[alert.alert_id]
            if outcome in ("new", "updated"):
                events.append(Event(now, alert.alert_id, outcome, frozenset(alert.case_ids),
                                    frozenset({alert.fingerprint} | {str(s.get("fingerprint")) for s in alert.signals})))
                say(f"  {now:%a %H:%M} {outcome:7} {alert.kind:10} {alert.title[:110]}")
    return events, seconds


# ---- scoring ----------------------------------------------------------------------------------------


def incident_ids(planted: Planted) -> set[uuid.UUID]:
    return {c.case_id for c in planted.cases if c.case_id is not None}


def matches(planted: Planted, case_ids: frozenset[uuid.UUID] | set[uuid.UUID], fingerprints: set[str] | frozenset[str],
            first_seen: datetime, last_seen: datetime) -> bool:
    if planted.kind == "metric":
        return planted.fingerprint in fingerprints and first_seen <= planted.end + FOUND_WITHIN \
            and last_seen >= planted.start
    return bool(incident_ids(planted) & case_ids)


def signal_figures(signal: dict[str, Any]) -> dict[str, Any]:
    keep = ("kind", "fingerprint", "severity", "observed", "expected", "z", "dispersion", "value", "threshold",
            "categories", "cases", "window_minutes")
    return {k: signal[k] for k in keep if k in signal}


def score(desk: Desk, events: list[Event], alerts: list[detection_db.AlertRow]) -> dict[str, Any]:
    by_case = {c.case_id: c for c in desk.baseline + desk.replay if c.case_id is not None}
    incidents = []
    for planted in desk.planted:
        ids = incident_ids(planted)
        hit = next((e for e in events if planted.start <= e.at <= planted.start + FOUND_WITHIN
                    and (bool(ids & e.case_ids) if planted.kind != "metric" else planted.fingerprint in e.fingerprints)),
                   None)
        detect_minutes = round((hit.at - planted.start).total_seconds() / 60) if hit else None
        by_id = {a.alert_id: a for a in alerts}
        matched = [a for a in alerts if matches(planted, frozenset(a.case_ids), _fingerprints(a), a.first_seen_at,
                                                a.last_seen_at)]
        incidents.append({
            "id": planted.id, "kind": planted.kind, "what": planted.what,
            "start": planted.start.isoformat(timespec="minutes"), "end": planted.end.isoformat(timespec="minutes"),
            "cases": len(planted.cases), "points": planted.points, "found": hit is not None,
            "minutes_to_detect": detect_minutes,
            "by": (by_id[hit.alert_id].kind + ": " + by_id[hit.alert_id].title) if hit else None,
            "alerts": [a.fingerprint for a in matched],
            "cases_in_alerts": len(ids & {c for a in matched for c in a.case_ids}),
        })
    false_alarms = []
    matched_alerts = 0
    for alert in alerts:
        hits = [p.id for p in desk.planted if matches(p, frozenset(alert.case_ids), _fingerprints(alert),
                                                      alert.first_seen_at, alert.last_seen_at)]
        if hits:
            matched_alerts += 1
            continue
        tags = Counter(by_case[c].tag for c in alert.case_ids if c in by_case)
        intents = Counter(by_case[c].intent for c in alert.case_ids if c in by_case)
        false_alarms.append({
            "kind": alert.kind, "severity": alert.severity, "title": alert.title, "fingerprint": alert.fingerprint,
            "first_seen": alert.first_seen_at.isoformat(timespec="minutes"),
            "last_seen": alert.last_seen_at.isoformat(timespec="minutes"),
            "cases": len(alert.case_ids), "case_tags": dict(tags.most_common()), "intents": dict(intents.most_common(6)),
            "signals": [signal_figures(s) for s in alert.signals],
        })
    negatives = []
    for negative in desk.negatives:
        ids = {c.case_id for c in negative.cases}
        touched = [a.fingerprint for a in alerts if ids & set(a.case_ids)]
        negatives.append({"id": negative.id, "what": negative.what, "cases": len(negative.cases), "alerts": touched})
    recurring = {c.case_id for c in desk.baseline + desk.replay if c.tag == "recurring"}
    found = sum(1 for i in incidents if i["found"])
    return {
        "incidents": incidents,
        "false_alarms": false_alarms,
        "negatives": negatives + [{
            "id": "recurring", "what": f"{RECURRING_INTENT} every day, about {RECURRING_PER_DAY:g} a weekday",
            "cases": len(recurring),
            "alerts": [a.fingerprint for a in alerts if recurring & set(a.case_ids)
                       and Counter(by_case[c].tag for c in a.case_ids if c in by_case).most_common(1)[0][0] == "recurring"],
        }],
        "alerts": len(alerts),
        "alerts_matching": matched_alerts,
        "precision": round(matched_alerts / len(alerts), 3) if alerts else 1.0,
        "recall": round(found / len(incidents), 3) if incidents else 1.0,
        "recall_by_kind": {kind: f"{sum(1 for i in incidents if i['kind'] == kind and i['found'])}/"
                                 f"{sum(1 for i in incidents if i['kind'] == kind)}" for kind in KINDS},
        "median_minutes_to_detect": statistics.median([i["minutes_to_detect"] for i in incidents if i["found"]])
        if found else None,
    }


def _fingerprints(alert: detection_db.AlertRow) -> set[str]:
    return {alert.fingerprint} | {str(s.get("fingerprint")) for s in alert.signals}


# ---- the run ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    started = time.perf_counter()
    settings = load_settings()
    cache = Path(args.cache or settings.cx_data_dir / "bench-cache").resolve()
    overrides: dict[str, object] = {"slack_bot_token": None, "anthropic_api_key": None}
    if args.step_minutes:
        overrides["detect_interval_minutes"] = args.step_minutes
    if settings.database_url is None and "CX_DATA_DIR" not in os.environ:
        scratch = Path(tempfile.mkdtemp(prefix="cx-bench-"))
        # Registered before the server starts, so it runs after the server's own exit hook stops it.
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        overrides["cx_data_dir"] = scratch
    settings = load_settings(**overrides)
    step = timedelta(minutes=settings.detect_interval_minutes)
    taxonomy = load_taxonomy(TAXONOMY)
    replay_start = datetime.fromisoformat(args.replay_start).replace(tzinfo=UTC)
    replay_end = replay_start + timedelta(days=args.days_replay)

    desk = build_desk(args.seed, args.days_baseline, args.days_replay, args.daily_cases, replay_start, taxonomy,
                      settings.metric_thresholds_path, new_wordings=args.new_wordings, data=args.data)
    generated = time.perf_counter()
    say(f"desk: {len(desk.baseline)} baseline cases, {len(desk.replay)} replay cases, {len(desk.points)} metric "
        f"points; planted: " + ", ".join(f"{p.id} {p.start:%a %H:%M}" for p in desk.planted))

    local = build_embedder(settings, "local")
    assert local is not None
    embedder = CachedEmbedder(local, cache / f"embeddings-{local.model.replace('/', '_')}.npz")
    # Every BANKING77 text and every planted wording, whichever this seed uses: one cache serves all seeds.
    texts = sorted({embedding_text(None, t) for t in every_text(args.data)} |
                   {embedding_text(None, c.text) for c in desk.baseline + desk.replay})
    vectors, _ = await embedder.embed(texts)
    if embedder.computed:
        embedder.save()
    by_text = dict(zip(texts, vectors))
    embedded = time.perf_counter()
    say(f"embeddings: {len(texts)} texts, {embedder.computed} computed ({embedded - generated:.0f} s), cache {embedder.path}")

    async with scratch_pool(settings) as pool:
        await install_threshold_defaults(pool, settings.metric_thresholds_path)
        await store(pool, desk.baseline, taxonomy, "resolved")
        async with pool.acquire() as conn:
            ids = [c.case_id for c in desk.baseline if c.case_id is not None]
            await case_import_db.set_embeddings(
                conn, ids, np.vstack([by_text[embedding_text(None, c.text)] for c in desk.baseline]), embedder.model)
        loaded = time.perf_counter()
        say(f"baseline stored with vectors in {loaded - embedded:.0f} s; replaying every {step.total_seconds() / 60:g} min")
        events, seconds = await replay(pool, settings, embedder, desk, taxonomy, replay_start, replay_end, step, say)
        await set_tiers(pool, desk.tiers)
        async with pool.acquire() as conn:
            alerts = await detection_db.list_alerts(conn, open_only=False, limit=100_000)
    finished = time.perf_counter()
    if embedder.computed:
        embedder.save()

    result = score(desk, events, sorted(alerts, key=lambda a: a.first_seen_at))
    config = detect_config(settings)
    ordered = sorted(seconds)
    return {
        "seed": args.seed, "days_baseline": args.days_baseline, "days_replay": args.days_replay,
        "replay_start": replay_start.isoformat(), "step_minutes": step.total_seconds() / 60,
        "daily_cases": args.daily_cases, "new_wordings": args.new_wordings, "baseline_cases": len(desk.baseline), "replay_cases": len(desk.replay),
        "planted": len(desk.planted), "embedding_model": embedder.model,
        "config": {"window_minutes": config.window.total_seconds() / 60, "z": config.thresholds.z,
                   "min_count": config.thresholds.min_count, "ratio": config.thresholds.ratio,
                   "error_code_min_count": config.thresholds.error_code_min_count,
                   "cluster_min_size": config.thresholds.cluster_min_size,
                   "cluster_window_hours": config.cluster_window.total_seconds() / 3600,
                   "similarity": config.similarity},
        **{k: result[k] for k in ("precision", "recall", "recall_by_kind", "alerts", "alerts_matching",
                                  "median_minutes_to_detect")},
        "false_alarms_count": len(result["false_alarms"]),
        "passes": len(seconds),
        "pass_seconds_mean": round(statistics.fmean(seconds), 3),
        "pass_seconds_p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "pass_seconds_max": round(ordered[-1], 3),
        "embed_seconds": round(embedded - generated, 1), "embedded_computed": embedder.computed,
        "run_seconds": round(finished - started, 1),
        "incidents": result["incidents"], "false_alarms": result["false_alarms"], "negatives": result["negatives"],
    }


def print_report(summary: dict[str, Any]) -> None:
    print(f"\nprecision {summary['precision']:.3f} ({summary['alerts_matching']}/{summary['alerts']} alerts match a "
          f"planted incident), recall {summary['recall']:.3f} {summary['recall_by_kind']}, median time to detect "
          f"{summary['median_minutes_to_detect']} min, {summary['passes']} passes of {summary['pass_seconds_mean']:.2f} s "
          f"(p95 {summary['pass_seconds_p95']:.2f} s), run {summary['run_seconds']:.0f} s")
    print("\nplanted incidents:")
    for i in summary["incidents"]:
        found = f"found in {i['minutes_to_detect']} min by {i['by']}" if i["found"] else "MISSED"
        print(f"  {i['id']:13} {i['start'][5:16]} {i['what']}\n      {found}")
    print("\nfalse alarms:" if summary["false_alarms"] else "\nfalse alarms: none")
    for a in summary["false_alarms"]:
        print(f"  {a['first_seen'][5:16]} {a['kind']} {a['severity']}: {a['title']}\n      cases {a['case_tags']} "
              f"intents {a['intents']}\n      signals {a['signals']}")
    print("\nhard negatives:")
    for n in summary["negatives"]:
        print(f"  {n['id']:16} {n['what']}: {'ALERTED ' + str(n['alerts']) if n['alerts'] else 'no alert'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=BANKING77, help="BANKING77's train split (text,category)")
    parser.add_argument("--days-baseline", type=int, default=30)
    parser.add_argument("--days-replay", type=int, default=3)
    parser.add_argument("--daily-cases", type=float, default=600.0, help="cases on an average weekday")
    parser.add_argument("--step-minutes", type=int, default=None, help="default: DETECT_INTERVAL_MINUTES")
    parser.add_argument("--replay-start", default="2026-11-05", help="a date in the past (UTC midnight)")
    parser.add_argument("--cache", default=None, help="embedding cache directory (default CX_DATA_DIR/bench-cache)")
    parser.add_argument("--new-wordings", action="store_true",
                        help="the replay draws texts the baseline never used (each intent's texts split in two)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.days_replay < 1 or args.days_baseline < 1:
        parser.error("--days-baseline and --days-replay must be at least 1")

    configure_logging("warning", "console")

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    summary = asyncio.run(run(args, say))
    if args.json:
        print(json.dumps(summary))
    else:
        print_report(summary)


if __name__ == "__main__":
    main()
