"""House-style examples: the desk's recent replies, the same all day, make the drafting prompt's stable
prefix long enough for Sonnet 4.6 to cache (2,048 tokens), so the drafts after the first read it from the
cache. They are sent only when they reach that minimum, prompts are cached and the desk drafts often
enough to keep the cache warm, and never with another customer's personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.ai import build_drafter
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.drafting.drafters import WARM_DRAFTS
from pipelines.drafting.step import draft_case
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import POLICY, drafting_case, import_demo_kb
from tests.support.kb_gaps import add_case
from tests.support.triage import TAXONOMY

DRAFT = FakeAnthropic.tool_use(TOOL_NAME, {
    "reply": "Hi Mia,\n\nCards arrive within 5-7 working days.\n\nBest,\nNorthwind Bank Support",
    "cited_article_ids": [], "confidence": 0.8, "questions": [], "risks": []})
YESTERDAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=12)
TOPICS = ("card arrival", "top up", "refund", "exchange rate", "pin", "transfer", "cash withdrawal",
          "direct debit", "statement", "fees", "limits", "account closure")
PRIVATE = "Call us on +44 20 7946 0958 about your transfer, or write to ops.desk@northwind.example today."
TODAY = "A reply sent today: examples are chosen as of midnight UTC, so this one waits until tomorrow."


def reply(topic: str) -> str:
    steps = "\n".join(f"{n}. Open the app, go to {topic}, and check step {n} of what we usually advise here."
                      for n in range(1, 9))
    return (f"Hi Ann,\n\nThanks for asking about {topic}. Here is how it works for every customer.\n\n{steps}\n\n"
            f"If anything about {topic} is still unclear, reply to this email.\n\nBest regards,\nNorthwind Support")


async def history(pool, topics=TOPICS) -> None:
    for i, topic in enumerate(topics):
        await add_case(pool, f"Question about {topic}", "cards", topic.replace(" ", "_"),
                       at=YESTERDAY - timedelta(minutes=i), reply=reply(topic))
    await add_case(pool, "Where is my transfer?", "transfers", "private", at=YESTERDAY, reply=f"Hi Bo,\n\n{PRIVATE * 2}")
    # Sent now: "two hours ago" was yesterday when the suite ran just after midnight UTC.
    await add_case(pool, "And today?", "cards", "today", at=datetime.now(UTC),
                   reply=f"Hi Cy,\n\n{TODAY * 2}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def draft_many(pool, make_settings, n: int, every: float = 60, **overrides) -> list[dict]:
    """`n` cases drafted by the product's drafter on Sonnet 4.6, one every `every` seconds (the fake's cache
    and the drafter on the same clock); each request's system prompt and its usage row."""
    await import_demo_kb(pool)
    clock = Clock()
    async with FakeAnthropic(default=DRAFT, clock=clock) as fake:
        settings = make_settings(anthropic_api_key="k", anthropic_base_url=fake.url, **overrides)
        drafter = build_drafter(settings, pool, clock=clock)
        for i in range(n):
            clock.now += every
            case_id = await drafting_case(pool, confidence=0.9, text=f"Where is my new card? ({i})",
                                          message_id=f"<h{i}@mail.example.com>")
            await draft_case(pool, drafter, None, TAXONOMY, POLICY, case_id)
        bodies = [r.json for r in fake.requests_to("/v1/messages")]
    usage = await pool.fetch("SELECT cached_tokens, cache_write_tokens FROM llm_usage WHERE step = 'draft' "
                             "ORDER BY created_at")
    return [{"system": b["system"][0]["text"], "usage": dict(u)} for b, u in zip(bodies, usage, strict=True)]


async def test_on_a_busy_desk_the_days_examples_make_the_draft_prefix_cacheable_and_it_is_read(pool, make_settings):
    await history(pool)
    drafts = await draft_many(pool, make_settings, WARM_DRAFTS + 3)
    quiet, busy = drafts[:WARM_DRAFTS], drafts[WARM_DRAFTS:]
    assert not [d for d in quiet if "<example>" in d["system"]]  # until the desk has shown it is busy
    first, second, third = busy
    assert first["system"] == second["system"] == third["system"]  # the same all day
    examples = first["system"].count("<example>")
    assert 3 <= examples < len(TOPICS)  # as many as reach the minimum, not all
    assert "Thanks for asking about" in first["system"] and "Hi Ann" not in first["system"]  # no greeting
    assert "7946" not in first["system"] and "ops.desk" not in first["system"]  # never another's data
    assert TODAY not in first["system"]
    assert first["usage"]["cache_write_tokens"] >= 2048 and first["usage"]["cached_tokens"] == 0
    assert second["usage"]["cached_tokens"] == third["usage"]["cached_tokens"] == first["usage"]["cache_write_tokens"]


async def test_on_a_quiet_desk_no_examples_are_sent(pool, make_settings):
    await history(pool)
    drafts = await draft_many(pool, make_settings, WARM_DRAFTS + 2, every=10 * 60)
    assert not [d for d in drafts if "<example>" in d["system"]]
    assert all(d["usage"] == {"cached_tokens": 0, "cache_write_tokens": 0} for d in drafts)


async def test_too_few_examples_to_reach_the_minimum_are_not_sent(pool, make_settings):
    await history(pool, TOPICS[:2])
    drafts = await draft_many(pool, make_settings, WARM_DRAFTS + 2)
    assert not [d for d in drafts if "<example>" in d["system"] or "Thanks for asking about" in d["system"]]
    assert drafts[-1]["usage"] == {"cached_tokens": 0, "cache_write_tokens": 0}


async def test_with_the_prompt_cache_off_no_examples_are_sent(pool, make_settings):
    await history(pool)
    drafts = await draft_many(pool, make_settings, WARM_DRAFTS + 2, anthropic_prompt_cache=False)
    assert not [d for d in drafts if "<example>" in d["system"]]
