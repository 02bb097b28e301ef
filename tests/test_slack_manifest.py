"""The Slack app manifest in the README declares what the app listens for."""

from __future__ import annotations

import yaml

from tests.cli_runner import ROOT


def test_the_readme_manifest_declares_what_the_app_listens_for():
    readme = (ROOT / "README.md").read_text()
    manifest = yaml.safe_load(readme.split("## Slack", 1)[1].split("```yaml", 1)[1].split("```", 1)[0])
    features, settings = manifest["features"], manifest["settings"]
    assert {c["command"] for c in features["slash_commands"]} == {"/case", "/kb"}
    assert [s["callback_id"] for s in features["shortcuts"]] == ["create_support_case"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert {"app_home_opened", "message.channels"} <= set(settings["event_subscriptions"]["bot_events"])
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "usergroups:read", "users:read.email", "channels:history"} <= scopes
