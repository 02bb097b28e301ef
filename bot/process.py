"""`cx run`: web server, job workers, scheduler and Slack Socket Mode in one asyncio process."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Sequence
from enum import StrEnum
from typing import cast

import structlog
from aiohttp import web

from bot.deps import build_deps
from bot.jobs import job_handlers
from bot.runtime.database import open_pool
from bot.runtime.metrics import metrics_only_app
from bot.runtime.scheduler import Scheduler, schedules
from bot.runtime.worker import Worker
from bot.settings import Settings
from bot.slack.app import build_slack_app, http_route, socket_mode_handler
from bot.web.app import build_web_app
from bot.web.http import RuntimeStatus

log = structlog.get_logger(__name__)


class Role(StrEnum):
    WEB = "web"
    WORKER = "worker"
    SCHEDULER = "scheduler"
    SLACK = "slack"


ALL_ROLES = (Role.WEB, Role.WORKER, Role.SCHEDULER, Role.SLACK)


class UnknownRole(ValueError):
    pass


def parse_roles(text: str) -> list[Role]:
    roles = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            roles.append(Role(part))
        except ValueError:
            raise UnknownRole(
                f"unknown role {part!r}; choose from {', '.join(r.value for r in Role)}"
            ) from None
    if not roles:
        raise UnknownRole("no roles given")
    return roles


async def _serve(app: web.Application, port: int, event: str) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host="0.0.0.0", port=port)
    await site.start()
    # TCPSite.start() makes it with loop.create_server, which returns an asyncio.Server.
    server = cast("asyncio.Server | None", site._server)
    log.info(event, port=server.sockets[0].getsockname()[1] if server else port)
    return runner


async def run(settings: Settings, roles: Sequence[Role], port: int) -> None:
    """Run until SIGTERM or SIGINT, then drain: stop taking work, finish or release it, close the pool."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with open_pool(settings) as pool:
        deps = build_deps(settings, pool)
        status = RuntimeStatus(roles=[r.value for r in roles])
        runner: web.AppRunner | None = None
        worker: Worker | None = None
        scheduler: Scheduler | None = None
        socket_handler = None
        try:
            slack_events = None
            if Role.SLACK in roles:
                slack, services = deps.slack, deps.services
                app_token, signing_secret = settings.secret("slack_app_token"), settings.secret("slack_signing_secret")
                if slack is None or services is None or (app_token is None and signing_secret is None):
                    log.warning("slack.disabled",
                                reason="set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP)")
                elif app_token is not None:
                    socket_handler = socket_mode_handler(build_slack_app(services, slack), app_token)
                    await socket_handler.connect_async()
                    status.slack_connected = lambda: bool(socket_handler.client.is_connected())
                    log.info("slack.connected", mode="socket")
                else:
                    slack_events = http_route(build_slack_app(services, slack, signing_secret))
                    log.info("slack.http_mode", path="/slack/events", web_role=Role.WEB in roles)
            if Role.WORKER in roles:
                worker = Worker(pool, settings, deps.metrics, job_handlers(deps))
                await worker.start()
            if Role.SCHEDULER in roles:
                scheduler = Scheduler(pool, deps.metrics, settings.zone, schedules(settings, gmail=deps.mailbox is not None))
                scheduler.start()
            if Role.WEB in roles:
                runner = await _serve(build_web_app(deps, status, slack_events), port, "web.listening")
            elif settings.metrics_port is not None:
                runner = await _serve(metrics_only_app(deps.metrics), settings.metrics_port, "metrics.listening")
            # Start-up objects (modules, models, settings) live as long as the process: keep the
            # collector from walking them again and again, which shows up as latency spikes.
            gc.freeze()
            log.info("cx.running", roles=status.roles)

            waiters: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
            if worker is not None:
                waiters.append(asyncio.create_task(worker.wait()))
            done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            log.info("cx.draining", grace_seconds=settings.shutdown_grace_seconds)
        finally:
            if socket_handler is not None:
                await socket_handler.close_async()
            if scheduler is not None:
                scheduler.stop()
            if runner is not None:
                await runner.cleanup()
            if worker is not None:
                await worker.drain(settings.shutdown_grace_seconds)
    log.info("cx.stopped")
