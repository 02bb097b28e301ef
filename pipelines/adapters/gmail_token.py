"""The Gmail OAuth token file: written only by its owner (mode 0600), and rewritten after every refresh
so the next process starts from the fresh access token instead of refreshing again."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from google.oauth2.credentials import Credentials

GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]  # read, label and send; no delete
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


class TokenFileError(ValueError):
    """The token file is missing, unreadable or not an authorised-user token."""


def write_token(path: Path, content: str) -> None:
    """Replace the file atomically with one created 0600: it never exists, even briefly, with wider
    permissions, and a reader never sees half a token."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class SavedCredentials(Credentials):
    """Credentials that write themselves back to their token file after each refresh. (Calls go
    through the class, not super(): mypy's untyped_calls_exclude matches only the class's name.)"""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        Credentials.__init__(self, **kwargs)
        self.path = path

    def refresh(self, request: Any) -> None:
        Credentials.refresh(self, request)
        write_token(self.path, Credentials.to_json(self))


def load_credentials(path: Path, scopes: list[str] = GMAIL_SCOPES) -> SavedCredentials:
    # Not Credentials.from_authorized_user_file: it always refreshes at Google's endpoint, ignoring the
    # token_uri that `cx gmail auth` copied from the client secrets (and that tests point at a fake).
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenFileError(f"{path}: cannot read the Gmail token ({exc}); run `cx gmail auth`") from None
    missing = {"refresh_token", "client_id", "client_secret"} - set(info if isinstance(info, dict) else ())
    if missing:
        raise TokenFileError(f"{path}: not a Gmail token, it lacks {', '.join(sorted(missing))}; run `cx gmail auth`")
    expiry = info.get("expiry")
    return SavedCredentials(
        path,
        token=info.get("token"),
        refresh_token=info["refresh_token"],
        token_uri=info.get("token_uri") or GOOGLE_TOKEN_URI,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=scopes,
        # No expiry recorded: treat the access token as expired, so the first call refreshes it.
        expiry=datetime.strptime(expiry.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S") if expiry else datetime(1970, 1, 1),
    )
