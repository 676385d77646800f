"""POST /v1/calls/{call_id}/transfer and POST /v1/calls/outbound."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from functions.common.auth import Principal, require
from functions.common.db import db, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError
from functions.common.public_url import public_base_url
from functions.common.runtime import runtime
from functions.transfer import service
from functions.voice import calls
from functions.webhooks import outcomes
from shared.agents.dispositions import ESCALATED

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

TARGET = r"^(\+[1-9][0-9]{6,14}|sips?:[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,200})$"
E164 = r"^\+[1-9][0-9]{6,14}$"


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(pattern=TARGET, description="E.164 number or SIP URI of the human.")


class TransferResult(BaseModel):
    call_id: str
    target: str
    status: str = "transferring"


class OutboundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    to: str = Field(pattern=E164, description="The number to call.")
    from_number: str | None = Field(
        None, pattern=E164, description="One of the tenant's numbers; default: the agent's first."
    )


class OutboundResult(BaseModel):
    call_id: str
    twilio_call_sid: str
    status: str


async def _twilio(func: object, *args: object, **kwargs: object) -> object:
    try:
        return await asyncio.to_thread(func, *args, **kwargs)  # type: ignore[arg-type]
    except service.TwilioNotConfigured as exc:
        raise ApiError(503, str(exc)) from None
    except service.TwilioFailed as exc:
        raise ApiError(502, str(exc)) from None


@router.post(
    "/v1/calls/{call_id}/transfer",
    response_model=TransferResult,
    summary="Transfer a live call to a human (Twilio <Dial>)",
)
async def transfer(
    body: TransferRequest,
    call_id: str = Path(min_length=1, max_length=128),
    principal: Principal = Depends(require("write")),
) -> TransferResult:
    async with db() as conn:
        call = await fetch_one(
            conn,
            "SELECT twilio_call_sid, status_rank, direction, from_number, to_number FROM calls "
            "WHERE call_id = %s AND tenant_id = %s",
            (call_id, principal.tenant_id),
        )
    if call is None:
        raise ApiError(404, f"no call '{call_id}'")
    if not call["twilio_call_sid"]:
        raise ApiError(409, "only Twilio calls can be transferred")
    if call["status_rank"] >= 3:
        raise ApiError(409, "the call has already ended")
    ours = call["from_number"] if call["direction"].startswith("outbound") else call["to_number"]
    await _twilio(
        service.transfer_call,
        runtime().settings,
        call["twilio_call_sid"],
        body.target,
        caller_id=ours or None,
    )
    async with db() as conn:
        await conn.execute(
            "UPDATE calls SET disposition = %s, end_reason = 'transfer', updated_at = now() "
            "WHERE call_id = %s",
            (ESCALATED, call_id),
        )
        initiated = outcomes.happened_now(
            principal.tenant_id,
            outcomes.TRANSFER_INITIATED,
            {"call_id": call_id, "target": body.target, "twilio_call_sid": call["twilio_call_sid"]},
            call_id=call_id,
        )
        await outcomes.record(conn, [initiated])
    return TransferResult(call_id=call_id, target=body.target)


@router.post(
    "/v1/calls/outbound",
    status_code=201,
    response_model=OutboundResult,
    summary="Place an outbound call answered by an agent",
)
async def outbound(
    body: OutboundRequest, request: Request, principal: Principal = Depends(require("write"))
) -> OutboundResult:
    async with db() as conn:
        route = await calls.agent_route(conn, principal.tenant_id, body.agent_id)
        if route is None:
            raise ApiError(404, f"no agent '{body.agent_id}'")
        if route.active_version is None:
            raise ApiError(409, f"agent '{body.agent_id}' has no active version")
        number = await fetch_one(
            conn,
            "SELECT number FROM phone_numbers WHERE tenant_id = %s AND agent_id = %s "
            "AND (%s::text IS NULL OR number = %s) ORDER BY number LIMIT 1",
            (principal.tenant_id, body.agent_id, body.from_number, body.from_number),
        )
    if number is None:
        which = body.from_number or "any number"
        raise ApiError(409, f"{which} is not routed to agent '{body.agent_id}'")
    base = public_base_url(request)
    placed = await _twilio(
        service.place_call,
        runtime().settings,
        to=body.to,
        from_number=number["number"],
        voice_url=f"{base}/twilio/voice",
        status_url=f"{base}/twilio/status",
    )
    assert isinstance(placed, service.PlacedCall)
    async with db() as conn:
        recorded = await calls.record_call(
            conn,
            calls.NewCall(
                call_sid=placed.call_sid,
                from_number=number["number"],
                to_number=body.to,
                direction="outbound-api",
                status=placed.status if placed.status in ("queued", "initiated") else "queued",
            ),
            route,
        )
    return OutboundResult(
        call_id=recorded.call_id, twilio_call_sid=placed.call_sid, status=placed.status
    )
