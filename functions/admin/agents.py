"""Agents: upload (validated, versioned), validate, list, activate, roll back, recording."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from psycopg import AsyncConnection

from functions.admin.indexing import reindex_agent
from functions.admin.models import (
    Activate,
    AgentDetail,
    AgentOut,
    AgentUpload,
    AgentVersionOut,
    AgentVersionRef,
    Problem,
    RecordingSetting,
    ValidationResult,
)
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, ErrorDetail
from shared.agents import AgentDefinition, AgentDefinitionError, load_agent_text, parse_agent
from shared.agents.store import activate_agent_version, save_agent_version

router = APIRouter(tags=["agents"], responses=ERROR_RESPONSES)

AgentIdPath = Path(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)

_AGENT_SELECT = """
    SELECT a.agent_id, a.name, a.active_version, a.recording, a.updated_at,
           (SELECT max(v.version) FROM agent_versions v
             WHERE v.tenant_id = a.tenant_id AND v.agent_id = a.agent_id) AS latest_version
    FROM agents a WHERE a.tenant_id = %s"""


def _problems(exc: AgentDefinitionError) -> list[Problem]:
    return [Problem(field=p.field, line=p.line, message=p.message) for p in exc.problems]


def _parse(body: AgentUpload) -> AgentDefinition:
    if body.yaml is not None:
        return load_agent_text(body.yaml, source="upload")
    return parse_agent(body.definition, source="upload")


async def _agent(conn: AsyncConnection[Any], tenant_id: str, agent_id: str) -> AgentOut:
    row = await fetch_one(conn, _AGENT_SELECT + " AND a.agent_id = %s", (tenant_id, agent_id))
    if row is None:
        raise ApiError(404, f"no agent '{agent_id}'")
    return AgentOut(**row)


@router.post(
    "/v1/agents/validate",
    response_model=ValidationResult,
    summary="Validate an agent definition without storing it",
)
async def validate_agent(
    body: AgentUpload, _: Principal = Depends(require("write"))
) -> ValidationResult:
    try:
        definition = _parse(body)
    except AgentDefinitionError as exc:
        return ValidationResult(valid=False, problems=_problems(exc))
    return ValidationResult(valid=True, agent_id=definition.id)


@router.post(
    "/v1/agents",
    status_code=201,
    response_model=AgentVersionOut,
    summary="Upload an agent definition as the agent's next version",
)
async def upload_agent(
    body: AgentUpload, principal: Principal = Depends(require("write"))
) -> AgentVersionOut:
    try:
        definition = _parse(body)
    except AgentDefinitionError as exc:
        problems = _problems(exc)
        raise ApiError(
            422,
            f"invalid agent definition ({len(problems)} problem(s))",
            code="invalid_agent",
            details=[ErrorDetail(field=p.field, message=p.message) for p in problems],
        ) from None
    async with db() as conn:
        version = await save_agent_version(
            conn, principal.tenant_id, definition, activate=body.activate
        )
        if body.activate:  # the definition's own documents become searchable with it
            await reindex_agent(conn, principal.tenant_id, definition.id)
        return await _version(conn, principal.tenant_id, definition.id, version)


async def _version(
    conn: AsyncConnection[Any], tenant_id: str, agent_id: str, version: int
) -> AgentVersionOut:
    row = await fetch_one(
        conn,
        """SELECT v.agent_id, v.version, v.definition, v.created_at,
                  (a.active_version = v.version) AS active
           FROM agent_versions v JOIN agents a USING (tenant_id, agent_id)
           WHERE v.tenant_id = %s AND v.agent_id = %s AND v.version = %s""",
        (tenant_id, agent_id, version),
    )
    if row is None:
        raise ApiError(404, f"agent '{agent_id}' has no version {version}")
    return AgentVersionOut(**{**row, "active": bool(row["active"])})


@router.get("/v1/agents", response_model=list[AgentOut], summary="The tenant's agents")
async def list_agents(principal: Principal = Depends(require("read"))) -> list[AgentOut]:
    async with db() as conn:
        rows = await fetch_all(conn, _AGENT_SELECT + " ORDER BY a.agent_id", (principal.tenant_id,))
    return [AgentOut(**r) for r in rows]


@router.get(
    "/v1/agents/{agent_id}", response_model=AgentDetail, summary="An agent and its versions"
)
async def get_agent(
    agent_id: str = AgentIdPath, principal: Principal = Depends(require("read"))
) -> AgentDetail:
    async with db() as conn:
        agent = await _agent(conn, principal.tenant_id, agent_id)
        versions = await fetch_all(
            conn,
            "SELECT version, created_at FROM agent_versions WHERE tenant_id = %s AND agent_id = %s "
            "ORDER BY version",
            (principal.tenant_id, agent_id),
        )
    return AgentDetail(**agent.model_dump(), versions=[AgentVersionRef(**v) for v in versions])


@router.get(
    "/v1/agents/{agent_id}/versions/{version}",
    response_model=AgentVersionOut,
    summary="One stored version of an agent definition",
)
async def get_agent_version(
    agent_id: str = AgentIdPath,
    version: int = Path(ge=1, le=1_000_000),
    principal: Principal = Depends(require("read")),
) -> AgentVersionOut:
    async with db() as conn:
        return await _version(conn, principal.tenant_id, agent_id, version)


async def _activate(
    conn: AsyncConnection[Any], tenant_id: str, agent_id: str, version: int
) -> None:
    if not await activate_agent_version(conn, tenant_id, agent_id, version):
        await _agent(conn, tenant_id, agent_id)  # 404 for an unknown agent
        raise ApiError(404, f"agent '{agent_id}' has no version {version}")
    await reindex_agent(conn, tenant_id, agent_id)


@router.post(
    "/v1/agents/{agent_id}/activate",
    response_model=AgentOut,
    summary="Make a stored version the one new calls use",
)
async def activate_agent(
    body: Activate, agent_id: str = AgentIdPath, principal: Principal = Depends(require("write"))
) -> AgentOut:
    async with db() as conn:
        await _activate(conn, principal.tenant_id, agent_id, body.version)
        return await _agent(conn, principal.tenant_id, agent_id)


@router.post(
    "/v1/agents/{agent_id}/rollback",
    response_model=AgentOut,
    summary="Activate the version before the active one",
)
async def rollback_agent(
    agent_id: str = AgentIdPath, principal: Principal = Depends(require("write"))
) -> AgentOut:
    async with db() as conn:
        agent = await _agent(conn, principal.tenant_id, agent_id)
        row = await fetch_one(
            conn,
            "SELECT max(version) AS version FROM agent_versions "
            "WHERE tenant_id = %s AND agent_id = %s AND version < %s",
            (principal.tenant_id, agent_id, agent.active_version or 0),
        )
        if row is None or row["version"] is None:
            raise ApiError(409, f"agent '{agent_id}' has no version before the active one")
        await _activate(conn, principal.tenant_id, agent_id, int(row["version"]))
        return await _agent(conn, principal.tenant_id, agent_id)


@router.put(
    "/v1/agents/{agent_id}/recording",
    response_model=AgentOut,
    summary="Turn call recording on or off for an agent",
)
async def set_recording(
    body: RecordingSetting,
    agent_id: str = AgentIdPath,
    principal: Principal = Depends(require("write")),
) -> AgentOut:
    async with db() as conn:
        await conn.execute(
            "UPDATE agents SET recording = %s, updated_at = now() "
            "WHERE tenant_id = %s AND agent_id = %s",
            (body.enabled, principal.tenant_id, agent_id),
        )
        return await _agent(conn, principal.tenant_id, agent_id)
