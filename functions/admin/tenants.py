"""Tenants, their settings and API keys."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Response
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb

from functions.admin.models import (
    CreatedKey,
    KeyCreate,
    KeyOut,
    SettingsReplace,
    SettingsUpdate,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantSettings,
)
from functions.common.auth import Principal, require, store_key
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, invalid
from functions.common.observability import logger
from shared.retention import audit

router = APIRouter(tags=["tenants"], responses=ERROR_RESPONSES)

FIRST_KEY_SCOPES = ["admin"]


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "tenant"
    return f"{slug}-{secrets.token_hex(3)}"


def tenant_out(row: dict[str, Any]) -> TenantOut:
    return TenantOut(
        tenant_id=row["tenant_id"],
        name=row["name"],
        settings=TenantSettings.model_validate(row["settings"] or {}),
        created_at=row["created_at"],
    )


async def create_tenant(
    conn: AsyncConnection[Any],
    name: str,
    *,
    tenant_id: str | None = None,
    scopes: list[str] | None = None,
    key_name: str = "first key",
) -> TenantCreated:
    """A new tenant and its first API key (the CLI's ``tenant create`` uses this too)."""
    tenant_id = tenant_id or _slug(name)
    async with conn.transaction():
        try:
            row = await fetch_one(
                conn,
                "INSERT INTO tenants (tenant_id, name, settings) VALUES (%s, %s, %s) RETURNING *",
                (tenant_id, name, Jsonb(TenantSettings().model_dump(mode="json"))),
            )
        except UniqueViolation:
            raise ApiError(409, f"tenant '{tenant_id}' already exists") from None
        assert row is not None
        key_scopes = scopes or FIRST_KEY_SCOPES
        key = await store_key(conn, tenant_id, key_scopes, key_name)
        key_row = await fetch_one(conn, "SELECT * FROM api_keys WHERE key_id = %s", (key.key_id,))
    assert key_row is not None
    return TenantCreated(
        tenant=tenant_out(row), api_key=CreatedKey(**_key_fields(key_row), key=key.secret)
    )


def _key_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("key_id", "name", "scopes", "created_at", "revoked_at")}


@router.post(
    "/v1/tenants",
    status_code=201,
    response_model=TenantCreated,
    summary="Create a tenant and its first (admin) API key (platform scope)",
)
async def post_tenant(
    body: TenantCreate, _: Principal = Depends(require("platform"))
) -> TenantCreated:
    async with db() as conn:
        return await create_tenant(conn, body.name, tenant_id=body.tenant_id)


@router.get("/v1/tenant", response_model=TenantOut, summary="The API key's tenant")
async def get_tenant(principal: Principal = Depends(require("read"))) -> TenantOut:
    async with db() as conn:
        row = await fetch_one(
            conn, "SELECT * FROM tenants WHERE tenant_id = %s", (principal.tenant_id,)
        )
    if row is None:
        raise ApiError(404, "tenant not found")
    return tenant_out(row)


REDACTION_OFF_NEEDS_CONFIRMATION = (
    "turning PII redaction off exposes callers' card numbers and the like in transcripts: "
    "send confirm_redaction_off: true with it"
)


async def _change_settings(
    principal: Principal, changes: dict[str, Any], *, confirmed: bool
) -> TenantOut:
    """Apply ``changes`` to the stored settings and record who did what, in one transaction.

    Turning redaction off must be confirmed in the request, and is logged and audited as its own
    action."""
    async with db() as conn, conn.transaction():
        row = await fetch_one(
            conn,
            "SELECT settings FROM tenants WHERE tenant_id = %s FOR UPDATE",
            (principal.tenant_id,),
        )
        if row is None:
            raise ApiError(404, "tenant not found")
        before = TenantSettings.model_validate(row["settings"] or {})
        after = TenantSettings.model_validate(before.model_dump() | changes)
        turned_off = before.redact_pii and not after.redact_pii
        if turned_off and not confirmed:
            raise invalid("body.confirm_redaction_off", REDACTION_OFF_NEEDS_CONFIRMATION)
        old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
        changed = {k: {"from": old[k], "to": new[k]} for k in new if old[k] != new[k]}
        updated = await fetch_one(
            conn,
            "UPDATE tenants SET settings = %s WHERE tenant_id = %s RETURNING *",
            (Jsonb(new), principal.tenant_id),
        )
        if changed:
            action = "redaction_disabled" if turned_off else "settings_changed"
            await audit(conn, principal.tenant_id, principal.key_id, action, changed)
            log = logger.warning if turned_off else logger.info
            log(action, tenant_id=principal.tenant_id, key_id=principal.key_id, changed=changed)
    assert updated is not None
    return tenant_out(updated)


