from __future__ import annotations

import asyncio

import asyncpg
import pytest

from db.cases import ActorType, CaseNotFound, CaseStatus, InvalidTransition, allowed_transitions, transition
from db.pool import transaction

S = CaseStatus


async def new_case(pool) -> object:
    async with pool.acquire() as conn:
        customer = await conn.fetchval("INSERT INTO customers (email) VALUES ('ann@example.com') RETURNING customer_id")
        return await conn.fetchval(
            "INSERT INTO cases (customer_id, channel, description) VALUES ($1, 'email', 'My card is lost') RETURNING case_id",
            customer,
        )


async def test_the_happy_path_is_recorded_with_its_actors(pool):
    case_id = await new_case(pool)
    steps = [
        (S.TRIAGED, ActorType.AI, "triage.local"),
        (S.AWAITING_REVIEW, ActorType.SYSTEM, "router"),
        (S.SENDING, ActorType.REVIEWER, "U123"),
        (S.REPLIED, ActorType.SYSTEM, "outbox"),
        (S.RESOLVED, ActorType.CUSTOMER, "ann@example.com"),
    ]
    async with transaction(pool) as conn:
        for to, actor_type, actor_id in steps:
            await transition(conn, case_id, to, actor_type=actor_type, actor_id=actor_id)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT from_status, to_status, actor_type, actor_id FROM case_interactions "
            "WHERE case_id = $1 AND interaction_type = 'status_change' ORDER BY created_at, interaction_id",
            case_id,
        )
        case = await conn.fetchrow("SELECT status, triaged_at, resolved_at FROM cases WHERE case_id = $1", case_id)
    assert [(r["from_status"], r["to_status"]) for r in rows] == [
        ("new", "triaged"), ("triaged", "awaiting_review"), ("awaiting_review", "sending"),
        ("sending", "replied"), ("replied", "resolved"),
    ]
    assert [r["actor_id"] for r in rows] == [s[2] for s in steps]
    assert case["status"] == "resolved"
    assert case["triaged_at"] is not None and case["resolved_at"] is not None


async def test_an_illegal_move_is_refused_and_the_transaction_survives(pool):
    case_id = await new_case(pool)
    async with transaction(pool) as conn:
        with pytest.raises(InvalidTransition) as caught:
            await transition(conn, case_id, S.REPLIED, actor_type=ActorType.SYSTEM, actor_id="test")
        assert (caught.value.current, caught.value.wanted) == ("new", "replied")
        # The refusal did not poison the transaction: the legal move still works.
        await transition(conn, case_id, S.TRIAGED, actor_type=ActorType.AI, actor_id="test")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "triaged"


async def test_the_database_itself_refuses_illegal_moves(pool):
    case_id = await new_case(pool)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="cannot move from new to closed"):
            await conn.execute("UPDATE cases SET status = 'closed' WHERE case_id = $1", case_id)
        with pytest.raises(asyncpg.CheckViolationError, match="starts as new"):
            await conn.execute(
                "INSERT INTO cases (customer_id, channel, description, status) "
                "SELECT customer_id, 'email', 'x', 'replied' FROM cases WHERE case_id = $1",
                case_id,
            )


async def test_an_unknown_case_is_reported(pool):
    import uuid

    async with pool.acquire() as conn:
        with pytest.raises(CaseNotFound):
            await transition(conn, uuid.uuid4(), S.TRIAGED, actor_type=ActorType.AI, actor_id="t")


async def test_two_reviewers_at_once_exactly_one_wins(pool):
    case_id = await new_case(pool)
    async with transaction(pool) as conn:
        await transition(conn, case_id, S.TRIAGED, actor_type=ActorType.AI, actor_id="t")
        await transition(conn, case_id, S.AWAITING_REVIEW, actor_type=ActorType.SYSTEM, actor_id="t")

    async def act(to: CaseStatus, who: str):
        async with transaction(pool) as conn:
            await transition(conn, case_id, to, actor_type=ActorType.REVIEWER, actor_id=who)
            await asyncio.sleep(0.05)  # hold the row lock so the other click waits on it

    outcomes = await asyncio.gather(
        act(S.SENDING, "U_APPROVER"), act(S.CLOSED, "U_REJECTER"), return_exceptions=True
    )
    assert sum(o is None for o in outcomes) == 1
    assert sum(isinstance(o, InvalidTransition) for o in outcomes) == 1


async def test_every_status_can_be_left_except_through_the_table(pool):
    async with pool.acquire() as conn:
        allowed = await allowed_transitions(conn)
    assert set(allowed) == set(CaseStatus), "every status has a way out"
    reachable = {to for targets in allowed.values() for to in targets}
    assert reachable == set(CaseStatus) - {S.NEW}, "every status but new can be reached"
