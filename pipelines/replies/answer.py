"""What a reply says, without its greeting and sign-off: the part an article or an example reuses."""

from __future__ import annotations

import re

_GREETING_LINE = re.compile(r"^\s*(hi|hello|dear|hey|good (morning|afternoon|evening))\b[^\n]{0,40}$", re.I)
_SIGN_OFF_LINE = re.compile(r"^\s*(thanks|thank you|cheers|regards|best|kind regards|best regards|sincerely"
                            r"|many thanks)\b[^\n]{0,30}$", re.I)


def answer_text(reply: str) -> str:
    """A reply without its greeting and its sign-off: what an article can reuse."""
    lines = reply.strip().splitlines()
    if lines and _GREETING_LINE.match(lines[0]):
        lines = lines[1:]
    for i, line in enumerate(lines):
        if _SIGN_OFF_LINE.match(line) and i >= len(lines) - 4:
            lines = lines[:i]
            break
    return "\n".join(lines).strip()
