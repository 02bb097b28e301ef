"""An in-repo Mailbox (the port of pipelines/ports.py) for tests and benchmarks that need replies to
go somewhere: it keeps what it is asked to send, optionally taking its time, and receives nothing."""

from __future__ import annotations

import asyncio

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
