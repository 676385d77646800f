"""PostgreSQL: connection pool, migrations and the event projection (events -> call rows)."""

from shared.db.errors import DatabaseUnavailable
from shared.db.migrate import migrate, pending_migrations
from shared.db.pool import connect, create_pool
from shared.db.projection import apply_events, apply_new_events

__all__ = [
    "DatabaseUnavailable",
    "apply_events",
    "apply_new_events",
    "connect",
    "create_pool",
    "migrate",
    "pending_migrations",
]
