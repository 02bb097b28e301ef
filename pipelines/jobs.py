"""The names of durable jobs, shared by whoever enqueues them and the worker that runs them."""

from __future__ import annotations

from enum import StrEnum


class JobName(StrEnum):
    PRUNE = "maintenance.prune"
