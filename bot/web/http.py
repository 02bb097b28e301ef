"""What every HTTP route shares: the app keys, the JSON error shape, the error middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog
from aiohttp import web

from bot.deps import Deps

log = structlog.get_logger(__name__)

DEPS = web.AppKey("deps", Deps)


@dataclass
class RuntimeStatus:
    """What this process runs, for /healthz."""

    roles: list[str]
    slack_connected: Callable[[], bool] | None = None
    extra: dict[str, object] = field(default_factory=dict)


STATUS = web.AppKey("status", RuntimeStatus)

# The database is gone (a restart, a failover, the pool cannot connect): the request changed nothing
# durable, so the sender is told to come back rather than that it did something wrong.
DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now (starting up)
    asyncpg.exceptions.InternalClientError,  # a pooled connection left mid-operation by the outage
    OSError,  # connecting: refused, or the server's unix socket is gone; the routes do no other I/O
    TimeoutError,  # no pooled connection within the acquire timeout
)
DATABASE_RETRY_AFTER_SECONDS = 5


def json_error(status: int, code: str, message: str, details: object = None,
               headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status, headers=headers
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
    except DATABASE_DOWN as exc:
        log.warning("http.database_unavailable", path=request.path, error=type(exc).__name__)
        metrics.http_requests.labels(route, "503").inc()
        return json_error(503, "database_unavailable", "the database is unavailable; nothing was stored, retry later",
                          headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})
    except Exception:
        log.exception("http.unhandled", path=request.path)
        metrics.http_requests.labels(route, "500").inc()
        return json_error(500, "internal_error", "internal error; see the server log")
    metrics.http_requests.labels(route, str(response.status)).inc()
    return response
