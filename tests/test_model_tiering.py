"""Model tiering: one table says which Claude model each step calls, every step that calls Claude is
in it, and the product's own builders and jobs call the model the table names."""

from __future__ import annotations

import ast
import json

from bot.ai import build_drafter, build_triager
from bot.deps import Deps
from bot.jobs import job_handlers
from bot.model_tiers import MODEL_TIERS, model_for
from bot.runtime.metrics import Metrics
from pipelines.adapters.anthropic_llm import TOOL_NAME
from pipelines.drafting.step import draft_case
from pipelines.jobs import JobName
from pipelines.triage.step import triage_case
from tests.cli_runner import ROOT
from tests.fakes.anthropic import FakeAnthropic
from tests.support.cases import POLICY, drafting_case, import_demo_kb, new_case
from tests.support.incidents import IncidentCase, insert_incident
from tests.support.triage import TAXONOMY, THRESHOLDS, answer

# Not the defaults, so a step that read the wrong setting, or none, is caught.
FAST, MAIN = "claude-haiku-4-5-20251001", "claude-sonnet-4-5"


def _steps_calling_claude() -> set[str]:
    """The `step=` of every StructuredLLM.complete call in pipelines/, a literal or a module constant."""
    steps: set[str] = set()
    for path in (ROOT / "pipelines").rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "complete":
                (step,) = [k.value for k in node.keywords if k.arg == "step"]
                steps.add(step.value if isinstance(step, ast.Constant) else constants[step.id])
    return steps


def test_the_table_names_every_step_that_calls_claude():
    assert set(MODEL_TIERS) == _steps_calling_claude() == {"triage", "draft", "incident_summary", "kb_article"}
    assert {step: tier.value for step, tier in MODEL_TIERS.items()} == {
        "triage": "fast", "incident_summary": "fast", "draft": "main", "kb_article": "main"}


def test_each_tier_reads_its_setting(make_settings):
    settings = make_settings(anthropic_fast_model=FAST, anthropic_model=MAIN)
    assert {step: model_for(settings, step) for step in MODEL_TIERS} == {
        "triage": FAST, "incident_summary": FAST, "draft": MAIN, "kb_article": MAIN}
    defaults = make_settings()
    assert (model_for(defaults, "triage"), model_for(defaults, "draft")) == ("claude-haiku-4-5", "claude-sonnet-4-6")


async def _recorded(pool, step: str) -> list[str]:
    return [r["model"] for r in await pool.fetch("SELECT model FROM llm_usage WHERE step = $1", step)]


async def test_triage_escalation_and_summaries_call_the_fast_model_and_drafting_the_main_one(pool, make_settings):
    async with FakeAnthropic() as fake:
        settings = make_settings(anthropic_api_key="test-key", anthropic_base_url=fake.url,
                                 anthropic_fast_model=FAST, anthropic_model=MAIN)

        fake.script(fake.tool_use(TOOL_NAME, answer(confidence=0.93)))
        triager = build_triager(settings, pool, TAXONOMY, None)  # no local model yet: every case escalates
        await triage_case(pool, triager, TAXONOMY, THRESHOLDS, await new_case(pool))

        await import_demo_kb(pool)
        fake.script(fake.tool_use(TOOL_NAME, {"reply": "Hi Mia,\n\nCards arrive within 5-7 working days.",
                                              "cited_article_ids": [], "confidence": 0.9, "questions": [],
                                              "risks": []}))
        await draft_case(pool, build_drafter(settings, pool), None, TAXONOMY, POLICY,
                         await drafting_case(pool, confidence=0.95))

        incident = await insert_incident(pool, [IncidentCase("Refund failed", "The refund button errors.", "standard")])
        fake.script(fake.tool_use(TOOL_NAME, {
            "summary": "Refunds fail.", "root_cause_hypothesis": "The refund API rejects requests.",
            "customer_impact": "No refunds.", "recommended_actions": ["Check the refund service"],
            "severity_suggestion": "high", "confidence": 0.6}))
        await job_handlers(Deps(settings, pool, Metrics()))[JobName.ALERT_SUMMARY](
            json.dumps({"alert_id": str(incident.alert_id)}).encode())

        sent = [r.json["model"] for r in fake.requests_to("/v1/messages")]
    assert sent == [FAST, MAIN, FAST]
    assert await _recorded(pool, "triage") == [FAST]
    assert await _recorded(pool, "draft") == [MAIN]
    assert await _recorded(pool, "incident_summary") == [FAST]
