"""Gmail without writing code: `cx gmail auth` against a fake Google token endpoint, the refreshed access
token written back to the token file, and the label on mail the desk took. The real OAuth client
(google-auth-oauthlib) and Gmail client (google-api-python-client) run against tests/fakes/gmail.py."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.clients import gmail_service
from bot.settings import load_settings
from pipelines.adapters.gmail_mailbox import GmailMailbox
from pipelines.intake.gmail_sync import sync_mailbox
from tests.cli_runner import CX, ROOT, cx_env
from tests.fakes.gmail import FakeGmail

MODIFY = "https://www.googleapis.com/auth/gmail.modify"
PROCESSED = "CX/processed"


def client_secrets(path: Path, token_uri: str, kind: str = "installed") -> Path:
    path.write_text(json.dumps({kind: {
        "client_id": "cx-client", "client_secret": "cx-secret", "project_id": "cx-test",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "redirect_uris": ["http://localhost"],
    }}))
    return path


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def gmail_auth(tmp_path: Path, fake_url: str, *args: str, stdin: str = "", credentials: Path | None = None,
                     token_file: Path | None = None, subprocess_: bool = False) -> Ran:
    """`cx gmail auth`; in this process (in a thread: the command runs its own event loop) unless
    `subprocess_`, which starts the real `cx` and costs seconds of imports."""
    env = cx_env(
        GMAIL_CREDENTIALS_FILE=str(credentials or client_secrets(tmp_path / "client.json", f"{fake_url}/token")),
        GMAIL_TOKEN_FILE=str(token_file or tmp_path / "token.json"), GMAIL_API_URL=fake_url,
        SUPPORT_EMAIL="support@example.com", CX_DATA_DIR=str(tmp_path / "cx-data"),
        # The fake token endpoint is plain HTTP on loopback; oauthlib refuses that unless told.
        OAUTHLIB_INSECURE_TRANSPORT="1",
    )
    if subprocess_:
        done = await asyncio.to_thread(partial(subprocess.run, [*CX, "gmail", "auth", *args], env=env, cwd=ROOT,
                                               input=stdin, capture_output=True, text=True, timeout=60))
        return Ran(done.returncode, done.stdout, done.stderr)
    result = await asyncio.to_thread(partial(CliRunner().invoke, app, ["gmail", "auth", *args], input=stdin,
                                             env=env))
    return Ran(result.exit_code, result.stdout, result.stderr)


def consent_url(stdout: str) -> dict[str, list[str]]:
    (url,) = [line for line in stdout.splitlines() if line.startswith("https://accounts.google.com/")]
    return parse_qs(urlsplit(url).query)


async def test_auth_prints_the_consent_url_exchanges_the_pasted_code_and_writes_a_private_token(tmp_path):
    token_file = tmp_path / "token.json"
    token_file.write_text("{}")
    token_file.chmod(0o644)  # an old, too readable file: replaced by one that never had those bits
    async with FakeGmail() as fake:
        code = fake.grant_code("4/0AbCdEf")
        result = await gmail_auth(tmp_path, fake.url, stdin=f"http://localhost/?state=s&code={code}&scope={MODIFY}\n",
                                  subprocess_=True)

        assert result.returncode == 0, result.stderr
        query = consent_url(result.stdout)
        assert query["client_id"] == ["cx-client"] and query["scope"] == [MODIFY]
        assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
        assert query["redirect_uri"] == ["http://localhost"] and query["response_type"] == ["code"]
        (exchange,) = fake.requests_to("/token", "POST")
        assert exchange.form["grant_type"] == "authorization_code" and exchange.form["code"] == code
        assert exchange.form["redirect_uri"] == "http://localhost"
        (profile,) = fake.requests_to("/gmail/v1/users/me/profile", "GET")
        assert profile.header("Authorization") == "Bearer access-1"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = json.loads(token_file.read_text())
    assert token["token"] == "access-1" and token["refresh_token"] == "refresh-1"
    assert token["client_id"] == "cx-client" and token["token_uri"] == f"{fake.url}/token"
    assert "Gmail answers for support@example.com" in result.stdout
    assert not list(tmp_path.glob(".token.json.*")), "no temporary file left behind"


async def test_auth_takes_the_bare_code_as_an_option(tmp_path):
    async with FakeGmail() as fake:
        result = await gmail_auth(tmp_path, fake.url, "--code", fake.grant_code("4/scripted"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "token.json").read_text())["token"] == "access-1"


async def test_a_refused_code_exits_2_and_writes_nothing(tmp_path):
    async with FakeGmail() as fake:
        result = await gmail_auth(tmp_path, fake.url, "--code", "4/never-issued")
    assert result.returncode == 2
    assert "Google refused the code: invalid_grant" in result.stderr
    assert not (tmp_path / "token.json").exists()


async def test_an_unwritable_token_file_exits_2_naming_it(tmp_path):
    token_file = tmp_path / "no-such-dir" / "token.json"
    async with FakeGmail() as fake:
        result = await gmail_auth(tmp_path, fake.url, "--code", fake.grant_code("4/ok"), token_file=token_file)
    assert result.returncode == 2
    assert f"GMAIL_TOKEN_FILE {token_file}: cannot write it" in " ".join(result.stderr.split())


@pytest.mark.parametrize("problem", ["missing", "not json", "web client"])
async def test_a_bad_credentials_file_exits_2_naming_it(tmp_path, problem):
    credentials = tmp_path / "client.json"
    if problem == "not json":
        credentials.write_text("<html>sign in</html>")
    elif problem == "web client":
        client_secrets(credentials, "https://oauth2.googleapis.com/token", kind="web")
    result = await gmail_auth(tmp_path, "http://127.0.0.1:9", "--code", "x", credentials=credentials)
    assert result.returncode == 2, result.stdout
    line = " ".join(result.stderr.split())
    assert f"GMAIL_CREDENTIALS_FILE {credentials}" in line, line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "token.json").exists()


def expired_token(path: Path, token_uri: str) -> Path:
    path.write_text(json.dumps({
        "token": "stale", "refresh_token": "r", "client_id": "cx-client", "client_secret": "cx-secret",
        "token_uri": token_uri, "scopes": [MODIFY], "expiry": "2020-01-01T00:00:00Z",
    }))
    path.chmod(0o600)
    return path


async def test_a_refreshed_access_token_is_written_back_and_used_by_the_next_call(tmp_path):
    async with FakeGmail() as fake:
        token_file = expired_token(tmp_path / "token.json", f"{fake.url}/token")
        settings = load_settings(_env_file=None, cx_data_dir=tmp_path / "cx-data", gmail_token_file=token_file,
                                 gmail_api_url=fake.url)
        mailbox = GmailMailbox(partial(gmail_service, settings), "support@example.com")

        await mailbox.current_history_id()
        await mailbox.current_history_id()  # a new service, built from the file again

        (refresh,) = fake.requests_to("/token", "POST")
        assert refresh.form["grant_type"] == "refresh_token" and refresh.form["refresh_token"] == "r"
        calls = fake.requests_to("/gmail/v1/users/me/profile", "GET")
        assert [c.header("Authorization") for c in calls] == ["Bearer access-1", "Bearer access-1"]
    saved = json.loads(token_file.read_text())
    assert saved["token"] == "access-1" and saved["refresh_token"] == "r"
    assert datetime.fromisoformat(saved["expiry"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


# ---- the processed label ---------------------------------------------------------------------------------

def mail(n: int, sender: str = "dana@example.net") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "support@example.com", f"Question {n}"
    m["Message-ID"] = f"<label{n}@mail.example.net>"
    m.set_content(f"My top-up number {n} is still pending.")
    return bytes(m)


async def test_mail_the_desk_took_gets_the_label_created_once_and_skipped_mail_does_not(pool, gmail):
    fake, mailbox = gmail
    taken = [fake.add_message(mail(n)) for n in range(2)]
    own = fake.add_message(mail(9, sender="support@example.com"))

    await sync_mailbox(pool, mailbox, processed_label=PROCESSED)
    fake.add_message(mail(2))  # a second sync: the label is found, not created again
    taken.append(list(fake.messages)[-1])
    await sync_mailbox(pool, mailbox, processed_label=PROCESSED)

    (label,) = [x for x in fake.labels.values() if x["name"] == PROCESSED]
    assert [m for m in fake.messages if label["id"] in fake.messages[m].label_ids] == taken
    assert label["id"] not in fake.messages[own].label_ids
    assert len(fake.requests_to("/gmail/v1/users/me/labels", "POST")) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases") == 3


async def test_an_existing_label_is_found_whatever_its_case_and_labelling_twice_changes_nothing(pool, gmail):
    fake, mailbox = gmail
    message = fake.add_message(mail(1))
    fake.labels["Label_7"] = {"id": "Label_7", "name": "cx/PROCESSED", "type": "user"}

    await mailbox.add_label(message, PROCESSED)
    await mailbox.add_label(message, PROCESSED)

    assert fake.messages[message].label_ids.count("Label_7") == 1
    assert not fake.requests_to("/gmail/v1/users/me/labels", "POST")


async def test_a_label_another_worker_creates_first_is_used_not_duplicated(pool, gmail):
    fake, mailbox = gmail
    message = fake.add_message(mail(1))
    fake.labels_made_elsewhere.add(PROCESSED)  # it appears between our lookup and our create: a 409

    await mailbox.add_label(message, PROCESSED)

    (label,) = [x for x in fake.labels.values() if x["name"] == PROCESSED]
    assert label["id"].startswith("Label_other_") and label["id"] in fake.messages[message].label_ids


async def test_a_failed_label_leaves_the_message_unseen_so_the_next_sync_labels_it(pool, gmail):
    fake, mailbox = gmail
    message = fake.add_message(mail(1))
    fake.fail_next_on("/modify", 403)  # 403 is not retried by the client

    with pytest.raises(Exception, match="403"):
        await sync_mailbox(pool, mailbox, processed_label=PROCESSED)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM gmail_messages_seen") == 0
        assert await conn.fetchval("SELECT count(*) FROM cases") == 1

    report = await sync_mailbox(pool, mailbox, processed_label=PROCESSED)

    assert report.outcomes == {"duplicate": 1}
    assert any(x.startswith("Label_") for x in fake.messages[message].label_ids)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases") == 1
        assert await conn.fetchval("SELECT count(*) FROM gmail_messages_seen") == 1
