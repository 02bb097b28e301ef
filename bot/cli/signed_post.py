"""Sending a JSON file to one of our signed webhooks, as an integrator's system would
(`cx intake post`, `cx metrics push`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from bot.cli.common import UsageError, out
from bot.settings import Settings
from pipelines.signatures import signed_headers


def webhook_secret(settings: Settings) -> str:
    secret = settings.secret("webhook_secret")
    if secret is None:
        raise UsageError("WEBHOOK_SECRET is not set")
    return secret


def read_json_file(path: Path) -> tuple[bytes, Any]:
    """The file's bytes, sent as they are, and what they parse to; a UsageError naming the file
    (and the line, for bad JSON) otherwise."""
    try:
        body = path.read_bytes()
        return body, json.loads(body)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise UsageError(f"{path}:{line}: not JSON: {exc}" if line else f"{path}: not JSON: {exc}") from None


async def post_signed(secret: str, url: str, body: bytes) -> int:
    """POST the body signed with the secret, print the status and the answer; exit code 1 on an error status."""
    headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
            answer = await response.text()
    except aiohttp.ClientError as exc:
        raise UsageError(f"cannot reach {url}: {exc}") from None
    out.print(f"{response.status} {answer}")
    return 0 if response.status < 400 else 1
