from __future__ import annotations

import asyncpg

from tests.cli_runner import ROOT, cx, cx_env
from tests.support.db import count

SAMPLES = ROOT / "samples" / "inbox"
BANKING = ROOT / "prompts" / "taxonomy-banking.yaml"


async def test_intake_eml_imports_a_folder_and_summarises(dsn):
    result = cx("intake", "eml", str(SAMPLES), env=cx_env(DATABASE_URL=dsn))
    assert result.returncode == 0, result.stderr
    assert "created: 9" in result.stdout and "appended: 1" in result.stdout and "skipped: 2" in result.stdout
    assert "bounce" in result.stdout and "auto_reply" in result.stdout
    assert await count(dsn, "cases") == 9
    again = cx("intake", "eml", str(SAMPLES), env=cx_env(DATABASE_URL=dsn))
    assert again.returncode == 0 and "duplicate: 10" in again.stdout
    assert await count(dsn, "cases") == 9


async def test_intake_mbox_imports_every_message(dsn, tmp_path):
    mbox = tmp_path / "inbox.mbox"
    with mbox.open("wb") as f:
        for name in ("01-card-not-arrived.eml", "04-pending-top-up.eml"):
            f.write(b"From MAILER-DAEMON Thu Nov 19 10:00:00 2026\n" + (SAMPLES / name).read_bytes().replace(b"\r\n", b"\n") + b"\n")
    result = cx("intake", "mbox", str(mbox), env=cx_env(DATABASE_URL=dsn))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created: 2" in result.stdout
    assert await count(dsn, "cases") == 2


async def test_a_missing_path_is_a_usage_error(dsn, tmp_path):
    result = cx("intake", "eml", str(tmp_path / "nope"), env=cx_env(DATABASE_URL=dsn))
    assert result.returncode == 2 and "no such file or directory" in result.stderr
    assert await count(dsn, "cases") == 0


async def test_cases_import_reads_history_against_the_taxonomy(dsn, tmp_path):
    good = tmp_path / "history.csv"
    good.write_text("text,category\nMy card has not arrived,card_arrival\nI lost my card,lost_or_stolen_card\n")
    env = cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(BANKING))
    result = cx("cases", "import", str(good), env=env)
    assert result.returncode == 0, result.stderr
    assert "2 new labelled examples" in result.stdout
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT category, subcategory FROM labelled_examples ORDER BY text")
    finally:
        await conn.close()
    assert [(r["category"], r["subcategory"]) for r in rows] == [("security", "lost_or_stolen_card"), ("card_delivery", "card_arrival")]
    again = cx("cases", "import", str(good), env=env)
    assert "0 new labelled examples, 2 already known" in again.stdout
    assert await count(dsn, "cases") == 0, "history is not live cases"


async def test_a_bad_history_line_is_named_and_nothing_is_imported(dsn, tmp_path):
    bad = tmp_path / "history.csv"
    bad.write_text("text,category\nfine,card_arrival\nfine too,card_arrival\nbroken,no_such_intent\n")
    result = cx("cases", "import", str(bad), env=cx_env(DATABASE_URL=dsn, TAXONOMY_PATH=str(BANKING)))
    assert result.returncode == 2
    assert f"{bad}:4" in result.stderr and "no_such_intent" in result.stderr
    assert "Traceback" not in result.stderr
    assert await count(dsn, "labelled_examples") == 0


async def test_intake_post_names_the_line_of_bad_json(tmp_path):
    body = tmp_path / "request.json"
    body.write_text('{\n  "customer_email": "a@example.com",\n  "description": oops\n}\n')
    result = cx("intake", "post", str(body), env=cx_env(WEBHOOK_SECRET="s"))
    assert result.returncode == 2
    assert f"{body}:3" in result.stderr


async def test_intake_post_signs_and_sends_a_request(pool, make_settings, tmp_path):
    import asyncio

    from aiohttp.test_utils import TestServer

    from bot.deps import Deps
    from bot.runtime.metrics import Metrics
    from bot.web.app import build_web_app
    from bot.web.http import RuntimeStatus
    from tests.cli_runner import CX

    server = TestServer(build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"])))
    await server.start_server()
    body = tmp_path / "request.json"
    body.write_text('{"customer_email": "web@example.com", "description": "Form request", "external_id": "f-9"}')
    try:
        proc = await asyncio.create_subprocess_exec(
            *CX, "intake", "post", str(body), "--url", str(server.make_url("/webhooks/intake")),
            env=cx_env(WEBHOOK_SECRET="test-webhook-secret"), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    finally:
        await server.close()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("202")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT external_id FROM cases") == "f-9"
