"""HMAC-SHA256 request signatures for our webhooks: `sha256=<hex>` over "v1:{timestamp}:{raw body}"."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from enum import StrEnum

TOLERANCE_SECONDS = 300
TIMESTAMP_HEADER = "X-CX-Timestamp"
SIGNATURE_HEADER = "X-CX-Signature"
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")


class SignatureProblem(StrEnum):
    MISSING = "missing signature or timestamp header"
    MALFORMED = "malformed signature or timestamp"
    EXPIRED = "timestamp outside the 5-minute window"
    MISMATCH = "signature does not match"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
) -> SignatureProblem | None:
    """None when the request is authentic and fresh; otherwise what is wrong with it."""
    if not timestamp or not signature:
        return SignatureProblem.MISSING
    # One spelling per timestamp (ASCII digits, no leading zero): "0170…" or other scripts' digits
    # would verify as the same request under another replay key. compare_digest needs ASCII too.
    if _TIMESTAMP.fullmatch(timestamp) is None or not signature.startswith("sha256=") or not signature.isascii():
        return SignatureProblem.MALFORMED
    if abs((now if now is not None else time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return SignatureProblem.EXPIRED
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return SignatureProblem.MISMATCH
    return None
