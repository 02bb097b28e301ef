"""A fake Slack: the Web API under /api/<method> plus a Socket Mode websocket, for the real slack_sdk / slack_bolt."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .base import FakeServer, RecordedRequest, recorded

Params = dict[str, Any]


class SlackError(Exception):
    """Raised by a method handler to answer {"ok": false, "error": ...}."""


def _decoded(value: Any) -> Any:
    # Form-encoded calls carry blocks/view/files as JSON strings; JSON calls carry them as objects.
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _required(params: Params, name: str, error: str = "invalid_arguments") -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise SlackError(error)
    return value


class FakeSlack(FakeServer):
    def __init__(
        self,
        *,
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0FAKE",
    ) -> None:
        super().__init__()
        self.team_id, self.bot_user_id, self.bot_id, self.app_id = team_id, bot_user_id, bot_id, app_id
        self.messages: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_tabs: dict[str, dict[str, Any]] = {}
        self.reactions: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, str] = {}  # id -> name, what conversations.list lists (add_channel)
        self.users: dict[str, dict[str, Any]] = {}
        self.channel_members: dict[str, list[str]] = {}
        self.usergroup_members: dict[str, list[str]] = {}
        self.acks: list[dict[str, Any]] = []
        # Called with each ack as it arrives: a caller tracking many envelopes at once (a benchmark)
        # is told directly instead of re-scanning `acks` on every wake-up.
        self.ack_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_url (Bolt's respond())
        self.socket_connections = 0
        self._scripted: defaultdict[str, deque[tuple[int, dict[str, Any], dict[str, str]]]] = defaultdict(deque)
        self._counter = 0
        self._ts_counter = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._sent_at: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._view_open,
            "views.push": self._view_open,
            "views.update": self._view_update,
            "views.publish": self._view_publish,
            "conversations.members": self._members,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._user_info,
            "reactions.add": self._reaction_add,
            "files.upload": self._file_upload,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "conversations.list": self._conversations_list,
        }
        self.add_user(bot_user_id, name="cx-bot", is_bot=True)

    # ---- scripting -------------------------------------------------------------------------------------------

    def ratelimit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        body = {"ok": False, "error": "ratelimited"}
        self._scripted[method].extend([(429, body, {"Retry-After": str(retry_after)})] * times)

    def fail_next(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        self._scripted[method].extend([(200, {"ok": False, "error": error}, {})] * times)

    def add_user(
        self, user_id: str, *, name: str | None = None, email: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        name = name or user_id.lower()
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": extra.pop("real_name", name),
            "deleted": False,
            "is_bot": extra.pop("is_bot", False),
            "tz": extra.pop("tz", "Europe/London"),
            "profile": {"email": email, "display_name": name, "real_name": name},
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_channel(self, name: str, channel_id: str | None = None) -> str:
        """A channel conversations.list lists, by name without '#'; returns its id."""
        channel_id = channel_id or self._next_id("C")
        self.channels[channel_id] = name.removeprefix("#")
        return channel_id

    def shared_files(self, channel_id: str) -> list[dict[str, Any]]:
        """Files whose upload was completed into the channel, in upload order."""
        return [f for f in self.files.values() if f.get("channel") == channel_id and f.get("completed")]

    def calls(self, method: str) -> list[RecordedRequest]:
        return self.requests_to(f"/api/{method}")

    # ---- plumbing --------------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response_url/{hook}", self._response_url)
        app.on_shutdown.append(self._close_sockets)

    def check_auth(self, rec: RecordedRequest) -> web.StreamResponse | None:
        if not rec.path.startswith("/api/"):
            return None  # upload URLs are pre-signed and the websocket URL carries its own ticket
        method = rec.path.removeprefix("/api/")
        auth = rec.header("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else rec.params.get("token")
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if token in ("xoxb-invalid", "xapp-invalid"):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if (method == "apps.connections.open") != token.startswith("xapp-"):
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        status, headers = 200, dict[str, str]()
        if self._scripted[method]:
            status, body, headers = self._scripted[method].popleft()
        else:
            handler = self._methods.get(method)
            try:
                body = handler(recorded(request).params) if handler else {"ok": True}
            except SlackError as e:
                body = {"ok": False, "error": str(e)}
        await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _next_ts(self) -> str:
        self._ts_counter += 1
        micros = self._ts_counter * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:08X}"

    def _find(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self.messages:
            if message["channel"] == channel and message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    # ---- Web API methods -------------------------------------------------------------------------------------

    def _auth_test(self, p: Params) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "cx-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _connections_open(self, p: Params) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4()}"}

    def _post_message(self, p: Params) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        message = {
            "type": "message",
            "channel": channel,
            "ts": self._next_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": p.get("text", ""),
            "blocks": _decoded(p.get("blocks")),
            "attachments": _decoded(p.get("attachments")),
            "thread_ts": p.get("thread_ts"),
            "metadata": _decoded(p.get("metadata")),
            "edited": None,
        }
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _update(self, p: Params) -> dict[str, Any]:
        message = self._find(_required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found"))
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in p:
                message[key] = _decoded(p[key])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "text": message["text"],
            "message": message,
        }

    def _delete(self, p: Params) -> dict[str, Any]:
        message = self._find(_required(p, "channel", "channel_not_found"), _required(p, "ts", "message_not_found"))
        self.messages.remove(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _post_ephemeral(self, p: Params) -> dict[str, Any]:
        entry = {
            "channel": _required(p, "channel", "channel_not_found"),
            "user": _required(p, "user", "user_not_found"),
            "text": p.get("text", ""),
            "blocks": _decoded(p.get("blocks")),
            "thread_ts": p.get("thread_ts"),
            "message_ts": self._next_ts(),
        }
        self.ephemeral.append(entry)
        return {"ok": True, "message_ts": entry["message_ts"]}

    def _stored_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        return {
            **view,
            "id": view_id or self._next_id("V"),
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": self._next_id("H"),
            "state": {"values": {}},
        }

    def _view_open(self, p: Params) -> dict[str, Any]:
        _required(p, "trigger_id")
        stored = self._stored_view(_decoded(_required(p, "view")))
        self.views[stored["id"]] = stored
        return {"ok": True, "view": stored}

    def _view_update(self, p: Params) -> dict[str, Any]:
        view_id = p.get("view_id")
        if not view_id and p.get("external_id"):
            view_id = next((v["id"] for v in self.views.values() if v.get("external_id") == p["external_id"]), None)
        if view_id not in self.views:
            raise SlackError("not_found")
        if p.get("hash") and p["hash"] != self.views[view_id]["hash"]:
            raise SlackError("hash_conflict")
        self.views[view_id] = self._stored_view(_decoded(_required(p, "view")), view_id)
        return {"ok": True, "view": self.views[view_id]}

    def _view_publish(self, p: Params) -> dict[str, Any]:
        stored = self._stored_view(_decoded(_required(p, "view")))
        self.home_tabs[_required(p, "user_id", "user_not_found")] = stored
        return {"ok": True, "view": stored}

    def _members(self, p: Params) -> dict[str, Any]:
        members = self.channel_members.get(_required(p, "channel", "channel_not_found"), [])
        return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}

    def _replies(self, p: Params) -> dict[str, Any]:
        channel, ts = _required(p, "channel", "channel_not_found"), _required(p, "ts", "thread_not_found")
        thread = [m for m in self.messages if m["channel"] == channel and ts in (m["ts"], m["thread_ts"])]
        if not thread:
            raise SlackError("thread_not_found")
        keep_metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        return {"ok": True, "messages": [m if keep_metadata else {k: v for k, v in m.items() if k != "metadata"}
                                         for m in thread],
                "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _history(self, p: Params) -> dict[str, Any]:
        """The channel's top-level messages, newest first (one page of `limit`)."""
        channel = _required(p, "channel", "channel_not_found")
        limit = int(p.get("limit") or 100)
        keep_metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        found = [m for m in reversed(self.messages) if m["channel"] == channel and m["thread_ts"] in (None, m["ts"])]
        found = found[:limit]
        return {"ok": True, "messages": [m if keep_metadata else {k: v for k, v in m.items() if k != "metadata"}
                                         for m in found],
                "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _usergroup_users(self, p: Params) -> dict[str, Any]:
        group = _required(p, "usergroup", "no_such_subteam")
        if group not in self.usergroup_members:
            raise SlackError("no_such_subteam")
        return {"ok": True, "users": self.usergroup_members[group]}

    def _user_info(self, p: Params) -> dict[str, Any]:
        user = self.users.get(_required(p, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        return {"ok": True, "user": user}

    def _reaction_add(self, p: Params) -> dict[str, Any]:
        reaction = {
            "channel": _required(p, "channel", "channel_not_found"),
            "timestamp": _required(p, "timestamp", "message_not_found"),
            "name": _required(p, "name", "invalid_name"),
        }
        if reaction in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.append(reaction)
        return {"ok": True}

    def _file_upload(self, p: Params) -> dict[str, Any]:
        content = p.get("file") or p.get("content") or b""
        file = {
            "id": self._next_id("F"),
            "name": p.get("filename", "file"),
            "title": p.get("title"),
            "content": content.encode() if isinstance(content, str) else content,
            "channels": [c for c in str(p.get("channels", "")).split(",") if c],
        }
        self.files[file["id"]] = file
        return {"ok": True, "file": {k: v for k, v in file.items() if k != "content"}}

    def _upload_url(self, p: Params) -> dict[str, Any]:
        length = int(p.get("length") or 0)
        if length <= 0:
            raise SlackError("invalid_arguments")
        file_id = self._next_id("F")
        self.files[file_id] = {"id": file_id, "name": _required(p, "filename"), "length": length,
                               "alt_txt": p.get("alt_txt")}
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}

    def _complete_upload(self, p: Params) -> dict[str, Any]:
        # Like Slack: the channel is an id (a "#name" is not found), and every file must have been uploaded.
        channel = p.get("channel_id")
        if channel is not None and not (channel in self.channels or channel.startswith(("C", "G", "D"))):
            raise SlackError("channel_not_found")
        completed = []
        for entry in _decoded(_required(p, "files")):
            file = self.files.get(entry["id"])
            if file is None or "content" not in file:
                raise SlackError("file_not_found")
            file.update(title=entry.get("title"), channel=channel, thread_ts=p.get("thread_ts"), completed=True)
            file.update(initial_comment=p.get("initial_comment"))
            completed.append({"id": file["id"], "title": file["title"], "name": file["name"]})
        return {"ok": True, "files": completed}

    def _conversations_list(self, p: Params) -> dict[str, Any]:
        channels = [{"id": cid, "name": name, "is_channel": True, "is_archived": False}
                    for cid, name in self.channels.items()]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    async def _upload(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return web.Response(status=404, text="not found")
        file["content"] = recorded(request).body
        return web.Response(text=f"OK - {len(file['content'])}")

    async def _response_url(self, request: web.Request) -> web.Response:
        rec = recorded(request)
        self.responses.append({"hook": request.match_info["hook"], **(rec.json or rec.form or {})})
        await self._notify()  # wakes wait_until, as the Web API methods do
        return web.Response(text="ok")

    # ---- Socket Mode -----------------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        # autoping answers the SDK's "sdk-ping-pong:<t>" pings with matching pongs, which it uses to detect staleness.
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data.startswith("{"):
                    await self._on_client_message(msg.json())
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    async def _on_client_message(self, message: dict[str, Any]) -> None:
        if "envelope_id" not in message:
            return
        received_at = time.monotonic()
        sent_at = self._sent_at.get(message["envelope_id"])
        latency = None if sent_at is None else received_at - sent_at
        ack = {**message, "sent_at": sent_at, "received_at": received_at, "latency": latency}
        self.acks.append(ack)
        for listener in self.ack_listeners:
            listener(ack)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 5) -> Any:
        """Wait until predicate() is truthy, re-checked after every API call and socket event; returns its value."""
        async with asyncio.timeout(timeout), self._changed:
            return await self._changed.wait_for(predicate)

    @property
    def connected(self) -> int:
        return len(self._sockets)

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    async def wait_connected(self, timeout: float = 5) -> None:
        await self.wait_until(lambda: self._sockets, timeout)

    async def send_envelope(
        self,
        type_: str,
        payload: dict[str, Any],
        envelope_id: str | None = None,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Deliver one envelope to the newest connection; like Slack, each envelope goes to a single socket."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if type_ == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        self._sent_at[envelope_id] = time.monotonic()
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    def block_actions(self, message: dict[str, Any], action_id: str, user: str, *, action_ts: str | None = None,
                      ephemeral: bool = False) -> dict[str, Any]:
        """The block_actions payload Slack sends when `user` clicks the button `action_id` in `message`
        (a message as the Web API stored it: channel, ts, text, blocks)."""
        block, element = next((b, e) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                              if e["action_id"] == action_id)
        action_ts = action_ts or f"{time.time():.6f}"
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "verification-token",
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                          "is_ephemeral": ephemeral},
            "trigger_id": f"{action_ts}.{self._next_id('')}.trigger",
            "channel": {"id": message["channel"], "name": "channel"},
            "response_url": f"{self.url}/response_url/{uuid.uuid4().hex}",
            "actions": [{"action_id": action_id, "block_id": block.get("block_id", ""), "type": "button",
                         "text": element["text"], "value": element["value"], "action_ts": action_ts}],
        }
        if not ephemeral:  # Slack includes the message, except for ephemeral ones
            payload["message"] = {"type": "message", "ts": message["ts"], "text": message.get("text", ""),
                                  "blocks": message["blocks"]}
        return payload

    async def send_slash_command(
        self, command: str, text: str = "", *, user_id: str = "U0CUSTOMER", channel_id: str = "C0SUPPORT"
    ) -> str:
        payload = {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "command": command,
            "text": text,
            "response_url": f"{self.url}/response_url/{uuid.uuid4().hex}",
            "trigger_id": f"{self._next_id('')}.trigger",
        }
        return await self.send_envelope("slash_commands", payload, accepts_response_payload=True)

    async def send_event(self, event: dict[str, Any]) -> str:
        payload = {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": self._next_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }
        return await self.send_envelope("events_api", payload)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((a for a in self.acks if a["envelope_id"] == envelope_id), None)

        return await self.wait_until(find, timeout)

    async def disconnect_clients(self, reason: str = "refresh_requested") -> None:
        for ws in list(self._sockets):
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})
