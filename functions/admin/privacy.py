"""Deleting a call or every call of a caller's number, and the tenant's audit log.

Deletion is shared/retention.py's (the retention purge deletes the same way): rows, events,
status callbacks and recording go; a tombstone keeps the call from coming back; the audit log
records who deleted what, in the same transaction.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from functions.admin.models import AuditEntry, AuditPage, Deletion
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all
from functions.common.errors import ERROR_RESPONSES, ApiError
from functions.common.runtime import runtime
from shared.recordings import local_root
from shared.retention import audit, calls_of_number, delete_calls, remove_recordings

router = APIRouter(tags=["privacy"], responses=ERROR_RESPONSES)

MAX_AUDIT_PAGE = 500


def _recording_root() -> FilePath | None:
    settings = runtime().settings
    return local_root(settings.recording_store, settings.data_dir)


@router.delete(
    "/v1/calls/{call_id}",
    response_model=Deletion,
    summary="Delete a call: transcript, recording, events and everything derived (audited)",
)
async def delete_call(
    call_id: str = Path(min_length=1, max_length=128),
    principal: Principal = Depends(require("admin")),
) -> Deletion:
    async with db() as conn, conn.transaction():
        deleted = await delete_calls(conn, principal.tenant_id, [call_id], reason="request")
        if not deleted.call_ids:
            raise ApiError(404, f"no call '{call_id}'")
        await audit(
            conn, principal.tenant_id, principal.key_id, "call_deleted", {"call_id": call_id}
        )
    removed = remove_recordings(deleted.recordings, _recording_root())
    return Deletion(calls=1, recordings=removed, call_ids=deleted.call_ids)


@router.delete(
    "/v1/callers/{number}",
    response_model=Deletion,
    summary="Delete every call from or to a phone number (a caller's request; audited)",
)
async def delete_caller(
    number: Annotated[str, Path(pattern=r"^\+[1-9][0-9]{6,14}$")],
    principal: Principal = Depends(require("admin")),
) -> Deletion:
    async with db() as conn, conn.transaction():
        ids = await calls_of_number(conn, principal.tenant_id, number)
        deleted = await delete_calls(conn, principal.tenant_id, ids, reason="caller_request")
        # The number itself is not written to the log: the point is to forget it.
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "caller_deleted",
            {"calls": len(deleted.call_ids), "number_suffix": number[-2:]},
        )
    removed = remove_recordings(deleted.recordings, _recording_root())
    return Deletion(calls=len(deleted.call_ids), recordings=removed, call_ids=deleted.call_ids)


@router.get(
    "/v1/audit-log",
    response_model=AuditPage,
    summary="The tenant's admin actions (keys, settings, deletions), newest first",
)
async def get_audit_log(
    principal: Principal = Depends(require("admin")),
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    before: Annotated[
        int | None, Query(ge=1, description="next_before of the previous page.")
    ] = None,
) -> AuditPage:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            "SELECT entry_id, key_id, action, detail, at FROM tenant_audit_log "
            "WHERE tenant_id = %s AND (%s::bigint IS NULL OR entry_id < %s) "
            "ORDER BY entry_id DESC LIMIT %s",
            (principal.tenant_id, before, before, limit + 1),
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEntry(**r) for r in rows],
        next_before=rows[-1]["entry_id"] if more else None,
    )
