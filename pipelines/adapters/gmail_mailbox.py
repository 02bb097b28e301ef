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


class AnswerLost(ConnectionError):
    """The request was sent but the connection closed before any answer: it may or may not have taken effect."""


class _OneRequest:
    """An http.client connection that sends at most one request. httplib2 silently sends a request again when the
    first answer fails to arrive (it takes that for a stale keep-alive socket), POSTs included; for a send that
    would mail the customer twice."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._sent = False

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if self._sent:
            raise AnswerLost("the connection closed before Gmail answered; not sending again")
        self._sent = True
        return self._conn.request(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _send_at_most_once(http: Any) -> None:
    """Stop httplib2's own resend for requests through `http` (a per-call object: each call builds its service)."""
    inner = getattr(http, "http", http)  # google_auth_httplib2.AuthorizedHttp wraps the httplib2.Http
    conn_request = getattr(inner, "_conn_request", None)
    if conn_request is None:  # httplib2 changed; tests/test_gmail_send.py notices the resend coming back
        return

    def once(conn: Any, *args: Any) -> Any:
        return conn_request(_OneRequest(conn), *args)

    inner._conn_request = once


class GmailMailbox:
    def __init__(self, service_factory: Callable[[], Any], address: str, label: str = "INBOX") -> None:
        # httplib2 objects are not thread-safe: each call builds its own service in its thread.
        self._factory = service_factory
        self.address = address
        self._label = label
        self._label_ids: dict[str, str] = {}  # label name -> Gmail's id for it, once looked up

    async def _call(self, make_request: Callable[[Any], Any], retries: int = 3) -> Any:
        """retries=0 means the request goes out at most once: no client retry, and no transport resend either."""

        def run() -> Any:
            with self._factory() as service:
                request = make_request(service.users())
                if retries == 0:
                    _send_at_most_once(request.http)
                return request.execute(num_retries=retries)

        return await asyncio.to_thread(run)

    async def current_history_id(self) -> int:
        profile = await self._call(lambda users: users.getProfile(userId="me"))
        return int(profile["historyId"])

    async def added_since(self, history_id: int) -> tuple[list[str], int]:
        ids: list[str] = []
        token: str | None = None
        latest = history_id
        while True:
            # A def, not a lambda: mypy cannot infer a lambda's type when it has a default argument.
            def history_page(users: Any, t: str | None = token) -> Any:
                return users.history().list(
                    userId="me",
                    startHistoryId=str(history_id),
                    historyTypes=["messageAdded"],
                    labelId=self._label,
                    maxResults=PAGE,
                    pageToken=t,
                )

            try:
                page = await self._call(history_page)
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
            def messages_page(users: Any, t: str | None = token) -> Any:
                return users.messages().list(
                    userId="me", labelIds=[self._label], maxResults=min(PAGE, limit - len(ids)), pageToken=t
                )

            page = await self._call(messages_page)
            ids.extend(m["id"] for m in page.get("messages", []))
            token = page.get("nextPageToken")
            if not token:
                break
        return list(reversed(ids[:limit]))  # the API lists newest first

    async def fetch(self, message_id: str) -> MailboxMessage:
        message = await self._call(lambda users: users.messages().get(userId="me", id=message_id, format="raw"))
        raw = base64.urlsafe_b64decode(message["raw"] + "=" * (-len(message["raw"]) % 4))
        return MailboxMessage(id=message["id"], thread_id=message.get("threadId"), raw=raw)

    async def add_label(self, message_id: str, label: str) -> None:
        label_id = await self._label_id(label)
        await self._call(
            lambda users: users.messages().modify(userId="me", id=message_id, body={"addLabelIds": [label_id]})
        )

    async def _label_id(self, name: str) -> str:
        if name not in self._label_ids:
            found = await self._find_label(name)
            if found is None:
                body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
                try:
                    found = str((await self._call(lambda users: users.labels().create(userId="me", body=body)))["id"])
                except HttpError as exc:
                    # 409: another worker created it since we looked (or a retried create already had).
                    if exc.resp.status != 409 or (found := await self._find_label(name)) is None:
                        raise
            self._label_ids[name] = found
        return self._label_ids[name]

    async def _find_label(self, name: str) -> str | None:
        labels = await self._call(lambda users: users.labels().list(userId="me"))
        # Gmail compares label names without regard to case.
        return next((str(x["id"]) for x in labels.get("labels", []) if x["name"].lower() == name.lower()), None)

    async def send(self, raw: bytes, thread_id: str | None) -> str:
        body: dict[str, str] = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
        if thread_id is not None:
            body["threadId"] = thread_id
        sent = await self._call(lambda users: users.messages().send(userId="me", body=body), retries=0)
        return str(sent["id"])

    async def find_sent(self, rfc822_message_id: str) -> str | None:
        bare = rfc822_message_id.strip().removeprefix("<").removesuffix(">").strip()
        page = await self._call(
            lambda users: users.messages().list(
                userId="me", q=f"rfc822msgid:{bare}", includeSpamTrash=False, maxResults=1
            )
        )
        messages = page.get("messages", [])
        return str(messages[0]["id"]) if messages else None
