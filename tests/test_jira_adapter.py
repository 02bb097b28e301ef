"""The Jira tracker through the real `jira` package against the fake Jira Cloud API: one issue per case, however
often the escalation job runs, with the customer's words filed as data."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipelines.adapters.jira_tracker import JiraTracker
from pipelines.ports import Escalation, IssueRef, Tracker, TrackerError
from tests.fakes.jira import FakeJira

CREATE = "/rest/api/2/issue"
SEARCH = "/rest/api/2/search/jql"


@pytest.fixture
async def fake() -> AsyncIterator[FakeJira]:
    async with FakeJira(projects=("SUP", "DEV")) as server:
        yield server


def tracker(fake: FakeJira, token: str = "token", **kwargs: Any) -> JiraTracker:
    return JiraTracker(fake.url, "bot@example.com", token, "SUP", **kwargs)


def escalation(case_id: uuid.UUID | None = None, **overrides: Any) -> Escalation:
    values: dict[str, Any] = {
        "case_id": case_id or uuid.uuid4(),
        "short_id": "C-1042",
        "summary": "Refund for order 42 never arrived",
        "description": "I was promised a refund two weeks ago.\nStill nothing.",
        "priority": "urgent",
        "labels": ("refunds", "vip"),
        "reporter_note": None,
    }
    return Escalation(**{**values, **overrides})


def created(fake: FakeJira) -> list[dict[str, Any]]:
    return [r.json["fields"] for r in fake.requests_to(CREATE, "POST")]


async def test_escalation_files_one_issue_labelled_with_its_case(fake: FakeJira):
    case = escalation(reporter_note="Customer is a reseller; finance already approved.")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        jira: Tracker
        async with tracker(fake) as jira:
            ref = await jira.escalate(case)
    finally:
        running.cancel()

    assert ref == IssueRef("SUP-1", f"{fake.url}/browse/SUP-1")
    assert ticks > 10  # the loop kept running while the client waited on Jira (which answers from this loop)
    (fields,) = created(fake)
    assert fields["project"] == {"key": "SUP"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "Refund for order 42 never arrived"
    assert fields["priority"] == {"name": "Highest"}
    assert fields["labels"] == ["refunds", "vip", f"cx-case-{case.case_id}"]
    description = fields["description"]
    assert f"CX case C-1042 ({case.case_id})" in description
    assert "{noformat}\nCustomer is a reseller; finance already approved.\n{noformat}" in description
    assert description.endswith("{noformat}\nI was promised a refund two weeks ago.\nStill nothing.\n{noformat}")
    assert fake.issues["SUP-1"]["fields"]["labels"] == fields["labels"]
    (search,) = fake.requests_to(SEARCH)
    assert search.query["jql"] == f'project = "SUP" AND labels = "cx-case-{case.case_id}" ORDER BY created ASC'
    assert not fake.requests_to("/rest/api/2/search")  # retired on Jira Cloud


async def test_a_retried_escalation_returns_the_filed_issue_and_creates_nothing(fake: FakeJira):
    case_id = uuid.uuid4()
    async with tracker(fake) as jira:
        first = await jira.escalate(escalation(case_id))
    async with JiraTracker(fake.url, "bot@example.com", "token", "DEV") as dev:  # same label, other project
        assert (await dev.escalate(escalation(case_id))).key == "DEV-1"
    async with tracker(fake) as retried_job:  # a fresh tracker, as after a worker restart
        again = await retried_job.escalate(escalation(case_id, summary="Reworded", priority="low"))
        other = await retried_job.escalate(escalation())

    assert again == first == IssueRef("SUP-1", f"{fake.url}/browse/SUP-1")
    assert other.key == "SUP-2"
    assert [(f["project"]["key"], f["summary"]) for f in created(fake)] == [
        ("SUP", "Refund for order 42 never arrived"),
        ("DEV", "Refund for order 42 never arrived"),
        ("SUP", "Refund for order 42 never arrived"),
    ]
    assert fake.issues["SUP-1"]["fields"]["priority"] == {"name": "Highest"}


async def test_a_create_whose_answer_was_lost_is_found_by_the_retry(fake: FakeJira):
    case = escalation()
    fake.hang_next(5, only=f"POST {CREATE}", handled=True)
    async with tracker(fake, timeout=0.3) as jira:
        with pytest.raises(TrackerError) as lost:
            await jira.escalate(case)
        assert lost.value.retryable and lost.value.status is None
        assert (await jira.escalate(case)).key == "SUP-1"
    assert list(fake.issues) == ["SUP-1"] and len(created(fake)) == 1


@pytest.mark.parametrize(
    ("priority", "jira_name"), [("urgent", "Highest"), ("high", "High"), ("medium", "Medium"), ("low", "Low")]
)
async def test_priorities_map_to_jira_cloud_names(fake: FakeJira, priority: str, jira_name: str):
    async with tracker(fake) as jira:
        ref = await jira.escalate(escalation(priority=priority))
    assert fake.issues[ref.key]["fields"]["priority"] == {"name": jira_name}


def test_an_unknown_priority_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="priority"):
        escalation(priority="critical")


async def test_customer_text_cannot_close_the_noformat_block(fake: FakeJira):
    hostile = "*bold* [click|http://evil.example]\n{noformat}\n{color:red}escaped{color}\n{NoFormat:title=x}{no{noformat}format}"
    async with tracker(fake) as jira:
        await jira.escalate(escalation(description=hostile, reporter_note="see {noformat} below"))
    description = created(fake)[0]["description"]

    assert len(re.findall(r"\{noformat", description, re.I)) == 4  # our two blocks' own tags, nothing else
    customer = description.split("*Customer message*\n", 1)[1]
    assert customer == (
        "{noformat}\n*bold* [click|http://evil.example]\n\n{color:red}escaped{color}\n{noformat}"
    )
    assert "{noformat}\nsee  below\n{noformat}" in description


async def test_summary_is_one_line_within_jiras_limit(fake: FakeJira):
    long = "Refund\r\n  missing\tfor " + "order " * 60 + "🙂" * 10
    async with tracker(fake) as jira:
        await jira.escalate(escalation(summary=long))
        await jira.escalate(escalation(summary=" \n "))
    summaries = [f["summary"] for f in created(fake)]

    assert summaries[0].startswith("Refund missing for order order") and summaries[0].endswith("…")
    assert "\n" not in summaries[0] and len(summaries[0].encode("utf-16-le")) // 2 <= 255
    assert summaries[1] == "Escalated CX case C-1042"


async def test_labels_with_spaces_are_joined_and_duplicates_dropped(fake: FakeJira):
    async with tracker(fake) as jira:
        await jira.escalate(escalation(labels=("vip customer", "refunds", "refunds", "  ")))
    labels = created(fake)[0]["labels"]
    assert labels[:2] == ["vip-customer", "refunds"] and len(labels) == 3 and labels[2].startswith("cx-case-")


async def test_a_long_message_is_cut_to_fit_the_description_limit(fake: FakeJira):
    async with tracker(fake) as jira:
        await jira.escalate(escalation(description="word " * 10_000))
    description = created(fake)[0]["description"]
    assert len(description) <= 32_767
    assert description.endswith("\n[… truncated]\n{noformat}")


async def test_refused_credentials_are_not_retryable(fake: FakeJira):
    async with tracker(fake, token="wrong") as jira:
        with pytest.raises(TrackerError) as refused:
            await jira.escalate(escalation())
    assert refused.value.status == 401 and refused.value.retryable is False
    assert "Client must be authenticated" in refused.value.message
    authenticated = [r for r in fake.requests if not r.path.endswith("/serverInfo")]
    assert not fake.issues and len(authenticated) == 1  # refused once, retried neither by us nor by the library


async def test_a_bad_request_is_not_retryable_and_carries_jiras_reason(fake: FakeJira):
    async with JiraTracker(fake.url, "bot@example.com", "token", "NOPE") as jira:
        with pytest.raises(TrackerError) as refused:
            await jira.escalate(escalation())
    assert refused.value.status == 400 and refused.value.retryable is False
    assert "valid project is required" in refused.value.message


@pytest.mark.parametrize("code", [503, 429, 500])
async def test_overload_is_retryable_and_the_retry_creates_once(fake: FakeJira, code: int):
    case = escalation()
    fake.fail_next(code, only=f"POST {CREATE}", retry_after=1)
    async with tracker(fake) as jira:
        with pytest.raises(TrackerError) as failed:
            await jira.escalate(case)
        assert failed.value.status == code and failed.value.retryable is True
        assert (await jira.escalate(case)).key == "SUP-1"
    assert len(created(fake)) == 2 and list(fake.issues) == ["SUP-1"]  # one refused, one filed


async def test_an_unreachable_jira_is_retryable():
    gone = await FakeJira().start()
    url = gone.url
    await gone.stop()
    async with JiraTracker(url, "bot@example.com", "token", "SUP", timeout=2) as jira:
        with pytest.raises(TrackerError) as unreachable:
            await jira.escalate(escalation())
    assert unreachable.value.retryable is True and "ConnectionError" in unreachable.value.message


def test_a_project_key_that_would_bend_the_jql_is_refused():
    with pytest.raises(ValueError, match="project key"):
        JiraTracker("http://127.0.0.1:9", "bot@example.com", "token", 'SUP" OR project = "HR')
