"""Each case's redaction map (placeholder -> value): read to restore a draft, merged as a case
gains messages so its numbering stays stable. Never logged."""

from __future__ import annotations

import json
from uuid import UUID

from db.connection import Connection


async def load(conn: Connection, case_id: UUID) -> dict[str, str]:
    raw = await conn.fetchval("SELECT map FROM case_pii WHERE case_id = $1", case_id)
    return dict(json.loads(raw)) if raw else {}


async def merge(conn: Connection, case_id: UUID, mapping: dict[str, str]) -> None:
    """Add placeholders to the case's map; one already stored keeps its value (numbers never move)."""
    if not mapping:
        return
    await conn.execute(
        """
        INSERT INTO case_pii (case_id, map) VALUES ($1, $2::jsonb)
        ON CONFLICT (case_id) DO UPDATE SET map = $2::jsonb || case_pii.map, updated_at = now()
        """,
        case_id, json.dumps(mapping),
    )
