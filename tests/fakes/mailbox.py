"""In-repo Mailboxes (the port of pipelines/ports.py): a sink for tests and benchmarks that need replies
to go somewhere (it keeps what it is asked to send, optionally taking its time, and receives nothing),
and an inbox whose correspondents answer everything with an auto-reply."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage

from pipelines.ports import MailboxMessage


class SinkMailbox:
    address = "support@northwind.example"

    def __init__(self, *, delay: float = 0.0) -> None:
        self.sent: list[bytes] = []
        self._delay = delay

    async def send(self, raw: bytes, thread_id: str | None) -> str:
        if self._delay:
            await asyncio.sleep(self._delay)
        self.sent.append(raw)
        return f"sink-{len(self.sent)}"

    async def find_sent(self, rfc822_message_id: str) -> str | None:
        return None

    async def current_history_id(self) -> int:
        return 1

    async def added_since(self, history_id: int) -> tuple[list[str], int]:
        return [], history_id

    async def recent(self, limit: int) -> list[str]:
        return []

    async def fetch(self, message_id: str) -> MailboxMessage:
        raise LookupError(message_id)

    async def add_label(self, message_id: str, label: str) -> None:
        raise LookupError(message_id)  # it receives nothing, so there is nothing to label


class AutoReplyMailbox:
    """A support inbox whose correspondents all have an auto-responder: each message we send comes back
    at once as a new inbox message from its recipient. How the auto-reply is written is the point:

    - "marked": it says what it is (RFC 3834 `Auto-Submitted: auto-replied`);
    - "threaded": no marker, but In-Reply-To our message, so it joins the case it answers;
    - "bare": no marker and no threading, a new subject and Message-ID: to us, a new request every time.

    `honours_auto_submitted` makes the responder RFC 3834-compliant: it stays silent to mail that
    carries `Auto-Submitted` other than `no`."""

    address = "support@northwind.example"

    def __init__(self, style: str, *, honours_auto_submitted: bool = False) -> None:
        if style not in ("marked", "threaded", "bare"):
            raise ValueError(style)
        self.style = style
        self.honours_auto_submitted = honours_auto_submitted
        self.inbox: list[MailboxMessage] = []
        self.sent: list[EmailMessage] = []
        self.labels: dict[str, set[str]] = {}

    def receive(self, raw: bytes, thread_id: str | None = None) -> str:
        message_id = f"in-{len(self.inbox) + 1}"
        self.inbox.append(MailboxMessage(id=message_id, thread_id=thread_id or message_id, raw=raw))
        return message_id

    async def send(self, raw: bytes, thread_id: str | None) -> str:
        ours = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(ours, EmailMessage)
        self.sent.append(ours)
        marker = str(ours.get("Auto-Submitted", "no")).split(";")[0].strip().lower()
        if not (self.honours_auto_submitted and marker != "no"):
            self.receive(self._auto_reply(ours), thread_id if self.style != "bare" else None)
        return f"sent-{len(self.sent)}"

    def _auto_reply(self, ours: EmailMessage) -> bytes:
        n = len(self.sent)
        reply = EmailMessage()
        reply["From"] = str(ours["To"])
        reply["To"] = self.address
        reply["Message-ID"] = f"<auto-{n}@responder.example.net>"
        if self.style == "bare":
            reply["Subject"] = f"Automatic reply {n}"
        else:
            reply["Subject"] = f"Automatic reply: {ours['Subject']}"
            reply["In-Reply-To"] = reply["References"] = str(ours["Message-ID"])
        if self.style == "marked":
            reply["Auto-Submitted"] = "auto-replied"
        reply.set_content("I am away until Monday. About my card that has not arrived yet: "
                          "I will read your message when I am back.")
        return bytes(reply)

    async def find_sent(self, rfc822_message_id: str) -> str | None:
        found = [n for n, m in enumerate(self.sent, 1) if m["Message-ID"] == rfc822_message_id]
        return f"sent-{found[0]}" if found else None

    async def current_history_id(self) -> int:
        return len(self.inbox)

    async def added_since(self, history_id: int) -> tuple[list[str], int]:
        return [m.id for m in self.inbox[history_id:]], len(self.inbox)

    async def recent(self, limit: int) -> list[str]:
        return [m.id for m in self.inbox[-limit:]]

    async def fetch(self, message_id: str) -> MailboxMessage:
        return next(m for m in self.inbox if m.id == message_id)

    async def add_label(self, message_id: str, label: str) -> None:
        self.labels.setdefault(label, set()).add(message_id)
