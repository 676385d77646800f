"""Bearer API keys: ``prl_<id>_<secret>``, stored as a SHA-256 hash, scoped and revocable.

The key is shown once when created. Scopes: ``read`` (analytics), ``write`` (agents, numbers,
knowledge, calls), ``admin`` (the tenant's API keys and settings) and ``platform`` (create tenants).
``admin`` implies ``write`` implies ``read``; ``platform`` stands alone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from functions.common.db import db, fetch_one
from functions.common.errors import ApiError

Scope = Literal["read", "write", "admin", "platform"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin", "platform")
_IMPLIED: dict[str, set[str]] = {
    "read": {"read"},
    "write": {"read", "write"},
    "admin": {"read", "write", "admin"},
    "platform": {"platform"},
}
KEY_PREFIX = "prl_"
bearer = HTTPBearer(auto_error=False, description="An API key: Authorization: Bearer prl_...")
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return any(scope in _IMPLIED.get(s, set()) for s in self.scopes)


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str  # the whole key; shown once


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> NewKey:
    key_id = KEY_PREFIX + secrets.token_hex(6)
    return NewKey(key_id=key_id, secret=f"{key_id}_{secrets.token_urlsafe(32)}")


async def store_key(
    conn: AsyncConnection[Any], tenant_id: str, scopes: list[str], name: str = ""
) -> NewKey:
    key = generate_key()
    await conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, key_hash, scopes, name) "
        "VALUES (%s, %s, %s, %s, %s)",
        (key.key_id, tenant_id, hash_key(key.secret), sorted(set(scopes)), name),
    )
    return key


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if len(token) > MAX_KEY_LENGTH or not token.startswith(KEY_PREFIX):
        raise _unauthorized("invalid API key")
    async with db() as conn:
        row = await fetch_one(
            conn,
            "SELECT key_id, tenant_id, scopes, revoked_at FROM api_keys WHERE key_hash = %s",
            (hash_key(token),),
        )
    if row is None:
        raise _unauthorized("invalid API key")
    if row["revoked_at"] is not None:
        raise _unauthorized("API key revoked")
    principal = Principal(row["tenant_id"], row["key_id"], frozenset(row["scopes"]))
    request.state.principal = principal
    return principal


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, if its key has ``scope``."""

    async def dependency(
        request: Request,
        _declared: HTTPAuthorizationCredentials | None = Security(bearer),  # for OpenAPI
    ) -> Principal:
        principal = await authenticate(request)
        if not principal.allows(scope):
            raise ApiError(403, f"this API key lacks the '{scope}' scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency
