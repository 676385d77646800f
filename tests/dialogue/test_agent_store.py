"""Agent definitions stored per tenant in PostgreSQL and served by the factory."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from media_nodes.dialogue.factory import AgentDialogueFactory, AgentUnavailable
from media_nodes.dialogue.protocol import AgentText, UserTurn
from shared.agents.loader import AgentDefinitionError, LoadedAgent, inline_knowledge
from shared.agents.store import (
    AgentActivation,
    AgentNotFound,
    activate_agent_version,
    agent_activations,
    load_agent_version,
    save_agent_version,
)
from shared.settings import Settings


async def test_versions_round_trip_and_activate(
    db_pool: Any, acme: LoadedAgent, settings: Settings, knowledge: Any, embedder: Any
) -> None:
    tenant = "tenant-store"
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (tenant, "Store test"),
        )
        with pytest.raises(AgentDefinitionError, match="inline the text"):
            await save_agent_version(conn, tenant, acme.definition)
        stored = inline_knowledge(acme)
        first = await save_agent_version(conn, tenant, stored)
        renamed = stored.model_copy(update={"greeting": "Version two speaking."})
        second = await save_agent_version(conn, tenant, renamed)
        assert (first, second) == (1, 2)
        active = await load_agent_version(conn, tenant, "acme-shop")
        assert active.version == 2 and active.definition.greeting == "Version two speaking."
        old = await load_agent_version(conn, tenant, "acme-shop", 1)
        assert old.definition == stored
        assert [k.text for k in old.knowledge] == [k.text for k in acme.knowledge]
        with pytest.raises(AgentNotFound):
            await load_agent_version(conn, "someone-else", "acme-shop")
        await conn.execute(
            "INSERT INTO agent_versions (tenant_id, agent_id, version, definition) "
            'VALUES (%s, \'acme-shop\', 3, \'{"id": "acme-shop", "states": 7}\')',
            (tenant,),
        )
        with pytest.raises(AgentDefinitionError, match="states"):
            await load_agent_version(conn, tenant, "acme-shop", 3)

    # The admin API indexes a stored agent's documents when they are uploaded; the media
    # node only searches them.
    from shared.knowledge.store import Document

    knowledge.replace_documents(
        tenant, "acme-shop", [Document(k.doc_id, k.title, k.text) for k in acme.knowledge]
    )
    prod = settings.model_copy(update={"env": "production"})
    factory = AgentDialogueFactory(prod, pool=db_pool, knowledge=knowledge, embedder=embedder)
    try:
        session = await factory.new_session(
            tenant_id=tenant, agent_id="acme-shop", call_id="c", variables={}
        )
        greeting = [item async for item in session.greeting()]
        assert greeting[0].text == "Version two speaking."  # type: ignore[union-attr]
        billing = UserTurn("I have a question about my bill")
        out = [i async for i in session.handle(billing, turn_index=1)]
        refund = UserTurn("how long does a refund take")
        out = [i async for i in session.handle(refund, turn_index=2)]
        assert "five to seven business days" in "".join(
            o.text for o in out if isinstance(o, AgentText)
        )
        with pytest.raises(AgentUnavailable):
            await factory.new_session(
                tenant_id="nobody", agent_id="acme-shop", call_id="c", variables={}
            )
    finally:
        await factory.aclose()


async def test_an_activation_is_announced_to_listeners_when_it_commits(
    database_url: str, db_pool: Any, acme: LoadedAgent
) -> None:
    tenant = "tenant-announce"
    listening = asyncio.Event()
    heard: asyncio.Queue[AgentActivation] = asyncio.Queue()

    async def listen() -> None:
        async for activation in agent_activations(database_url, listening=listening):
            await heard.put(activation)

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(listening.wait(), 10)
        stored = inline_knowledge(acme)
        async with db_pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tenants (tenant_id, name) VALUES (%s, 'Announce') "
                "ON CONFLICT DO NOTHING",
                (tenant,),
            )
            first = await save_agent_version(conn, tenant, stored)
            second = await save_agent_version(conn, tenant, stored, activate=False)
        assert await asyncio.wait_for(heard.get(), 10) == AgentActivation(
            tenant, "acme-shop", first
        )
        async with db_pool.connection() as conn:  # an activation that rolls back says nothing
            with contextlib.suppress(RuntimeError):
                async with conn.transaction():
                    assert await activate_agent_version(conn, tenant, "acme-shop", second)
                    raise RuntimeError("roll back")
            assert not await activate_agent_version(conn, tenant, "acme-shop", 99)
            assert await activate_agent_version(conn, tenant, "acme-shop", second)
        assert await asyncio.wait_for(heard.get(), 10) == AgentActivation(
            tenant, "acme-shop", second
        )
        assert heard.empty()
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
