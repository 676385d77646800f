"""Database errors with messages a person can act on."""

from __future__ import annotations


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the message names the server (never the password)."""
