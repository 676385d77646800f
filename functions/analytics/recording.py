"""Links to call recordings, and the route that plays a local one.

An S3 recording gets a short-lived pre-signed URL. A recording on this server's disk is served
by ``GET /v1/calls/{call_id}/recording`` (the caller's key, the call's tenant), so no link shows
where the file lies.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from functions.common.auth import Principal, require
from functions.common.db import db, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError
from functions.common.public_url import public_base_url
from functions.common.runtime import runtime
from shared.recordings import local_file, local_root

PRESIGN_SECONDS = 900

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)


@lru_cache(maxsize=1)
def _s3() -> Any:
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region)


def _presigned(stored: str) -> str | None:
    bucket, _, key = stored.removeprefix("s3://").partition("/")
    if not bucket or not key:
        return None
    link: str = _s3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
    )
    return link


def recording_link(request: Request, call_id: str, stored: str | None) -> str | None:
    """``s3://bucket/key`` -> a pre-signed HTTPS URL; a local file -> this API's recording route;
    anything else -> None."""
    if not stored:
        return None
    if stored.startswith("s3://"):
        return _presigned(stored)
    if stored.startswith("file://"):
        return f"{public_base_url(request)}/v1/calls/{quote(call_id, safe='')}/recording"
    return None


@router.get(
    "/v1/calls/{call_id}/recording",
    summary="A call's recording (WAV); a recording in S3 redirects to a pre-signed URL",
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
        307: {"description": "The recording is in S3: its pre-signed URL is in Location."},
    },
)
async def get_recording(
    call_id: str = Path(min_length=1, max_length=128),
    principal: Principal = Depends(require("read")),
) -> Response:
    async with db() as conn:
        row = await fetch_one(
            conn,
            "SELECT recording_url FROM calls WHERE call_id = %s AND tenant_id = %s",
            (call_id, principal.tenant_id),
        )
    if row is None:
        raise ApiError(404, f"no call '{call_id}'")
    stored = row["recording_url"] or ""
    if stored.startswith("s3://"):
        link = _presigned(stored)
        if link is not None:
            return RedirectResponse(link, status_code=307)
    settings = runtime().settings
    path = local_file(stored, local_root(settings.recording_store, settings.data_dir))
    if path is None or not path.is_file():
        raise ApiError(404, f"call '{call_id}' has no recording on this server")
    return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")
