"""Phone numbers: which agent answers a number (E.164, held by one tenant).

Only a platform key gives a number to a tenant: the platform's Twilio account owns the numbers,
and nothing a tenant sends can prove a number is meant for it. A tenant then routes the numbers
it holds to its agents and can let them go. A tenant asking about a number it does not hold gets
the same 404 whether the number is free or another tenant's, so nothing about other tenants leaks.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Response
from psycopg import AsyncConnection

from functions.admin.models import NumberAssign, NumberOut
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError

router = APIRouter(tags=["phone numbers"], responses=ERROR_RESPONSES)

NumberPath = Path(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+15559870000"])
TenantPath = Path(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$")


async def _require_agent(conn: AsyncConnection[Any], tenant_id: str, agent_id: str) -> None:
    agent = await fetch_one(
        conn,
        "SELECT 1 FROM agents WHERE tenant_id = %s AND agent_id = %s",
        (tenant_id, agent_id),
    )
    if agent is None:
        raise ApiError(404, f"no agent '{agent_id}'")


def _not_held(number: str) -> ApiError:
    return ApiError(
        404, f"this tenant holds no number {number}; the platform operator assigns numbers"
    )


@router.put(
    "/v1/tenants/{tenant_id}/phone-numbers/{number}",
    response_model=NumberOut,
    summary="Give a phone number to a tenant, routed to one of its agents (platform scope)",
)
async def give_number(
    body: NumberAssign,
    tenant_id: str = TenantPath,
    number: str = NumberPath,
    _: Principal = Depends(require("platform")),
) -> NumberOut:
    async with db() as conn:
        await _require_agent(conn, tenant_id, body.agent_id)
        row = await fetch_one(
            conn,
            """INSERT INTO phone_numbers (number, tenant_id, agent_id) VALUES (%s, %s, %s)
               ON CONFLICT (number) DO UPDATE SET agent_id = EXCLUDED.agent_id
               WHERE phone_numbers.tenant_id = EXCLUDED.tenant_id
               RETURNING number, agent_id, created_at""",
            (number, tenant_id, body.agent_id),
        )
    if row is None:
        raise ApiError(409, f"{number} is held by another tenant: it must release it first")
    return NumberOut(**row)


@router.put(
    "/v1/phone-numbers/{number}",
    response_model=NumberOut,
    summary="Route one of the tenant's numbers to an agent",
)
async def route_number(
    body: NumberAssign, number: str = NumberPath, principal: Principal = Depends(require("write"))
) -> NumberOut:
    async with db() as conn:
        await _require_agent(conn, principal.tenant_id, body.agent_id)
        row = await fetch_one(
            conn,
            "UPDATE phone_numbers SET agent_id = %s WHERE number = %s AND tenant_id = %s "
            "RETURNING number, agent_id, created_at",
            (body.agent_id, number, principal.tenant_id),
        )
    if row is None:
        raise _not_held(number)
    return NumberOut(**row)


@router.get("/v1/phone-numbers", response_model=list[NumberOut], summary="The tenant's numbers")
async def list_numbers(principal: Principal = Depends(require("read"))) -> list[NumberOut]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            "SELECT number, agent_id, created_at FROM phone_numbers WHERE tenant_id = %s "
            "ORDER BY number",
            (principal.tenant_id,),
        )
    return [NumberOut(**r) for r in rows]


@router.delete(
    "/v1/phone-numbers/{number}",
    status_code=204,
    response_class=Response,
    summary="Let a number go (it stops routing; the platform can give it to another tenant)",
)
async def release_number(
    number: str = NumberPath, principal: Principal = Depends(require("write"))
) -> Response:
    async with db() as conn:
        cursor = await conn.execute(
            "DELETE FROM phone_numbers WHERE number = %s AND tenant_id = %s",
            (number, principal.tenant_id),
        )
    if cursor.rowcount == 0:
        raise _not_held(number)
    return Response(status_code=204)
