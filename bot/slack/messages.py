"""Slack Web API chores the services share: a private word to one person, an answer through a
response_url, a channel's id from its name, and the workspace's URL that message links are built from."""

from __future__ import annotations

import re

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.errors import CANNOT_POST

log = structlog.get_logger(__name__)

# files.completeUploadExternal and conversations.history take a channel id only; chat.postMessage takes a name too.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


class ChannelNotFound(LookupError):
    pass


async def channel_id(client: AsyncWebClient, channel: str, *, setting: str) -> str:
    """The id of `channel` (an id already, or a name with or without '#'), among the channels the
    bot can see (conversations.list: channels:read, groups:read); `setting` names where it came from."""
    if _CHANNEL_ID.fullmatch(channel):
        return channel
    name = channel.removeprefix("#")
    async for page in await client.conversations_list(types="public_channel,private_channel",
                                                      exclude_archived=True, limit=1000):
        for found in page.get("channels", []):
            if found.get("name") == name:
                found_id: str = found["id"]
                return found_id
    raise ChannelNotFound(f"{setting} {channel}: no such channel the bot can see "
                          "(invite the bot to it, or set the channel's id)")


async def tell(client: AsyncWebClient, *, channel: str | None, user: str, text: str,
               thread_ts: str | None = None, response_url: str | None = None) -> bool:
    """An ephemeral message to `user`, in `channel` or else through the interaction's response_url
    (which reaches people where the bot is not a member). Best effort: it is said after the work is
    done, and failing here would retry a job whose change is already made. False if it did not land."""
    if channel:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
            return True
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in CANNOT_POST or not response_url:
                log.warning("slack.tell_failed", user=user, error=error)
                return False
    if not response_url:
        return False
    try:
        await respond(response_url, text)
    except (OSError, RuntimeError) as exc:
        log.warning("slack.tell_failed", user=user, error=str(exc))
        return False
    return True


async def respond(response_url: str, text: str) -> None:
    """A private answer through an interaction's response_url."""
    response = await AsyncWebhookClient(response_url).send(text=text, response_type="ephemeral",
                                                            replace_original=False)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered {response.status_code}: {response.body}")


class Workspace:
    """The workspace's URL (auth.test), asked once: message links are built from it."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._url: str | None = None

    async def url(self) -> str | None:
        if self._url is None:
            answer = await self._client.auth_test()
            self._url = str(answer.get("url") or "") or None  # an answer without one is asked again next time
        return self._url
