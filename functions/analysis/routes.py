"""POST /v1/calls/{call_id}/analysis (re-run) and GET /v1/calls/{call_id}/analysis."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from functions.analysis import store
from functions.analytics.models import (
    AnalysisQueued,
    AnalysisRequest,
    CallAnalysis,
    CallAnalysisState,
)
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, ErrorResponse

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

CallId = Path(min_length=1, max_length=128)


@router.post(
    "/v1/calls/{call_id}/analysis",
    status_code=202,
    response_model=AnalysisQueued,
    responses={409: {"model": ErrorResponse, "description": "The call has not ended yet."}},
    summary="Analyse the call again: a job worker adds the next version (poll GET ...analysis)",
)
async def rerun_analysis(
    response: Response,
    call_id: str = CallId,
    principal: Principal = Depends(require("write")),
) -> AnalysisQueued:
    async with db() as conn:
        call = await fetch_one(
            conn,
            "SELECT ended_at, end_reason FROM calls WHERE call_id = %s AND tenant_id = %s",
            (call_id, principal.tenant_id),
        )
        if call is None:
            raise ApiError(404, f"no call '{call_id}'")
        if call["ended_at"] is None and call["end_reason"] is None:
            # Half a transcript would make an analysis the call's end does not replace.
            raise ApiError(409, f"call '{call_id}' has not ended: it is analysed once it ends")
        request_id = await store.request_rerun(conn, principal.tenant_id, call_id)
    if request_id is None:
        raise ApiError(404, f"no call '{call_id}'")
    response.headers["Location"] = f"/v1/calls/{call_id}/analysis"
    return AnalysisQueued(call_id=call_id, request_id=request_id)


@router.get(
    "/v1/calls/{call_id}/analysis",
    response_model=CallAnalysisState,
    summary="The call's latest analysis (or ?version=), its versions, and what is pending",
)
async def get_analysis(
    call_id: str = CallId,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    principal: Principal = Depends(require("read")),
) -> CallAnalysisState:
    tenant = principal.tenant_id
    async with db() as conn:
        call = await fetch_one(
            conn,
            "SELECT call_id FROM calls WHERE call_id = %s AND tenant_id = %s",
            (call_id, tenant),
        )
        if call is None:
            raise ApiError(404, f"no call '{call_id}'")
        known = await store.versions(conn, tenant, call_id)
        if version is not None and version not in known:
            raise ApiError(404, f"call '{call_id}' has no analysis version {version}")
        row = await store.latest(conn, tenant, call_id, version=version)
        request = await store.waiting(conn, tenant, call_id)
    if row is not None:
        status = "analyzed"
    elif request is None:
        status = "none"
    else:
        status = "pending" if request["done_at"] is None else "failed"
    return CallAnalysisState(
        call_id=call_id,
        status=status,
        analysis=CallAnalysis(**row) if row is not None else None,
        versions=known,
        request=AnalysisRequest(**{k: request[k] for k in AnalysisRequest.model_fields})
        if request is not None
        else None,
    )
