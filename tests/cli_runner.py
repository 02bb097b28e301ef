"""Run the real `cx` command in a subprocess, with a clean environment of our choosing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CX = [sys.executable, "-c", "from bot.cli.main import main; main()"]


def cx_env(**values: str) -> dict[str, str]:
    """PATH and HOME from this process, nothing else of it: no stray DATABASE_URL or tokens."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update({"LOG_FORMAT": "json", "COLUMNS": "200"})
    env.update(values)
    return env


def cx(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CX, *args], env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout
    )


def cx_background(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CX, *args], env=env, cwd=cwd or ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
