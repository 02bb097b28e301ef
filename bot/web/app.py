"""The HTTP app: /healthz, /metrics, the webhooks and the CSAT pages. Errors are JSON, except on
the CSAT pages, which customers' browsers read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.deps import Deps
from bot.runtime.metrics import refresh_budgets, refresh_from_database, refresh_open_alerts
from bot.web import csat, webhooks
from bot.web.http import DEPS, STATUS, RuntimeStatus, errors_as_json
from db import health as db_health
from db import jobs
from pipelines.detection.thresholds import install_threshold_defaults
from pipelines.triage.readiness import readiness

log = structlog.get_logger(__name__)


async def healthz(request: web.Request) -> web.Response:
    deps, status = request.app[DEPS], request.app[STATUS]
    body: dict[str, object] = {"roles": status.roles}
    try:
        async with deps.pool.acquire(timeout=5) as conn:
            facts = await db_health.ping(conn)
            depth = await jobs.depth(conn)
            triage = await readiness(conn, claude=deps.settings.anthropic_api_key is not None,
                                     embedding_model=deps.embedder.model if deps.embedder else None)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        body.update(status="error", database={"ok": False, "error": str(exc)})
        return web.json_response(body, status=503)
    body["status"] = "ok"
    body["database"] = {
        "ok": True,
        "latency_ms": round(facts.latency_ms, 2),
        "server_version": facts.server_version,
        "pgvector": facts.pgvector_version,
    }
    body["queue"] = depth.__dict__
    body["triage"] = triage.as_dict()  # ready false: no model yet, every case goes to a person
    if status.slack_connected is not None:
        body["slack"] = {"connected": status.slack_connected()}
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    async with deps.pool.acquire(timeout=5) as conn:
        depth = await jobs.depth(conn)
    for name, value in depth.__dict__.items():
        deps.metrics.queue_depth.labels(name).set(value)
    await refresh_open_alerts(deps.metrics, deps.pool)
    await refresh_budgets(deps.metrics, deps.pool, deps.settings.zone)
    await refresh_from_database(deps.metrics, deps.pool)
    return web.Response(
        body=generate_latest(deps.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def threshold_defaults(app: web.Application) -> None:
    """The metrics webhook and the detector read thresholds from the database: bring the defaults
    file in before the first point arrives. A bad file stops the start (ThresholdsError)."""
    settings = app[DEPS].settings
    count = await install_threshold_defaults(app[DEPS].pool, settings.metric_thresholds_path)
    log.info("metrics.threshold_defaults", metrics=count, path=str(settings.metric_thresholds_path))


def build_web_app(deps: Deps, status: RuntimeStatus,
                  slack_events: Callable[[web.Request], Awaitable[web.Response]] | None = None) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=webhooks.MAX_BODY)
    app[DEPS] = deps
    app[STATUS] = status
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(threshold_defaults)
    webhooks.add_routes(app)
    csat.add_routes(app)  # rating links in replies: HTML pages for customers' browsers
    if slack_events is not None:  # HTTP mode: Slack posts events and interactions here
        app.router.add_post("/slack/events", slack_events)
    return app
