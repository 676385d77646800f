"""POST /v1/calls/{call_id}/transfer and POST /v1/calls/outbound."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from functions.common.auth import Principal, require
from functions.common.call_metadata import (
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE,
    MAX_VARIABLES,
    METADATA_KEY,
    check_metadata,
    check_variables,
)
from functions.common.db import db, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError
from functions.common.public_url import public_base_url
from functions.common.runtime import runtime
from functions.transfer import service
from functions.voice import calls
from functions.voice.routes import RESERVED_PARAMETERS
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
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description=f"Your own keys for the call (an order or CRM id): up to {MAX_METADATA_KEYS} "
        f"keys matching {METADATA_KEY}, values up to {MAX_METADATA_VALUE} characters. Stored "
        "with the call, shown in its detail, list and export, filterable with "
        "?metadata=KEY:VALUE. Never sent to the agent.",
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        description=f"Passed to the agent as {{{{ vars.NAME }}}}, like a campaign contact's: up "
        f"to {MAX_VARIABLES}, lower_snake_case names, values up to 500 characters; the names "
        f"that identify the call ({', '.join(sorted(RESERVED_PARAMETERS))}) are refused.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        return check_variables(value, RESERVED_PARAMETERS)


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
                metadata=body.metadata,
                variables=body.variables,
            ),
            route,
        )
        if recorded.known:
            # The voice webhook recorded the call first (it was answered very fast): what the
            # client attached is added to that row rather than lost.
            await calls.attach(conn, placed.call_sid, body.metadata, body.variables)
    return OutboundResult(
        call_id=recorded.call_id, twilio_call_sid=placed.call_sid, status=placed.status
    )
