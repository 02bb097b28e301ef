"""Signed rating-link tokens: which case a CSAT click is about, and until when the link works.

A token is base64url, without padding, of 32 bytes: the case id (16), the expiry as unix seconds
(4, big-endian, good until 2106) and the first 12 bytes of HMAC-SHA256 over those 20 bytes under
a domain label, keyed with the CSAT secret. That is 43 URL-safe characters; only the exact
encoding of valid bytes is accepted, so no two strings stand for one token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

_LABEL = b"cx-csat-v1:"  # a MAC made for anything else never verifies here
_MAC_BYTES = 12  # 96 bits: forging one needs ~2^96 tries against a server that answers each
_BODY = struct.Struct(">16sI")
TOKEN_CHARS = 43
_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")
_MAX_EXPIRY = 2**32 - 1


class Rejection(StrEnum):
    MALFORMED = "malformed"
    FORGED = "forged"
    EXPIRED = "expired"


class InvalidToken(ValueError):
    def __init__(self, why: Rejection) -> None:
        super().__init__(f"rating link {why.value}")
        self.why = why


@dataclass(frozen=True)
class CsatClaim:
    case_id: UUID
    expires_at: datetime


def sign(case_id: UUID, expires_at: datetime, secret: str) -> str:
    seconds = int(expires_at.timestamp())
    if not 0 < seconds <= _MAX_EXPIRY:
        raise ValueError(f"expiry {expires_at.isoformat()} does not fit a rating link")
    body = _BODY.pack(case_id.bytes, seconds)
    return _encode(body + _mac(body, secret))


def verify(token: str, secret: str, now: datetime) -> CsatClaim:
    """The case a token names; InvalidToken if it is not one of ours or has expired (checked in
    that order, so an expired token reveals nothing a forged one would not)."""
    if not _SHAPE.fullmatch(token):
        raise InvalidToken(Rejection.MALFORMED)
    raw = base64.urlsafe_b64decode(token + "=")
    if _encode(raw) != token:  # the last character's two spare bits must be zero
        raise InvalidToken(Rejection.MALFORMED)
    body, mac = raw[: _BODY.size], raw[_BODY.size:]
    if not hmac.compare_digest(mac, _mac(body, secret)):
        raise InvalidToken(Rejection.FORGED)
    case_bytes, seconds = _BODY.unpack(body)
    expires_at = datetime.fromtimestamp(seconds, UTC)
    if now >= expires_at:
        raise InvalidToken(Rejection.EXPIRED)
    return CsatClaim(UUID(bytes=case_bytes), expires_at)


def _mac(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode(), _LABEL + body, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
