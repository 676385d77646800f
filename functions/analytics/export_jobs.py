"""Export jobs: POST /v1/exports, GET /v1/exports, GET /v1/exports/{export_id} and its file.

Why jobs: behind API Gateway + Lambda an answer is buffered and at most 6 MB, and a Lambda runs
for at most its timeout; the export of a busy tenant's quarter is neither. POST records the job
(the same filters as GET /v1/calls/export, in the query string) and hands it to a job worker
(functions/jobs, Celery on Redis). The worker evaluates the filters again with the same function,
writes the rows with the export's one row writer (functions/analytics/export.py) to the export
store (S3 deployed, a local folder otherwise) and marks the job ready. GET answers its state and,
once ready, a download link: a pre-signed S3 URL valid 15 minutes (asking again gives a fresh
one), or this API's /file route for a local file. Without Redis (the embedded mode) the API
process runs the job itself, in the background.

A worker that dies mid-export leaves a lease that expires; the sweep (beat) sends the job again,
at most :data:`MAX_ATTEMPTS` times. The sweep deletes a finished file after
``PARLEY_EXPORT_TTL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from functions.analytics.export import CSV, FORMATS, Progress, export_body
from functions.analytics.export_store import ExportWriter, export_root, open_writer
from functions.analytics.filters import CallFilter, call_filter
from functions.analytics.recording import PRESIGN_SECONDS, presigned
from functions.common.auth import Principal, require
from functions.common.config import FunctionSettings
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError
from functions.common.public_url import public_base_url
from functions.common.runtime import runtime
from functions.jobs.app import EXPORT_RUN, send
from shared.recordings import delete_recording, local_file

log = logging.getLogger("parley.exports")
router = APIRouter(tags=["exports"], responses=ERROR_RESPONSES)

MAX_IN_PROGRESS = 5  # per tenant: an export reads every matching call
MAX_ATTEMPTS = 3
PROGRESS_EVERY_S = 5.0  # how often a running job records its progress and renews its lease
ERROR_EXCERPT = 300
ExportId = Path(pattern=r"^exp_[0-9a-f]{32}$", description="An export's id.")
ExportStatus = Literal["pending", "running", "ready", "failed", "expired"]
_background: set[asyncio.Task[str]] = set()  # embedded mode: the jobs this process runs


class Export(BaseModel):
    export_id: str
    status: ExportStatus = Field(
        description="pending (waiting for a worker), running, ready (download it), failed "
        "(error says why) or expired (its file was deleted after PARLEY_EXPORT_TTL_S)."
    )
    format: Literal["csv", "jsonl"]
    filters: dict[str, Any] = Field(description="The call filters it runs, as given.")
    rows: int | None = Field(description="Calls written (so far, while running).")
    bytes: int | None = Field(description="Size of the file.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(description="When the file is deleted.")
    download_url: str | None = Field(
        description="Ready: where to download the file. In S3 a pre-signed URL valid "
        f"{PRESIGN_SECONDS // 60} minutes (GET the export again for a fresh one); on a local "
        "store this API's /v1/exports/{id}/file (send your API key)."
    )


_COLUMNS = (
    "export_id, format, filters, status, rows, bytes, error, created_at, started_at, "
    "finished_at, expires_at, location"
)


def _export(row: dict[str, Any], request: Request) -> Export:
    link = None
    if row["status"] == "ready" and row["location"]:
        if row["location"].startswith("s3://"):
            link = presigned(row["location"])
        else:
            link = f"{public_base_url(request)}/v1/exports/{quote(row['export_id'])}/file"
    return Export(**{k: v for k, v in row.items() if k != "location"}, download_url=link)


async def _dispatch(settings: FunctionSettings, export_id: str) -> None:
    if not settings.redis_url:
        # The embedded mode has no job workers: this process runs the job.
        task = asyncio.get_running_loop().create_task(run_export(export_id))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return
    try:
        await asyncio.to_thread(send, settings, EXPORT_RUN, export_id)
    except Exception as exc:  # the broker is away: the sweep sends the job later
        log.warning("export %s not handed to a worker yet: %s", export_id, exc)


@router.post(
    "/v1/exports",
    status_code=202,
    response_model=Export,
    summary="Start an export job of the calls the filters match (the query of GET "
    "/v1/calls/export); poll GET /v1/exports/{export_id} for its download link",
)
async def create_export(
    request: Request,
    response: Response,
    f: CallFilter = Depends(call_filter),
    principal: Principal = Depends(require("read")),
    format: Annotated[
        Literal["csv", "jsonl"], Query(description="CSV, or JSON lines (one call per line).")
    ] = "csv",
) -> Export:
    export_id = "exp_" + uuid.uuid4().hex
    async with db() as conn, conn.transaction():
        # One tenant's jobs at a time are counted under its lock, so the limit holds.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (principal.tenant_id,))
        open_jobs = await fetch_one(
            conn,
            "SELECT count(*) AS n FROM call_exports "
            "WHERE tenant_id = %s AND status IN ('pending', 'running')",
            (principal.tenant_id,),
        )
        if open_jobs is not None and open_jobs["n"] >= MAX_IN_PROGRESS:
            raise ApiError(
                409, f"a tenant has at most {MAX_IN_PROGRESS} exports in progress: wait for one"
            )
        row = await fetch_one(
            conn,
            "INSERT INTO call_exports (export_id, tenant_id, key_id, format, filters, base_url) "
            f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (
                export_id,
                principal.tenant_id,
                principal.key_id,
                format,
                Jsonb(f.arguments),
                public_base_url(request),
            ),
        )
        assert row is not None
    await _dispatch(runtime().settings, export_id)
    response.headers["Location"] = f"{public_base_url(request)}/v1/exports/{export_id}"
    return _export(row, request)


@router.get(
    "/v1/exports", response_model=list[Export], summary="The tenant's exports, newest first"
)
async def list_exports(
    request: Request,
    principal: Principal = Depends(require("read")),
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[Export]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {_COLUMNS} FROM call_exports WHERE tenant_id = %s "
            "ORDER BY created_at DESC, export_id DESC LIMIT %s",
            (principal.tenant_id, limit),
        )
    return [_export(r, request) for r in rows]


async def _one(tenant_id: str, export_id: str) -> dict[str, Any]:
    async with db() as conn:
        row = await fetch_one(
            conn,
            f"SELECT {_COLUMNS} FROM call_exports WHERE export_id = %s AND tenant_id = %s",
            (export_id, tenant_id),
        )
    if row is None:
        raise ApiError(404, f"no export '{export_id}'")
    return row


@router.get(
    "/v1/exports/{export_id}",
    response_model=Export,
    summary="One export: its state, and its download link once ready",
)
async def get_export(
    request: Request,
    export_id: str = ExportId,
    principal: Principal = Depends(require("read")),
) -> Export:
    return _export(await _one(principal.tenant_id, export_id), request)


@router.get(
    "/v1/exports/{export_id}/file",
    summary="A ready export's file (a file in S3 redirects to its pre-signed URL)",
    response_class=Response,
    responses={
        200: {"content": {CSV: {"schema": {"type": "string"}}}},
        307: {"description": "The file is in S3: its pre-signed URL is in Location."},
    },
)
async def get_export_file(
    export_id: str = ExportId, principal: Principal = Depends(require("read"))
) -> Response:
    row = await _one(principal.tenant_id, export_id)
    if row["status"] != "ready" or not row["location"]:
        raise ApiError(409, f"export '{export_id}' is {row['status']}, not ready")
    media = FORMATS[row["format"]]
    if row["location"].startswith("s3://"):
        return RedirectResponse(presigned(row["location"]) or "", status_code=307)
    settings = runtime().settings
    path = local_file(row["location"], export_root(settings.export_store, settings.data_dir))
    if path is None or not path.is_file():
        raise ApiError(404, f"export '{export_id}' has no file on this server")
    return FileResponse(
        path, media_type=f"{media}; charset=utf-8", filename=f"calls-{export_id}.{row['format']}"
    )


# --- the job (a worker runs it; the embedded mode runs it in the API process) ----------------


async def run_export(export_id: str) -> str:
    """Take the job (unless another worker holds it, or it is done), write its file, mark it
    ready. Returns what became of it."""
    settings = runtime().settings
    async with db() as conn:
        job = await fetch_one(
            conn,
            """UPDATE call_exports SET status = 'running', attempts = attempts + 1,
                   started_at = now(), leased_until = now() + make_interval(secs => %s),
                   rows = 0, bytes = 0
               WHERE export_id = %s AND attempts < %s AND (status = 'pending'
                   OR (status = 'running' AND leased_until < now()))
               RETURNING tenant_id, key_id, format, filters, base_url""",
            (settings.export_lease_s, export_id, MAX_ATTEMPTS),
        )
        await conn.commit()
    if job is None:
        return "taken"
    media = FORMATS[job["format"]]
    writer: ExportWriter | None = None
    progress = Progress()
    try:
        writer = open_writer(
            settings.export_store,
            settings.data_dir,
            f"{job['tenant_id']}/{export_id}.{job['format']}",
            f"{media}; charset=utf-8",
        )
        principal = Principal(job["tenant_id"], job["key_id"], frozenset({"read"}))
        f = await call_filter(principal, **job["filters"])
        reported = time.monotonic()
        async for chunk in export_body(f, job["base_url"], media, progress):
            await writer.write(chunk)
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                await _still_running(export_id, progress, settings.export_lease_s)
                reported = time.monotonic()
        location = await writer.close()
    except Exception as exc:
        if writer is not None:
            await writer.abort()
        log.exception("export %s failed", export_id)
        reason = exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
        async with db() as conn:
            await conn.execute(
                "UPDATE call_exports SET status = 'failed', error = %s, finished_at = now(), "
                "leased_until = NULL WHERE export_id = %s",
                (reason[:ERROR_EXCERPT], export_id),
            )
        return "failed"
    async with db() as conn:
        await conn.execute(
            """UPDATE call_exports SET status = 'ready', location = %s, rows = %s, bytes = %s,
                   finished_at = now(), leased_until = NULL,
                   expires_at = now() + make_interval(secs => %s)
               WHERE export_id = %s""",
            (location, progress.rows, progress.bytes, settings.export_ttl_s, export_id),
        )
    log.info("export %s ready: %d calls, %d bytes", export_id, progress.rows, progress.bytes)
    return "ready"


async def _still_running(export_id: str, progress: Progress, lease_s: float) -> None:
    """What the job wrote so far, and its lease renewed: a long export is not taken over while
    its worker is alive."""
    async with db() as conn:
        await conn.execute(
            "UPDATE call_exports SET rows = %s, bytes = %s, "
            "leased_until = now() + make_interval(secs => %s) "
            "WHERE export_id = %s AND status = 'running'",
            (progress.rows, progress.bytes, lease_s, export_id),
        )


async def sweep_exports(*, stale_after_s: float = 60.0) -> dict[str, int]:
    """Send again the jobs no worker took (the broker was away) or whose worker died; fail
    those out of attempts; delete the files past their time."""
    settings = runtime().settings
    async with db() as conn:
        lost = await fetch_all(
            conn,
            """SELECT export_id FROM call_exports WHERE attempts < %s AND (
                   (status = 'pending' AND created_at < now() - make_interval(secs => %s))
                   OR (status = 'running' AND leased_until < now()))""",
            (MAX_ATTEMPTS, stale_after_s),
        )
        await conn.execute(
            "UPDATE call_exports SET status = 'failed', finished_at = now(), "
            "error = 'its workers stopped before it was done, ' || attempts || ' times' "
            "WHERE attempts >= %s AND status = 'running' AND leased_until < now()",
            (MAX_ATTEMPTS,),
        )
        expired = await fetch_all(
            conn,
            "UPDATE call_exports SET status = 'expired' "
            "WHERE status = 'ready' AND expires_at < now() RETURNING location",
        )
    root = export_root(settings.export_store, settings.data_dir)
    for row in expired:
        if row["location"]:
            await asyncio.to_thread(delete_recording, row["location"], root)
    for row in lost:
        await _dispatch(settings, row["export_id"])
    return {"resent": len(lost), "expired": len(expired)}
