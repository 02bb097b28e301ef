"""Prompt-cache hit ratio on a replay: N cases through the Claude triager and the Claude drafter, against the
fake Anthropic, once with the cache breakpoint and once without.

    python bench/llm_cache.py [--cases 200] [--triage-model claude-haiku-4-5] [--draft-model claude-sonnet-4-6]
                              [--taxonomy prompts/taxonomy.yaml] [--json]

Cases are the first N rows of banking77's train.csv; each triage carries 8 labelled few-shot examples (as the
local model's similar-examples search would give) and each draft 3 demo knowledge-base articles, so the per-case
part of the prompt has a realistic size. The fake counts tokens from the request text at 4 characters a token and
applies the documented minimum cacheable prefix per model and the 5-minute lifetime.

Hit ratio as `cx usage` defines it: cache-read tokens / (input + cache-read + cache-write tokens).
Cost at list prices per million tokens; cache reads at 0.1x input, 5-minute cache writes at 1.25x input.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anthropic  # noqa: E402

from db.kb import Hit  # noqa: E402
from pipelines.adapters.anthropic_llm import TOOL_NAME, AnthropicLLM  # noqa: E402
from pipelines.drafting.drafters import ClaudeDrafter  # noqa: E402
from pipelines.kb.documents import collect, read_file  # noqa: E402
from pipelines.ports import DraftInput, LabelledExample, LLMUsage, TriageInput  # noqa: E402
from pipelines.taxonomy import Taxonomy, load_taxonomy  # noqa: E402
from pipelines.triage.triagers import ClaudeTriager  # noqa: E402
from prompts import load  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic, cache_minimum, prompt_segments  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
# (input, output) USD per million tokens, list prices.
PRICES = {"claude-haiku-4-5": (1.00, 5.00), "claude-sonnet-4-6": (3.00, 15.00), "claude-sonnet-4-5": (3.00, 15.00)}


def _answer(taxonomy: Taxonomy) -> Any:
    category, spec = next(iter(taxonomy.categories.items()))
    sub = next(iter(spec.subcategories), None)

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if "reply" in body["tools"][0]["input_schema"]["properties"]:
            reply = {"reply": "Hi Mia,\n\n1. Open the app.\n2. Tap Cards.\n\nBest,\nAcme Support",
                     "cited_article_ids": [], "confidence": 0.8, "questions": [], "risks": []}
            return FakeAnthropic.tool_use(TOOL_NAME, reply)
        triage = {"category": category, "subcategory": sub, "priority": "medium", "sentiment": "neutral",
                  "language": "en", "summary": "Customer asks about a card", "error_codes": [],
                  "confidence": 0.8, "reason": "The message names the card."}
        return FakeAnthropic.tool_use(TOOL_NAME, triage)

    return answer


def _hits() -> list[Hit]:
    articles = [a for path, root in collect([ROOT / "samples" / "kb"]) for a in read_file(path, root)]
    return [Hit(article_id=uuid.uuid5(uuid.NAMESPACE_URL, a.source_id), title=a.meta.title, url=None, category=None,
                subcategory=None, chunk_id=uuid.uuid4(), heading=a.meta.title, content=a.body[:1500],
                snippet="", score=1.0, vector_rank=1, text_rank=1) for a in articles]


def _cost(model: str, u: dict[str, int]) -> float:
    inp, out = next(p for m, p in PRICES.items() if model.startswith(m))
    return (u["input"] * inp + u["cache_read"] * inp * 0.1 + u["cache_write"] * inp * 1.25
            + u["output"] * out) / 1e6


async def replay(rows: list[dict[str, str]], *, cache: bool, taxonomy: Taxonomy, triage_model: str,
                 draft_model: str) -> dict[str, Any]:
    rng = random.Random(0)
    hits = _hits()
    examples = [LabelledExample(text=r["text"], label=r["category"]) for r in rows]

    async def similar(text: str, k: int) -> tuple[Sequence[LabelledExample], LLMUsage | None]:
        return rng.sample(examples, k), None

    usages: list[LLMUsage] = []
    async with FakeAnthropic(default=_answer(taxonomy)) as fake:
        client = anthropic.AsyncAnthropic(api_key="bench", base_url=fake.url, max_retries=0)
        llm = AnthropicLLM(client, cache=cache)
        triager = ClaudeTriager(llm, taxonomy, model=triage_model, system=load("triage"),
                                request=load("triage_request"), similar=similar, company="Acme")
        drafter = ClaudeDrafter(llm, model=draft_model, system=load("draft"), request=load("draft_request"),
                                company="Acme")
        for i, row in enumerate(rows):
            triaged = await triager.triage(TriageInput(body=row["text"], subject="Help"))
            usages.extend(u for u in triaged.usage if u.provider == "anthropic")
            draft = await drafter.draft(DraftInput(
                case_ref=f"CX-{i}", subject="Help", body=row["text"], customer_name="Mia Wong", tier="standard",
                category=triaged.result.category, subcategory=triaged.result.subcategory, priority="medium",
                articles=[hits[(i + j) % len(hits)] for j in range(3)]))
            usages.extend(draft.usage)
        await client.close()
        bodies = [r.json for r in fake.requests_to("/v1/messages")]

    def stable_tokens(step_index: int) -> int:
        # Tools and system of the step's first request: the prefix the cache breakpoint closes.
        body = bodies[step_index]
        return sum(len(t) for t, _ in prompt_segments({"tools": body["tools"], "system": body["system"]})) // 4

    steps: dict[str, Any] = {}
    for step in ("triage", "draft"):
        mine = [u for u in usages if u.step == step]
        totals = {"input": sum(u.input_tokens for u in mine), "output": sum(u.output_tokens for u in mine),
                  "cache_read": sum(u.cached_tokens for u in mine),
                  "cache_write": sum(u.cache_write_tokens for u in mine)}
        prompt = totals["input"] + totals["cache_read"] + totals["cache_write"]
        model = mine[0].model
        steps[step] = {"model": model, "calls": len(mine), **{f"{k}_tokens": v for k, v in totals.items()},
                       "stable_prefix_tokens": stable_tokens(0 if step == "triage" else 1),
                       "cache_minimum_tokens": cache_minimum(model),
                       "prompt_tokens_per_case": prompt / len(rows),
                       "hit_ratio": totals["cache_read"] / prompt if prompt else None,
                       "usd_per_1000_cases": _cost(model, totals) / len(rows) * 1000}
    prompt = sum(s["input_tokens"] + s["cache_read_tokens"] + s["cache_write_tokens"] for s in steps.values())
    read = sum(s["cache_read_tokens"] for s in steps.values())
    return {"cache": cache, "cases": len(rows), "hit_ratio": read / prompt if prompt else None,
            "prompt_tokens_per_case": prompt / len(rows),
            "usd_per_1000_cases": sum(s["usd_per_1000_cases"] for s in steps.values()), "by_step": steps}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--taxonomy", type=Path, default=ROOT / "prompts" / "taxonomy.yaml")
    parser.add_argument("--triage-model", default="claude-haiku-4-5")
    parser.add_argument("--draft-model", default="claude-sonnet-4-6")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with args.data.open(newline="") as f:
        rows = list(csv.DictReader(f))[: args.cases]
    taxonomy = load_taxonomy(args.taxonomy)
    runs = [await replay(rows, cache=cache, taxonomy=taxonomy, triage_model=args.triage_model,
                         draft_model=args.draft_model) for cache in (True, False)]
    result = {"taxonomy": args.taxonomy.name, "with_cache": runs[0], "without_cache": runs[1]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for run in runs:
        print(f"cache {'on ' if run['cache'] else 'off'}: hit ratio {run['hit_ratio'] or 0:.1%}, "
              f"{run['prompt_tokens_per_case']:.0f} prompt tokens/case, ${run['usd_per_1000_cases']:.2f}/1000 cases")
        for step, s in run["by_step"].items():
            print(f"  {step:7} {s['model']:18} prefix {s['stable_prefix_tokens']:5}/min {s['cache_minimum_tokens']:5}  hit {s['hit_ratio'] or 0:6.1%}  "
                  f"{s['prompt_tokens_per_case']:6.0f} tok/case  ${s['usd_per_1000_cases']:.2f}/1000")


if __name__ == "__main__":
    asyncio.run(main())
