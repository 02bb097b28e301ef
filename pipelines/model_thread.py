"""The one thread that runs every model computation (encoders, classifier, training) in a process.

PyTorch's OpenMP runtime gives each calling thread its own team of workers, and on a small machine
only the first team runs at full speed: measured on 2 cores, a MiniLM encode of one text takes
6.2 ms in the first thread that used torch and 12.6 ms in any other, so `asyncio.to_thread`
(which picks whichever pool thread is free) doubled the per-case triage latency. Running all of it
here keeps one team, and it also queues CPU-bound work instead of letting it fight over the cores.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cx-model")


async def run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `fn` in the model thread without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args, **kwargs))
