from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.deps import Deps
from bot.runtime.metrics import Metrics
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus
from pipelines.detection.thresholds import ThresholdsError, install_threshold_defaults, load_threshold_defaults
from pipelines.signatures import signed_headers
from tests.cli_runner import ROOT, cx_env

SECRET = "test-webhook-secret"
DEFAULTS = ROOT / "prompts" / "metric_thresholds.yaml"
# `cx metrics ...` as bot/cli/main.py mounts it (app.add_typer(metrics_app, name="metrics")), so these
# tests do not depend on that registration line.
CX_METRICS = [
    sys.executable, "-c",
    "import typer; from bot.cli.metrics import metrics_app; app = typer.Typer(); "
    "app.add_typer(metrics_app, name='metrics'); app(prog_name='cx')",
]


def cx_metrics(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CX_METRICS, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)


@pytest.fixture
async def client(pool, make_settings):
    app = build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"]))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def post(client, payload, headers=None, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    h = {"Content-Type": content_type, **(headers if headers is not None else signed_headers(SECRET, body))}
    return await client.post("/webhooks/metrics", data=body, headers=h)


async def stored_points(pool) -> list[dict]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT metric_name, metric_value, unit, service, threshold_warning, threshold_critical, status, source,"
            " recorded_at FROM health_metrics ORDER BY metric_value"
        )
    return [dict(r) for r in rows]


async def thresholds(pool) -> dict[str, tuple]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM metric_thresholds")
    return {r["metric_name"]: (r["threshold_warning"], r["threshold_critical"], r["source"]) for r in rows}


def rows_by_value(rows: list[dict]) -> dict[float, tuple]:
    return {r["metric_value"]: (r["threshold_warning"], r["threshold_critical"], r["status"]) for r in rows}


async def test_the_web_role_writes_the_defaults_file_into_the_database(client, pool):
    stored = await thresholds(pool)
    assert stored["api_error_rate"] == (2.0, 5.0, "defaults")
    assert stored["api_latency_p95_ms"] == (800.0, 2000.0, "defaults")
    assert set(stored) == set(load_threshold_defaults(DEFAULTS).metrics)


async def test_points_are_stored_with_the_status_their_thresholds_give(client, pool):
    recorded = "2026-03-01T10:15:00+01:00"
    points = [
        {"name": "api_error_rate", "value": 1.5, "unit": "%", "service": "payments-api", "recorded_at": recorded},
        {"name": "api_error_rate", "value": 2},  # at the warning threshold
        {"name": "api_error_rate", "value": 7.25},
        {"name": "api_latency_p95_ms", "value": 2000},  # at the critical threshold
        {"name": "checkout.conversions", "value": 0.5},  # no thresholds anywhere
    ]
    response = await post(client, {"metrics": points})
    assert response.status == 202
    assert await response.json() == {"accepted": 5}
    rows = await stored_points(pool)
    assert rows_by_value(rows) == {
        0.5: (None, None, "normal"),
        1.5: (2.0, 5.0, "normal"),
        2.0: (2.0, 5.0, "warning"),
        7.25: (2.0, 5.0, "critical"),
        2000.0: (800.0, 2000.0, "critical"),
    }
    first = rows[1]
    assert (first["unit"], first["service"], first["source"]) == ("%", "payments-api", "webhook")
    assert first["recorded_at"] == datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    unstamped = rows[2]["recorded_at"]
    assert abs(unstamped - datetime.now(UTC)) < timedelta(minutes=1), "recorded_at defaults to when it arrived"


async def test_pushed_thresholds_replace_the_defaults_and_apply_to_later_points(client, pool, make_settings):
    first = await post(client, {"metrics": [
        {"name": "api_error_rate", "value": 7},  # before the pushed point in the same request
        {"name": "api_error_rate", "value": 12, "threshold_warning": 10, "threshold_critical": 20},
        {"name": "orders_backlog", "value": 40, "threshold_critical": 30},
    ]})
    assert first.status == 202
    later = await post(client, {"metrics": [{"name": "api_error_rate", "value": 25}, {"name": "orders_backlog", "value": 5}]})
    assert later.status == 202
    assert rows_by_value(await stored_points(pool)) == {
        7.0: (10.0, 20.0, "normal"),  # the thresholds in force after its request
        12.0: (10.0, 20.0, "warning"),
        25.0: (10.0, 20.0, "critical"),
        40.0: (None, 30.0, "critical"),
        5.0: (None, 30.0, "normal"),
    }
    stored = await thresholds(pool)
    assert stored["api_error_rate"] == (10.0, 20.0, "pushed")
    assert stored["orders_backlog"] == (None, 30.0, "pushed")
    # A restart writes the defaults again: a pushed pair stays.
    await install_threshold_defaults(pool, make_settings().metric_thresholds_path)
    assert (await thresholds(pool))["api_error_rate"] == (10.0, 20.0, "pushed")


