"""The real SDK clients, built from settings; every base URL can point at a local fake.

The SDKs are imported where they are built: anthropic and openai alone take over a second to
import, which every `cx` command would otherwise pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime.metrics import Metrics
from bot.settings import Settings

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from openai import AsyncOpenAI

    from pipelines.adapters.jira_tracker import JiraTracker


def _slack_method(request: HttpRequest) -> str:
    # Web API URLs end in the method's name; a file upload goes to a one-off URL, one label for all.
    _, sep, method = request.url.partition("/api/")
    return method.split("?")[0] if sep else "file_upload"


def _slack_error(response: HttpResponse | None, error: Exception | None) -> str | None:
    if error is not None:
        return type(error).__name__
    assert response is not None
    if response.status_code != 200:
        return f"http_{response.status_code}"
    if isinstance(response.body, dict) and response.body.get("ok") is False:
        return str(response.body.get("error", "unknown"))[:64]
    return None


class _SlackCallCounter(AsyncRetryHandler):
    """First in the client's retry handlers, so it sees every response and every exception of every
    attempt; it never asks for a retry itself."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        method = _slack_method(request)
        self._metrics.slack_requests.labels(method).inc()
        failure = _slack_error(response, error)
        if failure is not None:
            self._metrics.slack_errors.labels(method, failure).inc()
        return False


class _CountedRetries(AsyncRetryHandler):
    """One of the SDK's retry handlers, counting the retries it makes."""

    def __init__(self, inner: AsyncRetryHandler, metrics: Metrics, reason: str) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self._inner, self._metrics, self._reason = inner, metrics, reason

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return await self._inner.can_retry_async(state=state, request=request, response=response, error=error)

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        self._metrics.slack_retries.labels(_slack_method(request), self._reason).inc()
        await self._inner.prepare_for_next_attempt_async(state=state, request=request, response=response,
                                                         error=error)


def slack_client(settings: Settings, metrics: Metrics | None = None) -> AsyncWebClient | None:
    """The Web API client: a dropped connection is retried once, a 429 twice after its Retry-After.
    With `metrics`, every request, error and retry is counted."""
    token = settings.secret("slack_bot_token")
    if token is None:
        return None
    kwargs: dict[str, Any] = {"token": token, "timeout": 10}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    retries: list[tuple[AsyncRetryHandler, str]] = [
        (AsyncConnectionErrorRetryHandler(max_retry_count=1), "connection"),
        (AsyncRateLimitErrorRetryHandler(max_retry_count=2), "ratelimited"),
    ]
    if metrics is None:
        return AsyncWebClient(**kwargs, retry_handlers=[handler for handler, _ in retries])
    return AsyncWebClient(**kwargs, retry_handlers=[
        _SlackCallCounter(metrics), *(_CountedRetries(handler, metrics, reason) for handler, reason in retries)])


def anthropic_client(settings: Settings) -> AsyncAnthropic | None:
    key = settings.secret("anthropic_api_key")
    if key is None:
        return None
    from anthropic import AsyncAnthropic

    return AsyncAnthropic(
        api_key=key,
        base_url=settings.anthropic_base_url,
        timeout=settings.anthropic_timeout_seconds,
        max_retries=settings.anthropic_max_retries,
    )


def openai_client(settings: Settings) -> AsyncOpenAI | None:
    key = settings.secret("openai_api_key")
    if key is None:
        return None
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key=key, base_url=settings.openai_base_url, timeout=30, max_retries=2)


def gmail_service(settings: Settings) -> Any | None:
    """A synchronous googleapiclient Resource: call it from a thread, never on the event loop."""
    if settings.gmail_token_file is None:
        return None
    from googleapiclient.discovery import build

    from pipelines.adapters.gmail_token import load_credentials

    credentials = load_credentials(settings.gmail_token_file)
    options = {"api_endpoint": settings.gmail_api_url} if settings.gmail_api_url else None
    return build(
        "gmail",
        "v1",
        credentials=credentials,
        static_discovery=True,
        cache_discovery=False,
        client_options=options,
    )


def build_tracker(settings: Settings) -> JiraTracker | None:
    """Jira for escalations, when JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN are all set."""
    token = settings.secret("jira_api_token")
    if settings.jira_url is None or token is None or settings.jira_email is None:
        return None
    from pipelines.adapters.jira_tracker import JiraTracker

    return JiraTracker(settings.jira_url, settings.jira_email, token, settings.jira_project_key)


def jira_client(settings: Settings) -> Any | None:
    """A synchronous `jira.JIRA`: call it from a thread."""
    token = settings.secret("jira_api_token")
    if settings.jira_url is None or token is None or settings.jira_email is None:
        return None
    from jira import JIRA

    return JIRA(
        server=settings.jira_url,
        basic_auth=(settings.jira_email, token),
        get_server_info=False,
        max_retries=0,
        timeout=10,
    )
