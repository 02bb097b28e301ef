"""Mailbox over the Gmail API (google-api-python-client). The client is synchronous, so every
call runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from googleapiclient.errors import HttpError

from pipelines.ports import HistoryExpired, MailboxMessage

PAGE = 500


class GmailMailbox:
    def __init__(self, service_factory: Callable[[], Any], address: str, label: str = "INBOX") -> None:
        # httplib2 objects are not thread-safe: each call builds its own service in its thread.
        self._factory = service_factory
        self.address = address
        self._label = label

    async def _call(self, make_request: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self._factory() as service:
                return make_request(service.users()).execute(num_retries=3)

        return await asyncio.to_thread(run)

    async def current_history_id(self) -> int:
        profile = await self._call(lambda users: users.getProfile(userId="me"))
        return int(profile["historyId"])

    async def added_since(self, history_id: int) -> tuple[list[str], int]:
        ids: list[str] = []
        token: str | None = None
        latest = history_id
        while True:
            try:
                page = await self._call(
                    lambda users, t=token: users.history().list(
                        userId="me",
                        startHistoryId=str(history_id),
                        historyTypes=["messageAdded"],
                        labelId=self._label,
                        maxResults=PAGE,
                        pageToken=t,
                    )
                )
            except HttpError as exc:
                if exc.resp.status == 404:
                    raise HistoryExpired(str(history_id)) from exc
                raise
            for record in page.get("history", []):
                for added in record.get("messagesAdded", []):
                    message = added["message"]
                    if self._label in message.get("labelIds", [self._label]) and message["id"] not in ids:
                        ids.append(message["id"])
            latest = max(latest, int(page.get("historyId", latest)))
            token = page.get("nextPageToken")
            if not token:
                return ids, latest

    async def recent(self, limit: int) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        while len(ids) < limit:
            page = await self._call(
                lambda users, t=token: users.messages().list(
                    userId="me", labelIds=[self._label], maxResults=min(PAGE, limit - len(ids)), pageToken=t
                )
            )
            ids.extend(m["id"] for m in page.get("messages", []))
            token = page.get("nextPageToken")
            if not token:
                break
        return list(reversed(ids[:limit]))  # the API lists newest first

    async def fetch(self, message_id: str) -> MailboxMessage:
        message = await self._call(lambda users: users.messages().get(userId="me", id=message_id, format="raw"))
        raw = base64.urlsafe_b64decode(message["raw"] + "=" * (-len(message["raw"]) % 4))
        return MailboxMessage(id=message["id"], thread_id=message.get("threadId"), raw=raw)
