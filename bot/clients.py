"""The real SDK clients, built from settings; every base URL can point at a local fake.

The SDKs are imported where they are built: anthropic and openai alone take over a second to
import, which every `cx` command would otherwise pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from openai import AsyncOpenAI

    from pipelines.adapters.jira_tracker import JiraTracker

GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]


def slack_client(settings: Settings) -> AsyncWebClient | None:
    token = settings.secret("slack_bot_token")
    if token is None:
        return None
    kwargs: dict[str, Any] = {"token": token, "timeout": 10}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    client = AsyncWebClient(**kwargs)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


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
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    credentials = Credentials.from_authorized_user_file(str(settings.gmail_token_file), GMAIL_SCOPES)
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
