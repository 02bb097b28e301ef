"""Talking to a `cx run` under test: a free port for it, and waiting for its health report."""

from __future__ import annotations

import asyncio
import socket

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def healthz(port: int, until, timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    body = await response.json()
                    if until(body):
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("cx run never reported the expected health")
