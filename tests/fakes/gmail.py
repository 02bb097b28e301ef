"""A fake Gmail REST API v1 (/gmail/v1/users/{userId}/...) for google-api-python-client."""

from __future__ import annotations

import base64
import email
import email.policy
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from .base import FakeServer, RecordedRequest, Status, recorded, retry_headers

PREFIX = "/gmail/v1/users/{user}"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
REASONS = {
    400: "invalidArgument",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
HISTORY_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    error = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": REASONS.get(code, "backendError")}],
        "status": STATUS_NAMES.get(code, "UNKNOWN"),
    }
    return web.json_response({"error": error}, status=code, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _bare_message_id(value: str) -> str:
    """A Message-ID as rfc822msgid: compares it: no angle brackets, case-insensitive."""
    return value.strip().removeprefix("<").removesuffix(">").strip().lower()


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    history_id: int
    internal_date: int

    @property
    def parsed(self) -> EmailMessage:
        message: EmailMessage = email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[assignment]
        return message

    def resource(self, fmt: str = "full") -> dict[str, Any]:
        parsed = self.parsed
        body = parsed.get_body(("plain", "html"))
        snippet = body.get_content().strip()[:100] if body is not None else ""
        resource: dict[str, Any] = {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": list(self.label_ids),
            "snippet": snippet,
            "historyId": str(self.history_id),
            "internalDate": str(self.internal_date),
            "sizeEstimate": len(self.raw),
        }
        if fmt == "raw":
            resource["raw"] = _b64url(self.raw)
        elif fmt in ("full", "metadata"):
            # Headers only: enough for routing code; tests needing bodies ask for format=raw like the bot does.
            headers = [{"name": k, "value": str(v)} for k, v in parsed.items()]
            resource["payload"] = {"partId": "", "mimeType": parsed.get_content_type(), "headers": headers}
        return resource


@dataclass
class SentMessage:
    id: str
    thread_id: str
    raw: bytes
    message: EmailMessage = field(repr=False)


class FakeGmail(FakeServer):
    def __init__(self, *, email_address: str = "support@example.com", history_id: int = 1000) -> None:
        super().__init__()
        self.email_address = email_address
        self.history_id = history_id
        # history.list answers 404 for a startHistoryId older than this, as Gmail does once history expires.
        self.oldest_history_id = history_id
        self.messages: dict[str, StoredMessage] = {}
        self.history: list[dict[str, Any]] = []
        self.sent: list[SentMessage] = []
        self._counter = 0
        self._clock = 1_700_000_000_000
        self._script: deque[Status] = deque()
        # Sends to store and then answer with this code instead of success; None drops the connection unanswered.
        self._lost_send_answers: deque[int | str | None] = deque()
        # Google's OAuth token endpoint at /token (the `token_uri` of a test's client secrets and token file).
        self.auth_codes: set[str] = set()  # codes the consent screen "gave out"; each is good once
        self.access_tokens: list[str] = []  # issued, in order
        self.refresh_tokens: set[str] = {"r"}
        self.labels_made_elsewhere: set[str] = set()  # names another worker creates just before ours arrives
        self._path_script: dict[str, deque[Status]] = {}
        self.labels: dict[str, dict[str, str]] = {
            name: {"id": name, "name": name, "type": "system"} for name in ("INBOX", "SENT", "UNREAD", "SPAM", "TRASH")
        }

    # ---- scripting -------------------------------------------------------------------------------------------

    def fail_next(self, code: int = 500, times: int = 1, retry_after: float | None = None) -> None:
        self._script.extend([Status(code, retry_after)] * times)

    def fail_after_send_next(self, times: int = 1, code: int | None = 500) -> None:
        """The next `times` sends are accepted and stored (they count as sent), but the client never learns it:
        it gets a `code` error instead, or with code=None the connection closes before any answer."""
        self._lost_send_answers.extend([code] * times)

    def hang_after_send_next(self) -> None:
        """The next send is stored (it counts as sent) and then never answered: the client waits
        until it is killed, like a worker that dies between sending and recording."""
        self._lost_send_answers.append("hang")

    def fail_next_on(self, path_end: str, code: int, times: int = 1) -> None:
        """Like fail_next, for requests whose path ends with `path_end` only (e.g. "/modify")."""
        self._path_script.setdefault(path_end, deque()).extend([Status(code)] * times)

    def grant_code(self, code: str) -> str:
        """A code the consent screen would put in the redirect address."""
        self.auth_codes.add(code)
        return code

    def add_message(
        self,
        raw_bytes: bytes,
        thread_id: str | None = None,
        label_ids: tuple[str, ...] | list[str] = ("INBOX", "UNREAD"),
    ) -> str:
        return self._store(raw_bytes, thread_id, list(label_ids)).id

    # ---- state -----------------------------------------------------------------------------------------------

    def _store(self, raw: bytes, thread_id: str | None, label_ids: list[str]) -> StoredMessage:
        self._counter += 1
        self._clock += 60_000
        message_id = f"{0x18C0000000000000 + self._counter:x}"
        self.history_id += 1
        stored = StoredMessage(
            message_id, thread_id or self._thread_of(raw) or message_id, raw, label_ids, self.history_id, self._clock
        )
        self.messages[message_id] = stored
        self._record_history("messagesAdded", stored)
        return stored

    def _thread_of(self, raw: bytes) -> str | None:
        # Gmail threads replies by In-Reply-To/References; matching on Message-ID is close enough for tests.
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        refs = f"{parsed.get('In-Reply-To', '')} {parsed.get('References', '')}".split()
        for stored in self.messages.values():
            if stored.parsed.get("Message-ID") in refs:
                return stored.thread_id
        return None

    def _record_history(self, kind: str, stored: StoredMessage, labels: list[str] | None = None) -> None:
        stub = {"id": stored.id, "threadId": stored.thread_id}
        entry: dict[str, Any] = {"message": {**stub, "labelIds": list(stored.label_ids)}}
        if labels is not None:
            entry["labelIds"] = labels
        self.history.append({"id": str(self.history_id), "messages": [stub], kind: [entry]})

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/profile", self._profile)
        app.router.add_get(f"{PREFIX}/messages", self._list)
        app.router.add_post(f"{PREFIX}/messages/send", self._send)
        app.router.add_get(f"{PREFIX}/messages/{{id}}", self._get)
        app.router.add_post(f"{PREFIX}/messages/{{id}}/modify", self._modify)
        app.router.add_get(f"{PREFIX}/history", self._history)
        app.router.add_get(f"{PREFIX}/labels", self._labels)
        app.router.add_post(f"{PREFIX}/labels", self._create_label)
        app.router.add_post("/token", self._token)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        if rec.path == "/token":  # the client authenticates with its id and secret in the form
            return None
        auth = rec.header("Authorization") or ""
        if not auth.startswith("Bearer ") or auth == "Bearer invalid":
            return _error(401, "Request had invalid authentication credentials.")
        scripted = next((q for end, q in self._path_script.items() if q and rec.path.endswith(end)), None)
        if scripted is None and self._script:
            scripted = self._script
        if scripted:
            failure = scripted.popleft()
            return _error(failure.code, failure.message or "scripted failure", retry_headers(failure.retry_after))
        return None

    def _user_ok(self, request: web.Request) -> bool:
        return request.match_info["user"] in ("me", self.email_address)

    async def _profile(self, request: web.Request) -> web.Response:
        if not self._user_ok(request):
            return _error(403, "Delegation denied")
        return web.json_response(
            {
                "emailAddress": self.email_address,
                "messagesTotal": len(self.messages),
                "threadsTotal": len({m.thread_id for m in self.messages.values()}),
                "historyId": str(self.history_id),
            }
        )

    def _matches(self, stored: StoredMessage, labels: list[str], query: str) -> bool:
        wanted = set(labels)
        words = []
        message_ids = []
        for term in query.split():
            key, _, value = term.partition(":")
            if key == "is" and value.lower() == "unread":
                wanted.add("UNREAD")
            elif key in ("in", "label") and value:
                wanted.add(value.upper())
            elif key.lower() == "rfc822msgid" and value:
                message_ids.append(_bare_message_id(value))
            else:
                words.append(term.lower())
        if message_ids and _bare_message_id(str(stored.parsed.get("Message-ID", ""))) not in message_ids:
            return False
        text = stored.raw.decode("utf-8", "replace").lower()
        return wanted.issubset(stored.label_ids) and all(w in text for w in words)

    async def _list(self, request: web.Request) -> web.Response:
        if not self._user_ok(request):
            return _error(403, "Delegation denied")
        q = request.query
        found = [
            m for m in reversed(self.messages.values()) if self._matches(m, q.getall("labelIds", []), q.get("q", ""))
        ]
        start = int(q.get("pageToken", 0))
        size = int(q.get("maxResults", 100))
        page = found[start : start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        # Like Gmail, an empty result has no "messages" key at all.
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)

    async def _get(self, request: web.Request) -> web.Response:
        stored = self.messages.get(request.match_info["id"])
        if stored is None or not self._user_ok(request):
            return _error(404, "Requested entity was not found.")
        return web.json_response(stored.resource(request.query.get("format", "full")))

    async def _history(self, request: web.Request) -> web.Response:
        start = request.query.get("startHistoryId")
        if not start:
            return _error(400, "Missing required parameter: startHistoryId")
        if int(start) < self.oldest_history_id:
            return _error(404, "Requested entity was not found.")
        types = request.query.getall("historyTypes", [])
        label = request.query.get("labelId")
        records = []
        for record in self.history:
            if int(record["id"]) <= int(start):
                continue
            if types and not any(HISTORY_KEYS.get(t) in record for t in types):
                continue
            entries = [e for key, value in record.items() if key not in ("id", "messages") for e in value]
            if label and not any(label in e["message"]["labelIds"] for e in entries):
                continue
            records.append(record)
        size = int(request.query.get("maxResults", 100))
        body: dict[str, Any] = {"historyId": str(self.history_id)}
        if records:
            body["history"] = records[:size]
        if len(records) > size:
            body["nextPageToken"] = records[size - 1]["id"]
        return web.json_response(body)

    async def _send(self, request: web.Request) -> web.Response:
        payload = recorded(request).json or {}
        if "raw" not in payload:
            return _error(400, "Invalid value for raw")
        raw = _unb64url(payload["raw"])
        stored = self._store(raw, payload.get("threadId"), ["SENT"])
        parsed: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
        self.sent.append(SentMessage(stored.id, stored.thread_id, raw, parsed))
        if self._lost_send_answers:
            code = self._lost_send_answers.popleft()
            if code == "hang":
                await self.stall(3600)
                return web.Response(status=504)
            if code is not None:
                return _error(code, "scripted failure after the message was sent")
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never reaches the client: its socket is already closed
        return web.json_response({"id": stored.id, "threadId": stored.thread_id, "labelIds": ["SENT"]})

    async def _modify(self, request: web.Request) -> web.Response:
        stored = self.messages.get(request.match_info["id"])
        if stored is None:
            return _error(404, "Requested entity was not found.")
        payload = recorded(request).json or {}
        added = [label for label in payload.get("addLabelIds", []) if label not in stored.label_ids]
        removed = [label for label in payload.get("removeLabelIds", []) if label in stored.label_ids]
        stored.label_ids = [label for label in stored.label_ids if label not in removed] + added
        for kind, labels in (("labelsAdded", added), ("labelsRemoved", removed)):
            if labels:
                self.history_id += 1
                stored.history_id = self.history_id
                self._record_history(kind, stored, labels)
        return web.json_response(stored.resource("minimal"))

    async def _labels(self, request: web.Request) -> web.Response:
        return web.json_response({"labels": list(self.labels.values())})

    async def _create_label(self, request: web.Request) -> web.Response:
        name = str((recorded(request).json or {}).get("name", ""))
        if not name:
            return _error(400, "Invalid label name")
        if name in self.labels_made_elsewhere:
            self.labels_made_elsewhere.discard(name)
            self.labels[f"Label_other_{len(self.labels)}"] = {"id": f"Label_other_{len(self.labels)}", "name": name,
                                                              "type": "user"}
        if any(label["name"].lower() == name.lower() for label in self.labels.values()):
            return _error(409, "Label name exists or conflicts")
        label = {"id": f"Label_{len(self.labels) + 1}", "name": name, "type": "user"}
        self.labels[label["id"]] = label
        return web.json_response(label)

    async def _token(self, request: web.Request) -> web.Response:
        """OAuth 2.0 token endpoint (RFC 6749 4.1.3 and 6), as Google answers it."""
        rec = recorded(request)
        form = rec.form or {}
        client = (form.get("client_id"), form.get("client_secret"))
        basic = rec.header("Authorization") or ""
        if basic.startswith("Basic "):  # requests-oauthlib sends the client's id and secret this way
            client = tuple(base64.b64decode(basic[6:]).decode().split(":", 1))  # type: ignore[assignment]
        if client != ("cx-client", "cx-secret"):
            return web.json_response({"error": "invalid_client", "error_description": "Unauthorized"}, status=401)
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code") in self.auth_codes:
            self.auth_codes.discard(form["code"])
            refresh = f"refresh-{len(self.refresh_tokens)}"
            self.refresh_tokens.add(refresh)
        elif grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            refresh = ""  # Google keeps the refresh token and sends none back
        else:
            return web.json_response({"error": "invalid_grant", "error_description": "Bad Request"}, status=400)
        access = f"access-{len(self.access_tokens) + 1}"
        self.access_tokens.append(access)
        body = {"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/gmail.modify"}
        return web.json_response(body | ({"refresh_token": refresh} if refresh else {}))
