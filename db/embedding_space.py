"""The one embedding model of a deployment: every stored vector comes from it."""

from __future__ import annotations

from db.connection import Connection


class EmbeddingSpaceMismatch(RuntimeError):
    """The database holds vectors from another model; mixing them would make search meaningless."""


async def claim(conn: Connection, provider: str, model: str, dimensions: int) -> None:
    """Record the model on first use; afterwards refuse any other model or dimension."""
    await conn.execute(
        "INSERT INTO embedding_space (provider, model, dimensions) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        provider, model, dimensions,
    )
    await check(conn, provider, model, dimensions)


async def check(conn: Connection, provider: str, model: str, dimensions: int | None = None) -> None:
    """Refuse a model other than the recorded one (none recorded: nothing stored to mix with).
    Without `dimensions` (not known before the first call) only the provider and model are compared."""
    row = await conn.fetchrow("SELECT provider, model, dimensions FROM embedding_space")
    if row is None:
        return
    recorded = (row["provider"], row["model"], row["dimensions"] if dimensions is not None else None)
    if recorded != (provider, model, dimensions):
        raise EmbeddingSpaceMismatch(
            f"the database holds {row['dimensions']}-dimensional embeddings from {row['provider']} {row['model']}, "
            f"but this deployment embeds with {provider} {model}"
            f"{f' ({dimensions} dimensions)' if dimensions else ''}; "
            "run `cx kb reembed` to re-embed everything with the configured model"
        )
