"""Can this deployment triage, and with what? What `cx health-check` and `/healthz` report: a
fresh install has no local model until labelled history is imported and trained, and without an
Anthropic key either, every case goes to a person."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from db import triage_models
from db.connection import Connection

_TO_TRAIN = "import labelled history with `cx cases import FILE`, then run `cx triage train`"


@dataclass(frozen=True)
class TriageReadiness:
    ready: bool  # some triager can answer: otherwise every case goes to a person
    local_model: str | None  # the stored local model's kind, when it can be used
    claude: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def readiness(conn: Connection, *, claude: bool, embedding_model: str | None) -> TriageReadiness:
    """`embedding_model` is the deployment's embedder (None: none); a local model trained with
    another cannot be used until it is retrained."""
    active = await triage_models.active_summary(conn)
    then = "Claude for the cases it is unsure of" if claude else "no Anthropic key: cases it is unsure of are reviewed"
    if active is not None and active.embedding_model in (None, embedding_model):
        trained = active.created_at.date().isoformat()
        return TriageReadiness(True, active.kind, claude, f"local model {active.kind} ({active.n_examples} examples, "
                                                           f"trained {trained}); {then}")
    if active is None:
        problem, fix = "no local model yet", _TO_TRAIN
    else:
        problem = (f"the local model was trained with embeddings from {active.embedding_model}, and this "
                   f"deployment embeds with {embedding_model or 'nothing'}")
        fix = "retrain it with `cx triage train`"
    if claude:
        return TriageReadiness(True, None, True, f"Claude triages every case: {problem} ({fix})")
    return TriageReadiness(False, None, False, f"no triage model yet: every case goes to a person ({problem}). "
                                               f"To triage, {fix}, or set ANTHROPIC_API_KEY")
