"""Workflow 1 end to end in the real process: a signed webhook in, a triaged and routed case out."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp

from db import examples as examples_db
from db.pool import transaction
from pipelines.signatures import signed_headers
from pipelines.triage.local.triager import train_local
from tests.cli_runner import CX, ROOT, cx_env
from tests.support.net import free_port, healthz
from tests.support.triage import HISTORY


async def test_a_webhook_case_is_triaged_by_the_worker(pool, dsn):
    rows = [(text, label) for label, texts in HISTORY.items() for text in texts]
    async with transaction(pool) as conn:
        category = {"card_arrival": "card_delivery", "lost_or_stolen_card": "security", "exchange_rate": "exchange"}
        await examples_db.add_examples(conn, [(t, category[label], label, None) for t, label in rows], source="import")
    await train_local(pool, None)

    port = free_port()
    env = cx_env(DATABASE_URL=dsn, EMBEDDINGS="none", WEBHOOK_SECRET="s",
                 TAXONOMY_PATH=str(ROOT / "prompts" / "taxonomy-banking.yaml"))
    proc = await asyncio.create_subprocess_exec(
        *CX, "run", "--roles", "web,worker", "--port", str(port), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await healthz(port, lambda b: b.get("status") == "ok")
        body = json.dumps({"customer_email": "zoe@example.com", "subject": "Stolen",
                           "description": "Help, my card was stolen this morning!"}).encode()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/webhooks/intake", data=body,
                                    headers={"Content-Type": "application/json", **signed_headers("s", body)}) as r:
                assert r.status == 202
                case_id = (await r.json())["case_id"]
        for _ in range(100):
            async with pool.acquire() as conn:
                case = await conn.fetchrow("SELECT status, category, subcategory, priority, triage_model "
                                           "FROM cases WHERE case_id = $1::uuid", case_id)
            if case["status"] != "new":
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert (case["category"], case["subcategory"]) == ("security", "lost_or_stolen_card")
    assert case["priority"] == "high", "security starts high; 'stolen' keeps it there"
    # Routed to drafting or a person; the same worker may already have drafted it for review.
    assert case["status"] in ("drafting", "awaiting_review", "human_owned")
    assert case["triage_model"] == "tfidf-svm"
