from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from tests.cli_runner import cx, cx_env


def test_defaults_match_the_reference():
    settings = load_settings(_env_file=None)
    assert settings.confidence_threshold_high == 0.85
    assert settings.confidence_threshold_medium == 0.60
    assert settings.review_timeout_hours == 2
    assert settings.database_url is None
    assert str(settings.cx_data_dir) == ".cx-data"


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(SettingsError) as caught:
        load_settings(
            _env_file=None,
            confidence_threshold_high="abc",
            review_timeout_hours="-1",
            timezone="Mars/Olympus",
            database_url="mysql://nope",
        )
    text = str(caught.value)
    for name in ("CONFIDENCE_THRESHOLD_HIGH", "REVIEW_TIMEOUT_HOURS", "TIMEZONE", "DATABASE_URL"):
        assert name in text
    assert len(caught.value.problems) == 4


def test_thresholds_must_be_ordered():
    with pytest.raises(SettingsError, match="MEDIUM must not exceed"):
        load_settings(_env_file=None, confidence_threshold_high=0.5, confidence_threshold_medium=0.7)


def test_secrets_stay_out_of_repr_and_errors():
    settings = load_settings(
        _env_file=None,
        anthropic_api_key="sk-ant-very-secret",
        database_url="postgresql://u:hunter2@db/x",
        slack_bot_token="xoxb-secret-token",
    )
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("sk-ant-very-secret", "hunter2", "xoxb-secret-token"):
        assert secret not in shown
    assert settings.secret("anthropic_api_key") == "sk-ant-very-secret"


def test_settings_come_from_a_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("CONFIDENCE_THRESHOLD_HIGH=0.9\nSLACK_REVIEW_CHANNEL=#triage\n")
    settings = load_settings(_env_file=tmp_path / ".env")
    assert settings.confidence_threshold_high == 0.9
    assert settings.slack_review_channel == "#triage"


def test_cli_reports_bad_settings_with_exit_code_2(tmp_path):
    result = cx("db", "status", env=cx_env(CONFIDENCE_THRESHOLD_HIGH="abc", CX_DATA_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert "CONFIDENCE_THRESHOLD_HIGH" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "pg").exists(), "nothing may start before the settings are valid"


def test_cli_reports_an_unreachable_database_with_exit_code_2():
    url = "postgresql://cx:hunter2@127.0.0.1:9/cx"
    result = cx("db", "migrate", env=cx_env(DATABASE_URL=url))
    assert result.returncode == 2
    assert "cannot connect to the database" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
