"""The connection every query function takes: one from the pool, or one opened on its own (the
migrator's, the CLI's)."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# The pool hands out proxies that forward every Connection method, but asyncpg's stubs do not make
# the proxy a Connection: a function that works on either says so once, here.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
