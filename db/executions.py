"""workflow_executions: one row per pipeline run, with its outcome and duration."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from db.connection import Connection


async def start(conn: Connection, workflow: str, case_id: UUID | None = None) -> UUID:
    execution_id: UUID = await conn.fetchval(
        "INSERT INTO workflow_executions (workflow_name, case_id, started_at) "
        "VALUES ($1, $2, clock_timestamp()) RETURNING execution_id",
        workflow,
        case_id,
    )
    return execution_id


async def finish(
    conn: Connection,
    execution_id: UUID,
    status: str,
    *,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "UPDATE workflow_executions SET status = $2, finished_at = clock_timestamp(), error_message = $3, "
        "metadata = metadata || $4::jsonb WHERE execution_id = $1",
        execution_id,
        status,
        error,
        json.dumps(metadata or {}),
    )
