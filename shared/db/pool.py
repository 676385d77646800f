"""Async psycopg 3 connections and pools."""

from __future__ import annotations

from psycopg import AsyncConnection, OperationalError
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from shared.db.errors import DatabaseUnavailable


def describe(url: str) -> str:
    """host:port/dbname of a URL, without credentials, for error messages."""
    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "the configured database"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


async def connect(url: str, *, autocommit: bool = False) -> AsyncConnection[dict[str, object]]:
    """One connection with dict rows, or :class:`DatabaseUnavailable`."""
    try:
        return await AsyncConnection.connect(
            url, autocommit=autocommit, row_factory=dict_row, connect_timeout=5
        )
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} is unavailable: {first}"
        ) from None


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 10
) -> AsyncConnectionPool:
    """An opened pool; fails fast with :class:`DatabaseUnavailable` if the server is down."""
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except Exception as exc:
        await pool.close()
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} is unavailable: {type(exc).__name__}: {exc}"
        ) from None
    return pool
