"""The folders tell the architecture; these tests keep them telling the truth."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.cli_runner import ROOT

# What a SQL statement looks like inside a string, over as many lines as it spans: queries, writes,
# DDL, and the server functions we call with SELECT (locks, settings).
SQL = re.compile(
    r"\bSELECT\b.+?\bFROM\s+[a-z_]"
    r"|\bSELECT\s+(?:pg_\w+|set_config|current_setting|quote_ident)\s*\("
    r"|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|ALTER|DROP|TRUNCATE)\s+(?:UNIQUE\s+)?(?:TABLE|DATABASE|INDEX|EXTENSION|SCHEMA|VIEW|MATERIALIZED"
    r"|FUNCTION|TRIGGER|ROLE|TYPE|SEQUENCE|SYSTEM)\b",
    re.I | re.S,
)


def test_import_directions_hold():
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.timeout(600)  # a cold run (no .mypy_cache, as in CI) takes about 45 s on two cores
def test_the_type_checker_passes():
    """mypy, configured in pyproject.toml: strict on bot, handlers, pipelines, db and prompts, so each
    service is checked against the Protocol its listeners call."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def strings(source: str) -> Iterator[tuple[int, str]]:
    """Every string literal of a module but its docstrings, with its first line; an f-string's
    placeholders read as `{}`, so the statement around them still shows."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and id(node) not in inside_fstrings):
            yield node.lineno, node.value


def sql_outside_db(root: Path) -> list[str]:
    offenders = []
    for folder in ("bot", "handlers", "pipelines", "prompts"):
        for path in sorted((root / folder).rglob("*.py")):
            for line, text in strings(path.read_text()):
                if SQL.search(text):
                    offenders.append(f"{path.relative_to(root)}:{line}: {' '.join(text.split())[:80]}")
    return offenders


def test_sql_lives_only_in_db():
    assert sql_outside_db(ROOT) == []


@pytest.mark.parametrize("statement", [
    'f"CREATE DATABASE {name}"',
    'f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"',
    '"""\n    SELECT c.case_id,\n           c.status\n    FROM cases c\n"""',
    '("UPDATE cases "\n "SET status = $2 WHERE case_id = $1")',
    '"select pg_advisory_lock(hashtextextended($1, 0))"',
    '"ALTER TABLE llm_usage ADD COLUMN x int"',
])
def test_the_sql_check_sees_multi_line_statements_and_ddl(tmp_path, statement):
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "module.py").write_text(f"QUERY = {statement}\n")
    [offender] = sql_outside_db(tmp_path)
    assert offender.startswith("bot/module.py:1: ")


def test_the_sql_check_leaves_prose_alone(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "module.py").write_text(
        '"""Select the newest case from the queue and update its card: words, not SQL."""\n'
        'HINT = "Pick a reason from the list, then select Send."\n'
    )
    assert sql_outside_db(tmp_path) == []


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in readme]
    assert missing == []


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", readme)
    assert blocks[:2] == ["pip install -e . && cx demo", "pip install -e '.[dev,local]' && pytest"]
    assert blocks[1] in (ROOT / ".ci" / "run").read_text()


def test_no_test_module_imports_another():
    """Shared helpers live in tests/support/ and fixtures in conftest.py, where every module can see them."""
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for folder in ("tests", "bench") for path in (ROOT / folder).rglob("*.py")
                 for line, text in enumerate(path.read_text().splitlines(), 1)
                 if re.match(r"\s*(from|import)\s+tests\.test_", text)]
    assert offenders == []
