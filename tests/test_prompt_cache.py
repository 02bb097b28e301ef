"""Prompt caching: the fake Anthropic accounts cache reads and writes as the API does, and the adapter lays
requests out so that a step's stable prefix (tool schema + system prompt) is read from the cache."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam

from pipelines.adapters.anthropic_llm import TOOL_NAME, AnthropicLLM
from pipelines.triage.step import triage_case
from pipelines.triage.triagers import CascadeTriager, ClaudeTriager
from prompts import load
from tests.fakes.anthropic import FakeAnthropic, cache_minimum
from tests.support.cases import new_case
from tests.support.triage import TAXONOMY, THRESHOLDS, ScriptedLocal, answer

SONNET_45 = "claude-sonnet-4-5"  # caches from 1,024 tokens
HI: list[MessageParam] = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, n: float) -> None:
        self.now += n * 60


def _system(tokens: int, cached: bool = True) -> list[TextBlockParam]:
    block: TextBlockParam = {"type": "text", "text": "x" * (tokens * 4)}
    if cached:
        block["cache_control"] = {"type": "ephemeral"}
    return [block]


async def _usage(client: anthropic.AsyncAnthropic, model: str = SONNET_45, **kwargs: Any) -> anthropic.types.Usage:
    message = await client.messages.create(model=model, max_tokens=5, messages=kwargs.pop("messages", HI), **kwargs)
    return message.usage


@pytest.fixture
async def cached() -> Any:
    clock = Clock()
    async with FakeAnthropic(default=FakeAnthropic.text("ok"), clock=clock) as fake:
        async with anthropic.AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=0) as client:
            yield fake, clock, client


async def test_the_minimums_are_the_documented_ones():
    assert [cache_minimum(m) for m in ("claude-sonnet-4-5", "claude-sonnet-4-6", "claude-haiku-4-5-20251001",
                                       "claude-opus-4-6")] == [1024, 2048, 4096, 4096]


async def test_a_prefix_is_written_then_read_within_five_minutes_and_written_again_after(cached):
    _, clock, client = cached
    first = await _usage(client, system=_system(1500))
    clock.minutes(4)
    second = await _usage(client, system=_system(1500))
    clock.minutes(4)  # 8 minutes after the write, 4 after the read that renewed it
    third = await _usage(client, system=_system(1500))
    clock.minutes(6)
    fourth = await _usage(client, system=_system(1500))

    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (1500, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 1500)
    assert (third.cache_creation_input_tokens, third.cache_read_input_tokens) == (0, 1500)
    assert (fourth.cache_creation_input_tokens, fourth.cache_read_input_tokens) == (1500, 0)


async def test_input_tokens_is_the_uncached_remainder(cached):
    _, _, client = cached
    counted = await client.messages.count_tokens(model=SONNET_45, messages=HI, system=_system(1500))
    first = await _usage(client, system=_system(1500))
    second = await _usage(client, system=_system(1500))

    assert first.input_tokens == counted.input_tokens - 1500 > 0
    assert second.input_tokens == first.input_tokens
    assert second.input_tokens + (second.cache_read_input_tokens or 0) == counted.input_tokens


async def test_a_prefix_below_the_model_minimum_is_never_cached(cached):
    _, _, client = cached
    sonnet = [await _usage(client, system=_system(1000)) for _ in range(2)]
    haiku = [await _usage(client, model="claude-haiku-4-5", system=_system(3000)) for _ in range(2)]

    for usage in sonnet + haiku:
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    assert sonnet[1].input_tokens >= 1000 and haiku[1].input_tokens >= 3000


async def test_the_prefix_runs_to_the_last_breakpoint_and_includes_the_tools(cached):
    _, _, client = cached
    tool: ToolParam = {"name": "t", "description": "d", "input_schema": {"type": "object"}}
    long_turn: list[MessageParam] = [{"role": "user", "content": [
        {"type": "text", "text": "y" * 8000, "cache_control": {"type": "ephemeral"}}]}]
    unmarked = [await _usage(client, tools=[tool], system=_system(1500, cached=False)) for _ in range(2)]
    first = await _usage(client, tools=[tool], system=_system(1500), messages=long_turn)
    changed_tool = await _usage(client, tools=[{**tool, "description": "e"}], system=_system(1500),
                                messages=long_turn)
    other_model = await _usage(client, model="claude-opus-4-1", tools=[tool], system=_system(1500),
                               messages=long_turn)

    assert all(u.cache_creation_input_tokens == 0 and u.cache_read_input_tokens == 0 for u in unmarked)
    # Tools, system and the marked user turn (with its role marker) make the prefix.
    assert (first.cache_creation_input_tokens or 0) > 1500 + 2000
    assert changed_tool.cache_read_input_tokens == 0 and changed_tool.cache_creation_input_tokens
    assert other_model.cache_read_input_tokens == 0 and other_model.cache_creation_input_tokens


def _triager(fake: FakeAnthropic, model: str, *, cache: bool = True) -> ClaudeTriager:
    client = anthropic.AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=0)
    return ClaudeTriager(AnthropicLLM(client, cache=cache), TAXONOMY, model=model,
                         system=load("triage"), request=load("triage_request"))


async def _triage_two(pool, fake: FakeAnthropic, triager: ClaudeTriager) -> list[Any]:
    fake.script(fake.tool_use(TOOL_NAME, answer()), fake.tool_use(TOOL_NAME, answer()))
    cascade = CascadeTriager(ScriptedLocal(0.5), triager, high=0.85)
    for text in ("My transfer has not arrived.", "My salary transfer is missing since Monday."):
        await triage_case(pool, cascade, TAXONOMY, THRESHOLDS, await new_case(pool, text))
    return await pool.fetch("SELECT input_tokens, cached_tokens, cache_write_tokens FROM llm_usage "
                            "WHERE provider = 'anthropic' ORDER BY created_at")


async def test_a_second_case_reads_the_stable_prefix_from_the_cache(pool):
    async with FakeAnthropic() as fake:
        first, second = await _triage_two(pool, fake, _triager(fake, SONNET_45))
        bodies = [r.json for r in fake.requests_to("/v1/messages")]

    assert first["cache_write_tokens"] >= 1024 and first["cached_tokens"] == 0
    assert second["cached_tokens"] == first["cache_write_tokens"] and second["cache_write_tokens"] == 0
    # Stable first, marked; the case's own words only after the breakpoint.
    assert bodies[0]["system"] == bodies[1]["system"] and bodies[0]["tools"] == bodies[1]["tools"]
    assert bodies[0]["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "salary" not in str(bodies[1]["system"]) and "salary" in str(bodies[1]["messages"])


async def test_without_caching_every_case_pays_the_full_prompt(pool):
    async with FakeAnthropic() as fake:
        rows = await _triage_two(pool, fake, _triager(fake, SONNET_45, cache=False))
        bodies = [r.json for r in fake.requests_to("/v1/messages")]

    assert all(r["cached_tokens"] == 0 and r["cache_write_tokens"] == 0 for r in rows)
    assert rows[0]["input_tokens"] > 1024
    assert "cache_control" not in str(bodies)


async def test_haiku_triage_is_below_its_minimum_and_does_not_cache(pool):
    """A finding, kept as a test: triage's stable prefix (~1.1k tokens with the default taxonomy) is under
    Haiku 4.5's 4,096-token minimum, so the fast tier pays full input price until the prefix grows."""
    async with FakeAnthropic() as fake:
        rows = await _triage_two(pool, fake, _triager(fake, "claude-haiku-4-5"))

    assert all(r["cached_tokens"] == 0 and r["cache_write_tokens"] == 0 for r in rows)
    assert 1024 <= rows[0]["input_tokens"] < 4096
