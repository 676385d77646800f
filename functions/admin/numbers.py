"""Phone numbers: which agent answers a number (E.164, owned by one tenant)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response

from functions.admin.models import NumberAssign, NumberOut
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError

router = APIRouter(tags=["phone numbers"], responses=ERROR_RESPONSES)

NumberPath = Path(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+15559870000"])


@router.put(
    "/v1/phone-numbers/{number}",
    response_model=NumberOut,
    summary="Route a phone number to an agent",
)
async def assign_number(
    body: NumberAssign, number: str = NumberPath, principal: Principal = Depends(require("write"))
) -> NumberOut:
    async with db() as conn:
        agent = await fetch_one(
            conn,
            "SELECT 1 FROM agents WHERE tenant_id = %s AND agent_id = %s",
            (principal.tenant_id, body.agent_id),
        )
        if agent is None:
            raise ApiError(404, f"no agent '{body.agent_id}'")
        row = await fetch_one(
            conn,
            """INSERT INTO phone_numbers (number, tenant_id, agent_id) VALUES (%s, %s, %s)
               ON CONFLICT (number) DO UPDATE SET agent_id = EXCLUDED.agent_id
               WHERE phone_numbers.tenant_id = EXCLUDED.tenant_id
               RETURNING number, agent_id, created_at""",
            (number, principal.tenant_id, body.agent_id),
        )
    if row is None:
        raise ApiError(409, f"{number} belongs to another tenant")
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
    summary="Stop routing a number",
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
        raise ApiError(404, f"no number {number}")
    return Response(status_code=204)