async def test_a_changed_defaults_file_updates_and_drops_defaults_only(client, pool, tmp_path):
    await post(client, {"metrics": [{"name": "queue_depth", "value": 1, "threshold_warning": 5}]})
    changed = tmp_path / "thresholds.yaml"
    changed.write_text("metrics:\n  api_error_rate: {warning: 1, critical: 3}\n  queue_depth: {critical: 9}\n")
    assert await install_threshold_defaults(pool, changed) == 2
    assert await thresholds(pool) == {
        "api_error_rate": (1.0, 3.0, "defaults"),
        "queue_depth": (5.0, None, "pushed"),
    }


async def test_a_bad_signature_is_401_and_stores_nothing(client, pool):
    body = json.dumps({"metrics": [{"name": "api_error_rate", "value": 9, "threshold_warning": 50}]}).encode()
    before = await thresholds(pool)
    for headers in ({}, signed_headers("another-secret", body)):
        response = await post(client, body, headers)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "bad_signature"
    assert await stored_points(pool) == []
    assert await thresholds(pool) == before


async def test_one_bad_point_names_its_index_and_nothing_is_stored(client, pool):
    before = await thresholds(pool)
    points = [{"name": f"m{i}", "value": i, "threshold_warning": 1} for i in range(5)]
    points[3] = {"name": "m3", "value": "high"}
    response = await post(client, {"metrics": points})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert [(d["index"], d["field"]) for d in error["details"]] == [(3, "value")]
    assert await stored_points(pool) == []
    assert await thresholds(pool) == before, "the good points' thresholds are not pushed either"


@pytest.mark.parametrize(
    "point, field",
    [
        ({"name": "bad name!", "value": 1}, "name"),
        ({"name": "x" * 201, "value": 1}, "name"),
        ({"name": "ok", "value": True}, "value"),
        ({"name": "ok"}, "value"),
        ({"name": "ok", "value": 1, "recorded_at": "2026-03-01T10:00:00"}, "recorded_at"),
        ({"name": "ok", "value": 1, "recorded_at": 1767261600}, "recorded_at"),
        ({"name": "ok", "value": 1, "recorded_at": "2999-01-01T00:00:00Z"}, "recorded_at"),
        ({"name": "ok", "value": 1, "threshold_warning": 5, "threshold_critical": 2}, "threshold_critical"),
        ({"name": "ok", "value": 1, "unit": "%\n"}, "unit"),
        ({"name": "ok", "value": 1, "tags": {"a": 1}}, "tags"),
    ],
    ids=["charset", "too-long", "bool", "missing-value", "naive-time", "unix-time", "future", "inverted",
         "control-char", "unknown-field"],
)
async def test_an_invalid_point_is_422(client, pool, point, field):
    response = await post(client, {"metrics": [{"name": "fine", "value": 1}, point]})
    assert response.status == 422
    assert [(d["index"], d["field"]) for d in (await response.json())["error"]["details"]] == [(1, field)]
    assert await stored_points(pool) == []


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_a_non_finite_value_is_422(client, pool, literal):
    body = b'{"metrics": [{"name": "api_error_rate", "value": ' + literal + b"}]}"
    response = await post(client, body)
    assert response.status == 422
    detail = (await response.json())["error"]["details"][0]
    assert (detail["index"], detail["field"]) == (0, "value") and "finite" in detail["message"]
    assert await stored_points(pool) == []


async def test_a_non_finite_threshold_is_422(client, pool):
    response = await post(client, b'{"metrics": [{"name": "a", "value": 1, "threshold_critical": Infinity}]}')
    assert response.status == 422
    assert (await response.json())["error"]["details"][0]["field"] == "threshold_critical"
    assert "a" not in await thresholds(pool)


