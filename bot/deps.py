"""The long-lived collaborators, built once at start-up and passed to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bot.metrics import Metrics
from bot.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    metrics: Metrics
