"""Golden evaluations: every case of samples/golden/cases.yaml through the real pipeline on a real database,
email intake, the local triager trained on the BANKING77 sample history, routing, retrieval on samples/kb
(MiniLM, hybrid) and drafting, twice: with the extractive drafter (no keys) and with Claude through the real
SDK against the fake Anthropic API. A change that makes triage, retrieval or routing worse fails here with
the figures and the cases it broke."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from bot.ai import build_drafter, build_triager
from bot.settings import Settings, load_settings
from db import drafts as drafts_db
from db import examples as examples_db
from db.cases import CaseStatus
from db.pool import transaction
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.adapters.multilingual_embedder import MultilingualEmbedder
from pipelines.drafting.step import ARTICLES, draft_case
from pipelines.intake.email import intake_email
from pipelines.kb.ingest import embed_pending_multilingual
from pipelines.kb.search import Hit, search
from pipelines.ports import Drafter, Embedder
from pipelines.triage.history import read_history
from pipelines.triage.local.triager import train_local
from pipelines.triage.step import triage_case
from tests.cli_runner import ROOT
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import POLICY
from tests.support.golden import Bounds, GoldenCase, Outcome, email_bytes, figures, load_cases, verdict
from tests.support.triage import TAXONOMY, THRESHOLDS

CASES = load_cases(ROOT / "samples" / "golden" / "cases.yaml")
HISTORY = ROOT / "samples" / "history" / "banking77-sample.csv"

# Measured on 2026-12-04 on 2 cores: the local triager on all-MiniLM-L6-v2 vectors without fine-tuning
# (TF-IDF SVM and nearest neighbours, calibrated to be right 98.5% of the time at or above HIGH), trained on
# the 924-row sample history with the taxonomy's descriptions; hybrid search with all-MiniLM-L6-v2 and the
# multilingual ranking; 45 cases. Both configurations: triage accuracy 0.600 (27 of 45), retrieval top 1
# 0.889 (40) and top 3 1.0 (45), expected article cited 0.556 (25: a case a person takes without a draft
# cites nothing); route agreement 1.0 offline and 0.289 (13) with Claude (12 examples per label are too few
# for most cases to reach HIGH, so they are reviewed); no reply was sent unsafely or citing the wrong
# article. (Before the fusion constant went from 60 to 10: top 1 0.778, top 3 0.956, cited 0.533.) Each
# share's floor is the measurement less 0.05 (about two cases), so one case drifting does not
# fail CI but a real regression does. Routing offline is a rule (every extractive draft is reviewed), and a
# reply sent without a person to a security or foreign-language case, or citing the wrong article, is the
# harm this set guards against: no margin there. Raise the floors when the product gets better.
_SHARED = {"triage accuracy": 0.55, "retrieval top 1": 0.84, "retrieval top 3": 0.95, "expected article cited": 0.50,
           "unsafe auto-sends": 0, "auto-sent citing the wrong article": 0}
BOUNDS = {
    "extractive": Bounds({**_SHARED, "route agreement": 1.0}),
    "claude": Bounds({**_SHARED, "route agreement": 0.24}),
}


class FrozenMiniLM:
    """MiniLM's vectors without its tunable encoder: the local triager then trains the recipe a
    deployment with OpenAI embeddings gets (TF-IDF SVM and nearest neighbours, no fine-tuning), which
    CI can afford; fine-tuning is measured by `cx eval triage` instead."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.provider, self.model, self.dimensions = inner.provider, inner.model, inner.dimensions

    async def embed(self, texts: list[str]) -> tuple[Any, Any]:
        return await self._inner.embed(texts)


def _stem(hit: Hit) -> str:
    return (hit.url or "").rstrip("/").rsplit("/", 1)[-1]


