"""Who may act on review cards: the members of a Slack user group, or else of the review channel."""

from __future__ import annotations

import time

from slack_sdk.web.async_client import AsyncWebClient

# Membership is read from Slack at most this often: a click should not cost a paginated API call,
# and a reviewer added to the group can act within a minute.
MEMBERS_TTL_SECONDS = 60.0


class ReviewerCheck:
    def __init__(self, client: AsyncWebClient, *, group: str | None, channel: str) -> None:
        self._client, self._group, self._channel = client, group, channel
        self._members: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    async def allows(self, user_id: str) -> bool:
        if time.monotonic() - self._read_at > MEMBERS_TTL_SECONDS:
            self._members = await self._read_members()
            self._read_at = time.monotonic()
        return user_id in self._members

    async def _read_members(self) -> frozenset[str]:
        if self._group:
            response = await self._client.usergroups_users_list(usergroup=self._group)
            return frozenset(response["users"])
        members: set[str] = set()
        async for page in await self._client.conversations_members(channel=self._channel, limit=1000):
            members.update(page["members"])
        return frozenset(members)
