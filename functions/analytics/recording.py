"""Links to call recordings, and the route that plays a local one.

An S3 recording gets a short-lived pre-signed URL. A recording on this server's disk is served
by ``GET /v1/calls/{call_id}/recording`` (the caller's key, the call's tenant), so no link shows
where the file lies. Recordings are stereo (caller left, agent right); ``channels=mono`` mixes
the two legs for players and transcription services that want one channel.
"""

from __future__ import annotations

import asyncio
import io
import os
import wave
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
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
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # Signature version 4: S3 refuses older signatures on objects encrypted with KMS (the
    # deployed buckets are) and on buckets made since 2020; boto3 still presigns with version 2.
    return boto3.client("s3", region_name=region, config=Config(signature_version="s3v4"))


def presigned(stored: str) -> str | None:
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
        return presigned(stored)
    if stored.startswith("file://"):
        return f"{public_base_url(request)}/v1/calls/{quote(call_id, safe='')}/recording"
    return None


def mono(stereo_wav: bytes) -> bytes:
    """Both legs in one channel: their sum, scaled down only where it would clip."""
    try:
        with wave.open(io.BytesIO(stereo_wav), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ApiError(409, f"the recording is not a readable WAV file: {exc}") from exc
    if width != 2:
        raise ApiError(409, f"the recording has {width * 8}-bit samples; only 16-bit is mixed")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int32).reshape(-1, channels)
    mixed = samples.sum(axis=1)
    peak = int(np.abs(mixed).max(initial=0))
    if peak > 32767:
        mixed = mixed * 32767 // peak
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(mixed.astype("<i2").tobytes())
    return out.getvalue()


def _s3_object(stored: str) -> bytes:
    bucket, _, key = stored.removeprefix("s3://").partition("/")
    body: bytes = _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@router.get(
    "/v1/calls/{call_id}/recording",
    summary="A call's recording (WAV, stereo or mixed to mono); a stereo one in S3 redirects to "
    "a pre-signed URL",
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
        307: {"description": "The recording is in S3: its pre-signed URL is in Location."},
    },
)
async def get_recording(
    call_id: str = Path(min_length=1, max_length=128),
    channels: Literal["stereo", "mono"] = Query(
        "stereo",
        description="stereo: as recorded, caller left and agent right (an S3 recording "
        "redirects to its pre-signed URL); mono: both legs mixed into one channel (served "
        "by the API, also for S3).",
    ),
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
    if stored.startswith("s3://") and presigned(stored) is not None:
        if channels == "mono":
            body = await asyncio.to_thread(_s3_object, stored)
            return _wav(mono(body), call_id)
        return RedirectResponse(presigned(stored) or "", status_code=307)
    settings = runtime().settings
    path = local_file(stored, local_root(settings.recording_store, settings.data_dir))
    if path is None or not path.is_file():
        raise ApiError(404, f"call '{call_id}' has no recording on this server")
    if channels == "mono":
        return _wav(mono(path.read_bytes()), call_id)
    return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")


def _wav(body: bytes, call_id: str) -> Response:
    return Response(
        body,
        media_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="{call_id}-mono.wav"'},
    )
