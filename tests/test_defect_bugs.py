"""Repeated defects become Jira bugs, through the real Jira adapter against the fake Jira: one Bug per
group, found again the next day (a comment with the new cases only), never duplicated by a crash
or a retry, nothing filed on a quiet day, customer text filed as data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.deps import Deps
from bot.jobs import job_handlers
from bot.runtime.metrics import Metrics
from bot.settings import Settings
from pipelines.adapters.jira_tracker import JiraTracker
from pipelines.jobs import DayJob, JobName
from pipelines.learning.bugs import file_defect_bugs
from pipelines.ports import BugComment, BugReport, BugTracker, IssueRef
from tests.fakes.jira import FakeJira
from tests.support.detection import TopicEmbedder, add_cases, spread

DAY1 = datetime(2026, 11, 18, tzinfo=UTC)  # the end of the first run's window
DAY2 = DAY1 + timedelta(days=1)
CREATE = "/rest/api/2/issue"
HOSTILE = "{noformat} *bold* [click|http://evil.example] {color:red}x{color} h1. Big"


@pytest.fixture
async def jira() -> AsyncIterator[FakeJira]:
    async with FakeJira(projects=("SUP",)) as server:
        yield server


@pytest.fixture
async def tracker(jira: FakeJira) -> AsyncIterator[JiraTracker]:
    async with JiraTracker(jira.url, "bot@example.com", "token", "SUP") as client:
        yield client


async def run(pool, tracker: BugTracker | None, until: datetime = DAY1, *, embedder: Any = "topics",
              min_cases: int = 5):
    return await file_defect_bugs(pool, tracker, TopicEmbedder() if embedder == "topics" else embedder,
                                  until=until, min_cases=min_cases, categories=frozenset({"defect"}))


async def login_cases(pool, start: datetime, end: datetime, count: int, text: str = "login fails after update"):
    async with pool.acquire() as conn:
        return await add_cases(conn, spread(start, end, count), category="defect", subcategory="login", text=text,
                               topic="login")


def bugs(jira: FakeJira) -> list[dict[str, Any]]:
    return [i for i in jira.issues.values() if i["fields"]["issuetype"]["name"] == "Bug"]


async def opportunities(pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM improvement_opportunities WHERE opportunity_type = 'recurring_issue'")
    return [dict(r) for r in rows]


async def short_ids(pool, case_ids) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT short_id FROM cases WHERE case_id = ANY($1) ORDER BY short_id", case_ids)
    return [f"CX-{r['short_id']}" for r in rows]


async def test_a_group_files_one_bug_labelled_with_its_fingerprint(pool, jira, tracker):
    cases = await login_cases(pool, DAY1 - timedelta(days=5), DAY1, 6)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE cases SET error_codes = '{AUTH-401}' WHERE case_id = ANY($1)", cases[:2])

    [filing] = await run(pool, tracker)

    assert filing.action == "filed" and filing.issue_key == "SUP-1"
    assert set(filing.case_ids) == set(cases) and set(filing.new_case_ids) == set(cases)
    assert re.fullmatch(r"cx-bug-[0-9a-f]{12}", filing.fingerprint)
    [bug] = bugs(jira)
    fields = bug["fields"]
    assert fields["labels"] == [filing.fingerprint]
    assert fields["summary"].startswith("Recurring defect: login fails after update #")
    description = fields["description"]
    assert "6 similar cases in the 7 days to 2026-11-18 00:00 UTC (defect / login)" in description
    for ref in await short_ids(pool, cases):
        assert ref in description
    assert "AUTH-401 (2)" in description
    [row] = await opportunities(pool)
    assert (row["fingerprint"], row["jira_issue_key"], row["frequency"]) == (filing.fingerprint, "SUP-1", 6)
    assert set(row["case_ids"]) == set(cases) and row["last_detected_at"] == DAY1


async def test_the_next_day_comments_the_new_cases_only_and_files_nothing(pool, jira, tracker):
    first = await login_cases(pool, DAY1 - timedelta(days=5), DAY1, 6)
    [day1] = await run(pool, tracker)
    later = await login_cases(pool, DAY1, DAY2, 3)

    [day2] = await run(pool, tracker, DAY2)

    assert (day2.action, day2.issue_key, day2.fingerprint) == ("commented", "SUP-1", day1.fingerprint)
    assert set(day2.new_case_ids) == set(later)
    assert len(bugs(jira)) == 1
    [comment] = jira.issues["SUP-1"]["fields"]["comment"]["comments"]
    for ref in await short_ids(pool, later):
        assert ref in comment["body"]
    for ref in await short_ids(pool, first):
        assert ref not in comment["body"]
    assert "3 new cases; 9 similar cases in the last 7 days." in comment["body"]
    [row] = await opportunities(pool)
    assert row["frequency"] == 9 and set(row["case_ids"]) == set(first + later) and row["last_detected_at"] == DAY2

    [again] = await run(pool, tracker, DAY2)  # the job retried: nothing new to say
    assert again.action == "unchanged" and len(jira.issues["SUP-1"]["fields"]["comment"]["comments"]) == 1


async def test_the_fingerprint_survives_the_window_sliding_past_the_first_cases(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=6), DAY1 - timedelta(days=4), 5)
    [day1] = await run(pool, tracker)
    await login_cases(pool, DAY1 + timedelta(days=2), DAY1 + timedelta(days=5), 5)

    # Eight days on, none of the first cases is in the window: the centroid finds the bug.
    [later] = await run(pool, tracker, DAY1 + timedelta(days=8))

    assert (later.action, later.fingerprint, later.issue_key) == ("commented", day1.fingerprint, "SUP-1")
    assert len(bugs(jira)) == 1


async def test_a_crash_after_filing_finds_the_bug_by_its_label(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=3), DAY1, 5)

    class DiesAfterFiling:
        """The real tracker, but the run dies once the Bug is filed, before it is recorded."""

        async def find_by_label(self, label: str) -> IssueRef | None:
            return await tracker.find_by_label(label)

        async def file_bug(self, bug: BugReport) -> IssueRef:
            await tracker.file_bug(bug)
            raise ConnectionResetError("worker killed")

        async def comment(self, key: str, comment: BugComment) -> bool:
            return await tracker.comment(key, comment)

    with pytest.raises(ConnectionResetError):
        await run(pool, DiesAfterFiling())
    assert len(bugs(jira)) == 1 and await opportunities(pool) == []

    [rerun] = await run(pool, tracker)

    assert (rerun.action, rerun.issue_key) == ("found", "SUP-1")
    assert len(bugs(jira)) == 1 and len(jira.requests_to(CREATE, "POST")) == 1
    [row] = await opportunities(pool)
    assert row["jira_issue_key"] == "SUP-1" and row["fingerprint"] == bugs(jira)[0]["fields"]["labels"][0]


async def test_a_comment_retried_after_a_crash_is_not_added_twice(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=3), DAY1, 5)
    await run(pool, tracker)
    await login_cases(pool, DAY1, DAY2, 2)

    class DiesAfterCommenting:
        async def find_by_label(self, label: str) -> IssueRef | None:
            return await tracker.find_by_label(label)

        async def file_bug(self, bug: BugReport) -> IssueRef:
            return await tracker.file_bug(bug)

        async def comment(self, key: str, comment: BugComment) -> bool:
            await tracker.comment(key, comment)
            raise ConnectionResetError("worker killed")

    with pytest.raises(ConnectionResetError):
        await run(pool, DiesAfterCommenting(), DAY2)
    [rerun] = await run(pool, tracker, DAY2)

    assert rerun.action == "commented"
    assert len(jira.issues["SUP-1"]["fields"]["comment"]["comments"]) == 1


async def test_a_quiet_week_files_nothing(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=3), DAY1, 4)  # one short of BUG_MIN_CASES
    async with pool.acquire() as conn:
        await add_cases(conn, spread(DAY1 - timedelta(days=3), DAY1, 5), category="defect", topic="x",
                        text="a different defect each time", embed=False)  # random topics: no group

    assert await run(pool, tracker) == []
    assert jira.issues == {} and jira.requests_to(CREATE, "POST") == [] and await opportunities(pool) == []


async def test_groups_outside_the_defect_categories_are_ignored(pool, jira, tracker):
    async with pool.acquire() as conn:
        await add_cases(conn, spread(DAY1 - timedelta(days=3), DAY1, 8), category="billing", subcategory="refund",
                        topic="refund")
        await add_cases(conn, spread(DAY1 - timedelta(days=3), DAY1, 8), category="account", subcategory="login",
                        topic="login")

    assert await run(pool, tracker) == []
    assert await run(pool, tracker, embedder=None) == []
    assert jira.issues == {}


async def test_without_embeddings_a_category_group_becomes_one_bug(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=3), DAY1, 5)
    [day1] = await run(pool, tracker, embedder=None)
    await login_cases(pool, DAY1, DAY2, 1)
    [day2] = await run(pool, tracker, DAY2, embedder=None)

    assert (day1.action, day2.action, day2.fingerprint) == ("filed", "commented", day1.fingerprint)
    assert len(bugs(jira)) == 1


async def test_customer_markup_is_filed_as_text(pool, jira, tracker):
    await login_cases(pool, DAY1 - timedelta(days=3), DAY1, 5, text=f"login {HOSTILE}")

    await run(pool, tracker)

    description = bugs(jira)[0]["fields"]["description"]
    # Every piece of customer text sits inside a {noformat} block, which the text cannot close.
    outside = re.sub(r"\{noformat\}\n.*?\n\{noformat\}", "", description, flags=re.S)
    assert "*bold*" not in outside and "evil.example" not in outside and "{color" not in outside
    assert description.count("{noformat}") % 2 == 0
    assert "*bold* [click|http://evil.example] {color:red}x{color} h1. Big" in description


def settings_for(jira: FakeJira | None) -> Settings:
    extra: dict[str, Any] = {}
    if jira is not None:
        extra = {"jira_url": jira.url, "jira_email": "bot@example.com", "jira_api_token": "token"}
    return Settings(_env_file=None, bug_min_cases=5, bug_categories="defect, crash", embeddings="none", **extra)


async def test_the_file_bugs_job_files_the_days_bugs_through_jira(pool, jira):
    await login_cases(pool, datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 17, 23, tzinfo=UTC), 5)
    deps = Deps(settings=settings_for(jira), pool=pool, metrics=Metrics())
    job = DayJob(day=date(2026, 11, 17)).payload()

    await job_handlers(deps)[JobName.FILE_BUGS](job)
    await job_handlers(deps)[JobName.FILE_BUGS](job)  # a retry

    assert len(bugs(jira)) == 1
    [row] = await opportunities(pool)
    assert row["last_detected_at"] == datetime(2026, 11, 18, tzinfo=UTC)


async def test_without_jira_the_job_records_the_groups_and_succeeds(pool):
    cases = await login_cases(pool, datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 17, 23, tzinfo=UTC), 5)
    deps = Deps(settings=settings_for(None), pool=pool, metrics=Metrics())

    await job_handlers(deps)[JobName.FILE_BUGS](DayJob(day=date(2026, 11, 17)).payload())

    [row] = await opportunities(pool)
    assert row["jira_issue_key"] is None and set(row["case_ids"]) == set(cases)


async def test_the_jira_adapter_is_a_bug_tracker_that_files_bugs_and_comments_once(jira, tracker):
    assert isinstance(tracker, BugTracker)
    assert await tracker.find_by_label("cx-bug-000000000001") is None
    report = BugReport(label="cx-bug-000000000001", summary="Recurring defect:\nexport  fails",
                       sections=(("Cases", "CX-1001"),))
    ref = await tracker.file_bug(report)
    assert await tracker.file_bug(report) == ref == await tracker.find_by_label("cx-bug-000000000001")
    [bug] = bugs(jira)
    assert bug["fields"]["summary"] == "Recurring defect: export fails"
    assert bug["fields"]["issuetype"]["name"] == "Bug"

    update = BugComment(marker="CX-Catalyst update cx-bug-000000000001 1", sections=(("New cases", "CX-1002"),))
    assert await tracker.comment(ref.key, update) is True
    assert await tracker.comment(ref.key, update) is False
    [comment] = jira.issues[ref.key]["fields"]["comment"]["comments"]
    assert comment["body"] == "*New cases*\n{noformat}\nCX-1002\n{noformat}\nCX-Catalyst update cx-bug-000000000001 1"

    with pytest.raises(ValueError):
        await tracker.find_by_label('x" OR project = "OTHER')
