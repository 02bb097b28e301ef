"""`cx pii check FILE`: what redaction would take out of a file, masked, so an admin can audit it."""

from __future__ import annotations

import json
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import UsageError, command, out, settings_from_env
from pipelines.privacy.redaction import find, mask

pii_app = typer.Typer(help="Personal data: what is redacted before an AI provider sees text.", no_args_is_help=True)


def _text_of(path: Path) -> str:
    """The file as redaction sees it; an .eml as its sender, recipients, subject and plain body."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix.lower() != ".eml":
        return raw.decode("utf-8", errors="replace")
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)  # policy.default builds EmailMessage
    body = msg.get_body(preferencelist=("plain", "html"))
    headers = [f"{name}: {msg[name]}" for name in ("From", "To", "Cc", "Reply-To", "Subject") if msg[name]]
    return "\n".join(headers) + "\n\n" + (str(body.get_content()) if body is not None else "")


@pii_app.command("check")
@command
async def check(
    file: Annotated[Path, typer.Argument(help="A text file or an .eml message.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print each value that would be redacted (type, masked value, line and column) and a count by type."""
    settings = settings_from_env(quiet=True)
    text = _text_of(file)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        for f in find(line, settings.pii_patterns):
            rows.append({"line": number, "column": f.start + 1, "type": f.kind, "value": mask(f.value)})
    counts = dict(sorted(Counter(r["type"] for r in rows).items()))
    if as_json:
        print(json.dumps({"file": str(file), "redaction_enabled": settings.pii_redaction,
                          "findings": rows, "counts": counts}, indent=2))
        return
    if not settings.pii_redaction:
        out.print("[yellow]PII_REDACTION is off: nothing is redacted today; this is what would be.[/]")
    table = Table("line", "column", "type", "value (masked)")
    for r in rows:
        table.add_row(str(r["line"]), str(r["column"]), str(r["type"]), escape(str(r["value"])))
    out.print(table if rows else f"Nothing to redact in {escape(str(file))}.")
    total = sum(counts.values())
    out.print(f"{total} to redact" + (": " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""))