def careful_answer(fake: FakeAnthropic) -> Any:
    """Claude's draft as a careful model gives it: a confident reply citing the article that answers. The fake
    cannot judge which does, so it cites the one the prompt ranks first."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        offered = re.findall(r'<article id="([^"]+)"', body["messages"][0]["content"])
        return fake.tool_use(TOOL_NAME, {
            "reply": "Hi,\n\nThe article below answers this.\n\nBest regards,\nNorthwind Bank Support",
            "cited_article_ids": offered[:1], "confidence": 0.9, "questions": [], "risks": [],
        })

    return answer


async def _run(pool: asyncpg.Pool, embedder: Embedder, multilingual: Embedder, triager: Any, drafter: Drafter,
               config: str, case: GoldenCase) -> Outcome:
    intake = await intake_email(pool, email_bytes(case, f"<{case.id}.{config}@golden.example>"))
    assert intake.case_id is not None, intake.reason
    triaged = await triage_case(pool, triager, TAXONOMY, THRESHOLDS, intake.case_id)
    assert triaged is not None and triaged.result is not None, case.id
    result = triaged.result
    outcome = Outcome(case, result.subcategory, result.confidence, [], [], "review", triaged.decision.reason)
    if triaged.status != CaseStatus.DRAFTING:
        # A person writes this reply: retrieval is still measured, as the draft step would search.
        async with pool.acquire() as conn:
            stored = await drafts_db.load_case(conn, intake.case_id)
        assert stored is not None
        hits = await search(pool, embedder, f"{stored.subject}\n{stored.description}"[:2000], ARTICLES,
                            prefer_subcategory=stored.subcategory, multilingual=multilingual)
        return replace(outcome, retrieved=[_stem(h) for h in hits])
    drafted = await draft_case(pool, drafter, embedder, TAXONOMY, POLICY, intake.case_id, multilingual=multilingual)
    assert drafted is not None, case.id
    stems = {h.article_id: _stem(h) for h in drafted.hits}
    return replace(outcome, retrieved=[_stem(h) for h in drafted.hits], cited=[stems[a] for a in drafted.draft.cited],
                   route="auto_send" if drafted.decision.auto_send else "review", reason=drafted.decision.reason)


@pytest.fixture(scope="module")
async def outcomes(demo_kb: asyncpg.Pool, minilm: Embedder, tmp_path_factory: pytest.TempPathFactory,
                   ) -> AsyncIterator[dict[str, list[Outcome]]]:
    """Every case through the pipeline in each configuration, once for the module."""
    pool = demo_kb
    rows = read_history(HISTORY, TAXONOMY)
    async with transaction(pool) as conn:
        await examples_db.add_examples(conn, [(r.text, r.category, r.subcategory, r.priority) for r in rows],
                                       source="import")
    frozen = FrozenMiniLM(minilm)
    await train_local(pool, frozen, taxonomy=TAXONOMY)
    multilingual = MultilingualEmbedder()
    await embed_pending_multilingual(pool, multilingual)
    data_dir = tmp_path_factory.mktemp("golden-data")
    offline = load_settings(_env_file=None, cx_data_dir=data_dir)
    triager = build_triager(offline, pool, TAXONOMY, frozen)
    async with FakeAnthropic() as fake:
        fake.default = careful_answer(fake)
        keyed = load_settings(_env_file=None, cx_data_dir=data_dir, anthropic_api_key="test",
                              anthropic_base_url=fake.url, anthropic_max_retries=0)

        async def run(config: str, settings: Settings) -> list[Outcome]:
            drafter = build_drafter(settings, pool)
            return [await _run(pool, minilm, multilingual, triager, drafter, config, case) for case in CASES]

        # Side by side: one waits on the database while the other computes.
        extractive, claude = await asyncio.gather(run("extractive", offline), run("claude", keyed))
    # Offline every draft is reviewed, whatever the case (ExtractiveDrafter).
    yield {"extractive": [replace(o, expected_route="review") for o in extractive], "claude": claude}


def test_the_golden_set_is_well_formed():
    stems = {p.stem for p in (ROOT / "samples" / "kb").glob("*.md")}
    assert len(CASES) >= 36 and len({c.id for c in CASES}) == len(CASES)
    assert {c.article for c in CASES} <= stems
    assert all(TAXONOMY.resolve(c.subcategory) is not None for c in CASES)
    assert {c.route for c in CASES} == {"auto_send", "review"}
    german = [c for c in CASES if c.id.startswith("de-")]
    french = [c for c in CASES if c.id.startswith("fr-")]
    assert len(german) >= 3 and len(french) >= 3
    assert all(c.route == "review" for c in german + french), "the language guard sends them to a person"
    never_sent = [c for c in CASES if not TAXONOMY.categories[TAXONOMY.parent_of[c.subcategory]].auto_send]
    assert never_sent and all(c.route == "review" for c in never_sent), "their category is not marked auto_send"


def test_offline_every_extractive_draft_goes_to_review_citing_its_best_article(outcomes):
    for o in outcomes["extractive"]:
        assert o.route == "review", (o.case.id, o.reason)
        assert o.cited in ([], o.retrieved[:1]), o.case.id


@pytest.mark.parametrize("config", ["extractive", "claude"])
def test_the_golden_figures_hold_their_floors(outcomes, config):
    problem = verdict(config, outcomes[config], BOUNDS[config])
    assert problem is None, problem


# ---- the floors bite: the same verdict on deliberately worse results ---------------------------------------


def _outcome(case: GoldenCase, **worse: Any) -> Outcome:
    right = Outcome(case, case.subcategory, 0.9, [case.article, "x", "y"], [case.article], case.route)
    return replace(right, **worse)


def test_worse_retrieval_routing_or_triage_fails_with_the_figures_and_the_cases():
    cases = CASES[:10]
    bounds = Bounds({"triage accuracy": 0.8, "retrieval top 1": 0.8, "retrieval top 3": 0.8,
                     "expected article cited": 0.8, "route agreement": 0.8, "unsafe auto-sends": 0, "auto-sent citing the wrong article": 0})
    perfect = [_outcome(c) for c in cases]
    assert verdict("claude", perfect, bounds) is None
    assert figures(perfect)["route agreement"] == 1.0

    lost = [_outcome(c, retrieved=["x", "y", "z", c.article], cited=["x"]) if i < 3 else _outcome(c)
            for i, c in enumerate(cases)]
    message = verdict("claude", lost, bounds)
    assert message is not None
    assert "retrieval top 1, retrieval top 3, expected article cited" in message.splitlines()[0]
    assert re.search(r"retrieval top 3\s+0\.7\s+≥ 0\.8\s+FAILS", message)
    assert f"{cases[0].id}: cite {cases[0].article} -> ['x']" in message
    assert cases[5].id + ":" not in message, "only failing cases are listed"

    review = next(c for c in CASES if c.route == "review")
    unsafe = verdict("claude", [_outcome(review, route="auto_send"), *perfect], bounds)
    assert unsafe is not None and re.search(r"unsafe auto-sends\s+1\s+≤ 0\s+FAILS", unsafe)
    assert f"{review.id}: route review -> auto_send" in unsafe

    sent = next(c for c in cases if c.route == "auto_send")
    wrong = verdict("claude", [_outcome(c, cited=["x"]) if c is sent else _outcome(c) for c in cases], bounds)
    assert wrong is not None and re.search(r"auto-sent citing the wrong article\s+1\s+≤ 0\s+FAILS", wrong)

    mislabelled = [_outcome(c, subcategory="card_arrival" if c.subcategory != "card_arrival" else "exchange_rate")
                   for c in cases]
    worse = verdict("extractive", mislabelled, bounds)
    assert worse is not None and re.search(r"triage accuracy\s+0\.0\s+≥ 0\.8\s+FAILS", worse)
