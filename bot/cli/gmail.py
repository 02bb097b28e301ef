"""`cx gmail auth`: connect the support mailbox without writing code (Google's installed-app OAuth flow)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import typer
from rich.markup import escape

from bot.cli.common import UsageError, command, err, out, settings_from_env
from bot.settings import Settings

gmail_app = typer.Typer(help="The Gmail support mailbox.", no_args_is_help=True)

# Desktop clients may redirect to any loopback address. Nothing listens there: the browser shows an
# error page whose address holds the code, which works the same on a server without a browser.
DEFAULT_REDIRECT = "http://localhost"


def _client_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        raise UsageError("GMAIL_CREDENTIALS_FILE is not set: download the OAuth client (type Desktop app) "
                         "JSON from the Google Cloud console and set GMAIL_CREDENTIALS_FILE to its path")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"GMAIL_CREDENTIALS_FILE {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError:
        raise UsageError(f"GMAIL_CREDENTIALS_FILE {path}: not JSON; download the OAuth client JSON again") from None
    client = config.get("installed") if isinstance(config, dict) else None
    if not isinstance(client, dict):
        raise UsageError(f"GMAIL_CREDENTIALS_FILE {path}: not a Desktop app OAuth client (no \"installed\" "
                         "section); create an OAuth client of type Desktop app")
    missing = [k for k in ("client_id", "client_secret", "auth_uri", "token_uri") if not client.get(k)]
    if missing:
        raise UsageError(f"GMAIL_CREDENTIALS_FILE {path}: the OAuth client lacks {', '.join(missing)}")
    return {"installed": client}


def _code_from(pasted: str) -> str:
    """The authorisation code, pasted alone or as the whole address the browser was sent to."""
    text = pasted.strip()
    if "?" not in text:
        if not text:
            raise UsageError("no code given")
        return text
    query = parse_qs(urlsplit(text).query)
    if "error" in query:
        raise UsageError(f"Google did not grant access: {query['error'][0]}")
    if not query.get("code"):
        raise UsageError("the address holds no code= parameter; paste the whole address from the browser")
    return query["code"][0]


def _exchange(config: dict[str, Any], code: str) -> str:
    """The authorised-user token JSON for `code` (blocking: the OAuth client is synchronous)."""
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error
    from requests import RequestException

    flow = _flow(config)
    try:
        flow.fetch_token(code=code)
    except OAuth2Error as exc:
        detail = f" ({exc.description})" if exc.description else ""
        raise UsageError(f"Google refused the code: {exc.error}{detail}; run `cx gmail auth` again") from None
    except RequestException as exc:
        raise UsageError(f"cannot reach the token endpoint {config['installed']['token_uri']}: {exc}") from None
    except Warning:  # oauthlib's way of saying fewer scopes were granted than asked for
        raise UsageError("the consent did not grant gmail.modify; run `cx gmail auth` again and allow "
                         "every permission asked") from None
    credentials = flow.credentials
    if not credentials.refresh_token:
        raise UsageError("Google sent no refresh token: remove the app's access at "
                         "https://myaccount.google.com/permissions and run `cx gmail auth` again")
    return str(credentials.to_json())


def _flow(config: dict[str, Any]) -> Any:
    from google_auth_oauthlib.flow import Flow

    from pipelines.adapters.gmail_token import GMAIL_SCOPES

    redirect = (config["installed"].get("redirect_uris") or [DEFAULT_REDIRECT])[0]
    # No PKCE: its verifier lives in one process, and a code passed later with --code comes from the
    # address an earlier run printed. The client secret authenticates the exchange instead.
    return Flow.from_client_config(config, GMAIL_SCOPES, redirect_uri=redirect, autogenerate_code_verifier=False)


def _mailbox_address(settings: Settings) -> str:
    from bot.clients import gmail_service

    service = gmail_service(settings)
    assert service is not None  # GMAIL_TOKEN_FILE is set: the token was just written there
    with service:
        return str(service.users().getProfile(userId="me").execute(num_retries=1)["emailAddress"])


@gmail_app.command("auth")
@command
async def auth(
    code: Annotated[str | None, typer.Option(help="The code (or the address the browser was sent to), "
                                                  "instead of a prompt; for scripts.")] = None,
) -> int:
    """Authorise the support mailbox: open the printed address, allow access, paste back the code.
    Writes GMAIL_TOKEN_FILE (mode 0600)."""
    from pipelines.adapters.gmail_token import write_token

    settings = settings_from_env(quiet=True)
    config = _client_config(settings.gmail_credentials_file)
    if settings.gmail_token_file is None:
        raise UsageError("GMAIL_TOKEN_FILE is not set: where should the token be written?")
    # offline + consent: Google sends a refresh token every time, also to an account that consented before.
    url, _ = _flow(config).authorization_url(access_type="offline", prompt="consent")
    out.print("Open this address, sign in as the support mailbox and allow access:\n", highlight=False)
    print(url, flush=True)  # plain print: rich would wrap a long URL across lines
    if code is None:
        out.print("\nThe browser then lands on an address that does not load; copy that whole address "
                  "(or just its code= value).", highlight=False)
        code = typer.prompt("Address or code")
    token = await asyncio.to_thread(_exchange, config, _code_from(code))
    try:
        write_token(settings.gmail_token_file, token)
    except OSError as exc:
        raise UsageError(f"GMAIL_TOKEN_FILE {settings.gmail_token_file}: cannot write it "
                         f"({exc.strerror or exc}); the code is used up, run `cx gmail auth` again") from None
    out.print(f"Token written to {settings.gmail_token_file} (mode 0600).", highlight=False)
    try:
        address = await asyncio.to_thread(_mailbox_address, settings)
    except Exception as exc:
        err.print(f"[red]Gmail did not answer with the new token:[/] {type(exc).__name__}: {escape(str(exc))}",
                  highlight=False)
        return 1
    out.print(f"Gmail answers for {address}.", highlight=False)
    if settings.support_email and settings.support_email.lower() != address.lower():
        out.print(f"[yellow]SUPPORT_EMAIL is {settings.support_email}, not {address}: set it to the mailbox "
                  "you authorised.[/]", highlight=False)
    return 0
