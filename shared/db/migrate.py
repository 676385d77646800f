"""Schema migrations with yoyo-migrations (plain SQL files in ``shared/db/migrations``)."""

from __future__ import annotations

from pathlib import Path

from yoyo import get_backend, read_migrations

from shared.db.errors import DatabaseUnavailable
from shared.db.pool import describe

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _backend_url(url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _backend(url: str):  # type: ignore[no-untyped-def]
    try:
        return get_backend(_backend_url(url))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} is unavailable: {first}"
        ) from None


def pending_migrations(url: str) -> list[str]:
    backend = _backend(url)
    return [m.id for m in backend.to_apply(read_migrations(str(MIGRATIONS_DIR)))]


def migrate(url: str) -> list[str]:
    """Apply every pending migration in one locked run; return the ids applied."""
    backend = _backend(url)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def ensure_database(url: str) -> bool:
    """Create the URL's database if it does not exist (development and tests). True if created."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    info = conninfo_to_dict(url)
    name = str(info.get("dbname") or "")
    if not name:
        return False
    admin = make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} is unavailable: {first}"
        ) from None
