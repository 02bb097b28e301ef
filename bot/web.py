"""The HTTP side: /healthz, /metrics, and (from later issues) the webhooks. Errors are JSON, never HTML."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.deps import Deps
from db import health as db_health
from db import jobs

log = structlog.get_logger(__name__)

DEPS = web.AppKey("deps", Deps)


@dataclass
class RuntimeStatus:
    """What this process runs, for /healthz."""

    roles: list[str]
    slack_connected: Callable[[], bool] | None = None
    extra: dict[str, object] = field(default_factory=dict)


STATUS = web.AppKey("status", RuntimeStatus)


def json_error(status: int, code: str, message: str, details: object = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    metrics = request.app[DEPS].metrics
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        metrics.http_requests.labels(route, str(exc.status)).inc()
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except Exception:
        log.exception("http.unhandled", path=request.path)
        metrics.http_requests.labels(route, "500").inc()
        return json_error(500, "internal_error", "internal error; see the server log")
    metrics.http_requests.labels(route, str(response.status)).inc()
    return response


async def healthz(request: web.Request) -> web.Response:
    deps, status = request.app[DEPS], request.app[STATUS]
    body: dict[str, object] = {"roles": status.roles}
    try:
        async with deps.pool.acquire(timeout=5) as conn:
            facts = await db_health.ping(conn)
            depth = await jobs.depth(conn)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
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
    if status.slack_connected is not None:
        body["slack"] = {"connected": status.slack_connected()}
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    async with deps.pool.acquire(timeout=5) as conn:
        depth = await jobs.depth(conn)
    for name, value in depth.__dict__.items():
        deps.metrics.queue_depth.labels(name).set(value)
    return web.Response(
        body=generate_latest(deps.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def build_web_app(deps: Deps, status: RuntimeStatus) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=1024**2)
    app[DEPS] = deps
    app[STATUS] = status
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
