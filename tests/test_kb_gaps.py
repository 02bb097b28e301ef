"""KB gaps: groups of at least KB_GAP_MIN_CASES recent cases whose best knowledge-base match is weak,
on the demo knowledge base (full text, and vectors with the local MiniLM), recorded once per
fingerprint, with at most KB_DRAFTS_PER_DAY drafts queued and never twice for one gap."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.jobs import JobName, KbDraftJob
from pipelines.learning.kb_gaps import find_gaps, kb_gaps_step
from pipelines.learning.kb_match import WEAK_BELOW_TEXT, WEAK_BELOW_VECTOR, best_matches, group_match, weak_below
from tests.support.cases import import_demo_kb, jobs_queued
from tests.support.kb_gaps import COVERED, CRYPTO, MORTGAGE, NOW, PENSION, add_group


async def draft_jobs(pool) -> list[KbDraftJob]:
    return [KbDraftJob.model_validate(p) for name, p in await jobs_queued(pool) if name == JobName.KB_DRAFT]


async def gap_rows(pool):
    return await pool.fetch("SELECT fingerprint, title, case_ids, frequency, status, metadata "
                            "FROM improvement_opportunities WHERE opportunity_type = 'kb_gap' ORDER BY title")


def step(pool, embedder=None, *, until=NOW, drafts_per_day=3, max_score=None):
    return kb_gaps_step(pool, embedder, until=until, min_cases=3, max_score=max_score, drafts_per_day=drafts_per_day)


async def test_a_group_the_kb_does_not_answer_is_a_gap_and_one_it_answers_is_not(pool):
    await import_demo_kb(pool)
    covered = await add_group(pool, COVERED, "card_delivery", "card_arrival")
    crypto = await add_group(pool, CRYPTO, "crypto", "buy_crypto")
    # Measured on the same search: the covered group is strong, the crypto one weak, in full-text scale.
    strong = group_match(await best_matches(pool, None, COVERED))
    weak = group_match(await best_matches(pool, None, CRYPTO))
    assert strong.title == "When will my card arrive?" and strong.score is not None and strong.score >= WEAK_BELOW_TEXT
    assert weak.score is not None and weak.score < WEAK_BELOW_TEXT

    (gap,) = await step(pool)
    assert set(gap.case_ids) == set(crypto) and not set(gap.case_ids) & set(covered)
    assert gap.best_score == pytest.approx(weak.score, abs=1e-4) and gap.best_article == weak.title
    assert gap.title in CRYPTO
    (row,) = await gap_rows(pool)
    assert (row["fingerprint"], set(row["case_ids"]), row["frequency"]) == (gap.fingerprint, set(crypto), 4)
    assert row["status"] == "in_progress"  # its draft is queued
    assert await draft_jobs(pool) == [KbDraftJob(opportunity_id=await pool.fetchval(
        "SELECT opportunity_id FROM improvement_opportunities"))]


async def test_a_group_below_the_minimum_or_older_than_the_window_is_no_gap(pool):
    await import_demo_kb(pool)
    await add_group(pool, CRYPTO[:2], "crypto", "buy_crypto")  # 2 < KB_GAP_MIN_CASES
    await add_group(pool, MORTGAGE, "lending", "mortgage", days_ago=8)  # before the 7 days
    assert await step(pool) == []
    assert await gap_rows(pool) == [] and await draft_jobs(pool) == []


async def test_a_gap_found_again_updates_its_row_and_is_not_drafted_twice(pool):
    await import_demo_kb(pool)
    first = await add_group(pool, CRYPTO[:3], "crypto", "buy_crypto", days_ago=2)
    (gap,) = await step(pool, until=NOW - timedelta(days=1))
    assert len(await draft_jobs(pool)) == 1
    await pool.execute("DELETE FROM pgqueuer")  # the draft job ran

    later = await add_group(pool, CRYPTO[3:], "crypto", "buy_crypto", days_ago=0.5)
    (again,) = await step(pool)
    assert again.fingerprint == gap.fingerprint
    (row,) = await gap_rows(pool)
    assert set(row["case_ids"]) == {*first, *later} and row["frequency"] == 4
    assert await draft_jobs(pool) == []  # drafted once already


async def test_at_most_drafts_per_day_are_queued_largest_first_and_the_rest_on_a_later_day(pool):
    await import_demo_kb(pool)
    crypto = await add_group(pool, CRYPTO, "crypto", "buy_crypto")
    mortgage = await add_group(pool, MORTGAGE, "lending", "mortgage")
    pension = await add_group(pool, PENSION, "savings", "pension")
    gaps = await step(pool, drafts_per_day=1)
    assert [set(g.case_ids) for g in gaps][0] == set(crypto)  # 4 cases: first
    assert {frozenset(g.case_ids) for g in gaps} == {frozenset(crypto), frozenset(mortgage), frozenset(pension)}
    assert len(await gap_rows(pool)) == 3
    (job,) = await draft_jobs(pool)
    drafted = await pool.fetchval("SELECT case_ids FROM improvement_opportunities WHERE opportunity_id = $1",
                                  job.opportunity_id)
    assert set(drafted) == set(crypto)

    await step(pool, drafts_per_day=1)  # the next run: the job above is still queued, the crypto gap drafted
    assert len(await draft_jobs(pool)) == 2
    await step(pool, drafts_per_day=1)
    await step(pool, drafts_per_day=1)
    assert len(await draft_jobs(pool)) == 3  # every gap once, never one twice
    assert len(await gap_rows(pool)) == 3


async def test_kb_gap_max_score_overrides_the_calibrated_threshold(pool):
    await import_demo_kb(pool)
    await add_group(pool, COVERED, "card_delivery", "card_arrival")
    assert await step(pool) == []
    (gap,) = await step(pool, max_score=0.99, drafts_per_day=0)  # everything below 0.99 is weak
    assert gap.best_article == "When will my card arrive?"
    assert await draft_jobs(pool) == []  # KB_DRAFTS_PER_DAY 0: gaps recorded, nothing drafted
    assert weak_below(None, None) == WEAK_BELOW_TEXT and weak_below(object(), None) == WEAK_BELOW_VECTOR  # type: ignore[arg-type]


async def test_with_embeddings_the_vector_scale_decides(pool, minilm):
    from pipelines.kb.ingest import embed_pending

    await import_demo_kb(pool)
    await embed_pending(pool, minilm)
    covered = await add_group(pool, COVERED, "card_delivery", "card_arrival")
    crypto = await add_group(pool, CRYPTO, "crypto", "buy_crypto")
    strong = group_match(await best_matches(pool, minilm, COVERED))
    weak = group_match(await best_matches(pool, minilm, CRYPTO))
    assert strong.score is not None and strong.score >= WEAK_BELOW_VECTOR
    assert weak.score is not None and weak.score < WEAK_BELOW_VECTOR
    # Clusters by similarity: whichever way MiniLM groups these, no covered case is in a gap, and
    # every crypto case that falls in a cluster of 3 or more is.
    found = await find_gaps(pool, minilm, since=NOW - timedelta(days=7), until=NOW, min_cases=3, max_score=None)
    in_gaps = {c for gap, _, _ in found for c in gap.case_ids}
    assert not in_gaps & set(covered)
    assert in_gaps <= set(crypto)