async def test_too_many_points_or_none_at_all_is_422(client, pool):
    response = await post(client, {"metrics": [{"name": "a", "value": i} for i in range(1001)]})
    assert response.status == 422
    detail = (await response.json())["error"]["details"][0]
    assert detail["index"] is None and detail["field"] == "metrics" and "1000" in detail["message"]
    for body in ({"metrics": []}, {}, [{"name": "a", "value": 1}]):
        assert (await post(client, body)).status == 422
    assert await stored_points(pool) == []


async def test_exactly_the_limit_is_accepted(client, pool):
    response = await post(client, {"metrics": [{"name": "a", "value": i} for i in range(1000)]})
    assert response.status == 202 and await response.json() == {"accepted": 1000}
    assert len(await stored_points(pool)) == 1000


async def test_not_json_is_415_or_400_and_stores_nothing(client, pool):
    response = await post(client, b"name=api_error_rate&value=1", content_type="application/x-www-form-urlencoded")
    assert response.status == 415
    response = await post(client, b'{"metrics": [{"name": "a", "value": 1}')
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    assert await stored_points(pool) == []


async def test_an_oversized_body_is_413(client, pool):
    response = await post(client, {"metrics": [{"name": "a", "value": 1, "unit": "x" * 30}] * 20_000})
    assert response.status == 413
    assert await stored_points(pool) == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("metrics: [unclosed\n", "not valid YAML"),
        ("metrics:\n  api_error_rate: {warning: 5, critical: 2}\n", "metrics.api_error_rate"),
        ("metrics:\n  'bad name': {warning: 1}\n", "metrics.bad name"),
        ("metrics:\n  queue_depth: {unit: jobs}\n", "give warning, critical or both"),
        ("metrics:\n  queue_depth: {warning: .inf}\n", "finite"),
        ("thresholds: {}\n", "metrics"),
    ],
    ids=["yaml", "inverted", "name", "empty", "infinite", "wrong-key"],
)
def test_a_bad_defaults_file_is_an_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "metric_thresholds.yaml"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as caught:
        load_threshold_defaults(path)
    assert str(caught.value).startswith(str(path)) and problem in str(caught.value)


async def test_the_web_role_does_not_start_on_a_bad_defaults_file(pool, make_settings, tmp_path):
    missing = tmp_path / "nope.yaml"
    app = build_web_app(Deps(make_settings(metric_thresholds_path=missing), pool, Metrics()), RuntimeStatus(roles=["web"]))
    server = TestServer(app)
    with pytest.raises(ThresholdsError, match=f"{missing} does not exist"):
        await server.start_server()
    await server.close()
    assert await thresholds(pool) == {}


async def test_cx_metrics_push_signs_and_sends_a_file(pool, make_settings, tmp_path):
    server = TestServer(build_web_app(Deps(make_settings(), pool, Metrics()), RuntimeStatus(roles=["web"])))
    await server.start_server()
    body = tmp_path / "points.json"
    body.write_text(json.dumps({"metrics": [{"name": "api_error_rate", "value": 6.5, "unit": "%"}]}))
    try:
        proc = await asyncio.create_subprocess_exec(
            *CX_METRICS, "metrics", "push", str(body), "--url", str(server.make_url("/webhooks/metrics")),
            env=cx_env(WEBHOOK_SECRET=SECRET), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    finally:
        await server.close()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith('202 {"accepted": 1}')
    assert rows_by_value(await stored_points(pool)) == {6.5: (2.0, 5.0, "critical")}


def test_cx_metrics_push_names_the_file_of_bad_input(tmp_path):
    env = cx_env(WEBHOOK_SECRET=SECRET)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "metrics": [\n    {"name": "a", "value": oops}\n  ]\n}\n')
    bad_point = tmp_path / "bad-point.json"
    bad_point.write_text(json.dumps({"metrics": [{"name": "a", "value": 1}, {"name": "b", "value": "NaN"}]}))
    # Nothing listens on port 9: the file is rejected before anything is sent.
    url = ["--url", "http://127.0.0.1:9/webhooks/metrics"]
    cases = [
        (broken, f"{broken}:3"),
        (bad_point, f"{bad_point}: metrics[1].value"),
        (tmp_path / "missing.json", f"{tmp_path / 'missing.json'}: No such file"),
    ]
    for path, message in cases:
        result = cx_metrics("metrics", "push", str(path), *url, env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    no_secret = cx_metrics("metrics", "push", str(bad_point), *url, env=cx_env())
    assert no_secret.returncode == 2 and "WEBHOOK_SECRET is not set" in no_secret.stderr
