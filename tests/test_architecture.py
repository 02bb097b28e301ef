"""The folders tell the architecture; these tests keep them telling the truth."""

from __future__ import annotations

import re
import subprocess
import sys

from bot.settings import Settings

from tests.cli_runner import ROOT

SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.I)


def test_import_directions_hold():
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sql_lives_only_in_db():
    offenders = []
    for folder in ("bot", "handlers", "pipelines", "prompts"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if SQL.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in readme]
    assert missing == []


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", readme)
    assert blocks[:2] == ["pip install -e . && cx demo", "pip install -e '.[dev,local]' && pytest"]
    assert blocks[1] in (ROOT / ".ci" / "run").read_text()