@router.put(
    "/v1/tenant/settings",
    response_model=TenantOut,
    summary="Replace all of the tenant's settings (every field required; PATCH changes some)",
)
async def put_tenant_settings(
    body: SettingsReplace, principal: Principal = Depends(require("admin"))
) -> TenantOut:
    changes = body.model_dump(exclude={"confirm_redaction_off"})
    return await _change_settings(principal, changes, confirmed=body.confirm_redaction_off)


@router.patch(
    "/v1/tenant/settings",
    response_model=TenantOut,
    summary="Change some of the tenant's settings; the others keep their value",
)
async def patch_tenant_settings(
    body: SettingsUpdate, principal: Principal = Depends(require("admin"))
) -> TenantOut:
    changes = body.model_dump(exclude={"confirm_redaction_off"}, exclude_unset=True)
    required = ("recording_enabled", "recording_retention_days", "redact_pii", "timezone", "prices")
    for name in required:
        if name in changes and changes[name] is None:
            raise invalid(f"body.{name}", "cannot be null")
    return await _change_settings(principal, changes, confirmed=body.confirm_redaction_off)


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=CreatedKey,
    summary="Create an API key (its secret is shown only in this response)",
)
async def post_key(body: KeyCreate, principal: Principal = Depends(require("admin"))) -> CreatedKey:
    if "platform" in body.scopes and not principal.allows("platform"):
        raise ApiError(403, "only a platform key can create platform keys")
    async with db() as conn, conn.transaction():
        key = await store_key(conn, principal.tenant_id, list(body.scopes), body.name)
        row = await fetch_one(conn, "SELECT * FROM api_keys WHERE key_id = %s", (key.key_id,))
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "key_created",
            {"key_id": key.key_id, "scopes": list(body.scopes), "name": body.name},
        )
    assert row is not None
    return CreatedKey(**_key_fields(row), key=key.secret)


@router.get(
    "/v1/api-keys", response_model=list[KeyOut], summary="The tenant's API keys (no secrets)"
)
async def list_keys(principal: Principal = Depends(require("admin"))) -> list[KeyOut]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            "SELECT * FROM api_keys WHERE tenant_id = %s ORDER BY created_at, key_id",
            (principal.tenant_id,),
        )
    return [KeyOut(**_key_fields(r)) for r in rows]


@router.delete(
    "/v1/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API key (at once; it cannot be restored)",
)
async def revoke_key(key_id: str, principal: Principal = Depends(require("admin"))) -> Response:
    async with db() as conn, conn.transaction():
        # The tenant's live keys, locked: two revocations at once cannot both pass the check.
        live = await fetch_all(
            conn,
            "SELECT key_id, scopes FROM api_keys WHERE tenant_id = %s AND revoked_at IS NULL "
            "ORDER BY key_id FOR UPDATE",
            (principal.tenant_id,),
        )
        admins = {r["key_id"] for r in live if "admin" in r["scopes"]}
        if admins == {key_id}:
            raise ApiError(
                409,
                "this is the tenant's last admin key: create another admin key before revoking it",
                code="last_admin_key",
            )
        cursor = await conn.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) "
            "WHERE key_id = %s AND tenant_id = %s",
            (key_id[:100], principal.tenant_id),
        )
        if cursor.rowcount:
            await audit(
                conn, principal.tenant_id, principal.key_id, "key_revoked", {"key_id": key_id}
            )
    if cursor.rowcount == 0:
        raise ApiError(404, f"no API key '{key_id[:100]}'")
    return Response(status_code=204)
