"""Agent definitions stored per tenant in PostgreSQL (tables ``agents`` and ``agent_versions``).

A definition is saved as a new immutable version; ``agents.active_version`` says which one calls
use. Definitions from the database carry their knowledge documents inline.

Activating a version also sends a PostgreSQL notification on :data:`ACTIVATION_CHANNEL`, so media
nodes can compile the agent before its first call (see :func:`agent_activations`). The
notification is transactional: it is delivered when the activation commits, never for one that
rolls back, and it reaches every node on the database whichever process activated the version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.agents.loader import (
    AgentDefinitionError,
    LoadedAgent,
    LocatedProblem,
    parse_agent,
    read_knowledge,
)
from shared.agents.models import AgentDefinition
from shared.db.pool import connect

log = logging.getLogger(__name__)

ACTIVATION_CHANNEL = "parley_agent_activated"


class AgentNotFound(LookupError):
    """No active version of the agent exists for the tenant."""


@dataclass(frozen=True)
class AgentActivation:
    """A version of a tenant's agent became the one calls use."""

    tenant_id: str
    agent_id: str
    version: int


async def activate_agent_version(
    conn: AsyncConnection[Any], tenant_id: str, agent_id: str, version: int
) -> bool:
    """Make a stored version the active one and notify the media nodes (on commit); False when
    the agent has no such version."""
    cursor = await conn.execute(
        """UPDATE agents SET active_version = %s, updated_at = now()
           WHERE tenant_id = %s AND agent_id = %s AND EXISTS (
               SELECT 1 FROM agent_versions v WHERE v.tenant_id = %s AND v.agent_id = %s
               AND v.version = %s)""",
        (version, tenant_id, agent_id, tenant_id, agent_id, version),
    )
    if cursor.rowcount == 0:
        return False
    payload = {"tenant_id": tenant_id, "agent_id": agent_id, "version": version}
    await conn.execute("SELECT pg_notify(%s, %s)", (ACTIVATION_CHANNEL, json.dumps(payload)))
    return True


async def agent_activations(
    database_url: str, *, listening: asyncio.Event | None = None, retry_s: float = 5.0
) -> AsyncIterator[AgentActivation]:
    """Every activation committed from now on, as it commits (LISTEN on a connection of its own);
    ``listening`` is set once the first LISTEN is in place.

    While the database is unreachable it retries every ``retry_s``; activations committed in the
    meantime are missed (their agents are then compiled on their first call instead).
    """
    while True:
        try:
            conn = await connect(database_url, autocommit=True)
        except Exception as exc:
            log.warning("cannot listen for agent activations: %s; retrying", exc)
            await asyncio.sleep(retry_s)
            continue
        try:
            await conn.execute(f"LISTEN {ACTIVATION_CHANNEL}")
            if listening is not None:
                listening.set()
            async for notice in conn.notifies():
                try:
                    data = json.loads(notice.payload)
                    yield AgentActivation(
                        str(data["tenant_id"]), str(data["agent_id"]), int(data["version"])
                    )
                except (ValueError, KeyError, TypeError):
                    log.warning("ignored a malformed activation notice: %.200r", notice.payload)
        except psycopg.Error as exc:
            log.warning("agent activation listener lost its connection: %s; retrying", exc)
            await asyncio.sleep(retry_s)
        finally:
            await conn.close()


async def save_agent_version(
    conn: AsyncConnection[Any],
    tenant_id: str,
    definition: AgentDefinition,
    *,
    activate: bool = True,
) -> int:
    """Store ``definition`` as the agent's next version (and make it active); return the version.

    Knowledge documents must be inline (see :func:`shared.agents.loader.inline_knowledge`).
    """
    paths = [i for i, d in enumerate(definition.knowledge.documents) if d.path is not None]
    if paths:
        raise AgentDefinitionError(
            [
                LocatedProblem(
                    definition.id, None, f"knowledge.documents.{i}", "inline the text to store it"
                )
                for i in paths
            ]
        )
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO agents (tenant_id, agent_id, name) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant_id, agent_id) DO UPDATE SET name = EXCLUDED.name",
            (tenant_id, definition.id, definition.name),
        )
        # Lock the agent's row so concurrent uploads get distinct version numbers.
        await conn.execute(
            "SELECT 1 FROM agents WHERE tenant_id = %s AND agent_id = %s FOR UPDATE",
            (tenant_id, definition.id),
        )
        cursor = await conn.execute(
            "INSERT INTO agent_versions (tenant_id, agent_id, version, definition) "
            "SELECT %s, %s, COALESCE(MAX(version), 0) + 1, %s FROM agent_versions "
            "WHERE tenant_id = %s AND agent_id = %s RETURNING version",
            (
                tenant_id,
                definition.id,
                Jsonb(definition.model_dump(mode="json", exclude_defaults=True)),
                tenant_id,
                definition.id,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None
        version = int(row["version"] if isinstance(row, dict) else row[0])
        if activate:
            await activate_agent_version(conn, tenant_id, definition.id, version)
    return version


async def load_agent_version(
    conn: AsyncConnection[Any], tenant_id: str, agent_id: str, version: int | None = None
) -> LoadedAgent:
    """The active (or the given) version of an agent; :class:`AgentNotFound` when there is none."""
    if version is None:
        cursor = await conn.execute(
            "SELECT v.version, v.definition FROM agents a JOIN agent_versions v "
            "ON v.tenant_id = a.tenant_id AND v.agent_id = a.agent_id "
            "AND v.version = a.active_version WHERE a.tenant_id = %s AND a.agent_id = %s",
            (tenant_id, agent_id),
        )
    else:
        cursor = await conn.execute(
            "SELECT version, definition FROM agent_versions "
            "WHERE tenant_id = %s AND agent_id = %s AND version = %s",
            (tenant_id, agent_id, version),
        )
    row = await cursor.fetchone()
    if row is None:
        which = f"version {version}" if version else "an active version"
        raise AgentNotFound(f"agent '{agent_id}' of tenant '{tenant_id}' has no {which}")
    found_version, data = (row["version"], row["definition"]) if isinstance(row, dict) else row
    source = f"db:{tenant_id}/{agent_id}@{found_version}"
    definition = parse_agent(data, source=source)
    knowledge = read_knowledge(definition, base_dir=None, source=source)
    return LoadedAgent(definition, source, int(found_version), knowledge)
