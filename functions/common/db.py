"""Database access for routes: a pooled connection, committed when the block ends cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection

from functions.common.runtime import runtime


@asynccontextmanager
async def db() -> AsyncIterator[AsyncConnection[Any]]:
    """A connection from the process pool (dict rows); rolled back if the block raises."""
    pool = await runtime().pool()
    async with pool.connection() as conn:
        yield conn


async def fetch_all(
    conn: AsyncConnection[Any], query: Any, params: Any = None
) -> list[dict[str, Any]]:
    cursor = await conn.execute(query, params)
    return list(await cursor.fetchall())


async def fetch_one(
    conn: AsyncConnection[Any], query: Any, params: Any = None
) -> dict[str, Any] | None:
    cursor = await conn.execute(query, params)
    row: dict[str, Any] | None = await cursor.fetchone()
    return row
