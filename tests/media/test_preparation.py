"""A node makes agents ready before their calls: an activated version is compiled when its
activation commits (whoever commits it), and the slot parsers are loaded at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from media_nodes.dialogue.factory import AgentDialogueFactory
from media_nodes.simulator.caller import SimulatedCaller
from shared.agents.loader import inline_knowledge, load_agent_file
from shared.agents.store import save_agent_version
from shared.db import connect, create_pool
from shared.events.models import TurnAgent
from shared.settings import load_settings
from tests.media.conftest import ROOT, NodeFactory, clip

pytestmark = pytest.mark.integration


async def _upload(database_url: str, tenant: str, greeting: str) -> int:
    """What the admin API does on an upload with activate: its own connection and transaction."""
    agent = inline_knowledge(load_agent_file(ROOT / "examples" / "agents" / "acme-shop"))
    conn = await connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES (%s, 'Preparation') "
            "ON CONFLICT DO NOTHING",
            (tenant,),
        )
        version = await save_agent_version(
            conn, tenant, agent.model_copy(update={"greeting": greeting}), activate=True
        )
        await conn.commit()
    finally:
        await conn.close()
    return version


async def test_an_activated_version_is_compiled_before_its_first_call(
    start_node: NodeFactory, database_url: str, tmp_path: Path
) -> None:
    tenant = f"prep-{uuid.uuid4().hex[:8]}"
    settings = load_settings(database_url=database_url, data_dir=tmp_path / "data")
    pool = await create_pool(database_url, max_size=2)
    factory = AgentDialogueFactory(settings, pool=pool)
    key = (tenant, "acme-shop")
    try:
        async with start_node(project=True, dialogue=factory) as running:
            agents: Any = running.app.state.agents
            for version, greeting in ((1, "Version one speaking."), (2, "Version two here.")):
                assert await _upload(database_url, tenant, greeting) == version
                assert await agents.wait_prepared(tenant, "acme-shop", version, 60), (
                    f"the node never prepared version {version}"
                )
                assert factory.compilations[key] == version  # once per version, on activation

                call_id = f"call-{uuid.uuid4().hex[:12]}"
                caller = SimulatedCaller(
                    running.url,
                    parameters={"tenant_id": tenant, "agent_id": "acme-shop", "call_id": call_id},
                )
                result = await caller.run([clip("goodbye")])
                assert result.greeting_ms is not None
                events = await running.wait_call_ended(call_id)
                spoken = [e.payload.text for e in events if isinstance(e.payload, TurnAgent)]
                assert spoken and spoken[0] == greeting
                assert factory.compilations[key] == version, "the call compiled the agent"
    finally:
        await pool.close()


WARM_PROBE = """
import json, sys
from starlette.testclient import TestClient
from media_nodes.app import create_app
from media_nodes.dialogue.factory import AgentDialogueFactory
from media_nodes.dialogue.nlu.slots import parse_slot
from shared.agents.models import Slot
from shared.bus import InProcessBus
from shared.settings import load_settings

settings = load_settings(data_dir=sys.argv[1])
app = create_app(
    settings, dialogue=AgentDialogueFactory(settings), bus=InProcessBus("warm"), project=False
)
with TestClient(app):
    loaded = set(sys.modules)
    said = {"date": "next friday", "time": "at a quarter to five", "phone": "415 555 0100"}
    parsed = {
        t: str(parse_slot(Slot(name="s", type=t, prompt="-"), text)) for t, text in said.items()
    }
    print(json.dumps({
        "imported_by_first_parses": sorted(set(sys.modules) - loaded),
        "parsed": parsed,
    }))
"""


def test_slot_parsers_are_loaded_when_the_node_starts(tmp_path: Path) -> None:
    """In a fresh process: once the node has started, a first date, time or phone number parse
    loads nothing more (a lazily imported date parser once cost the first caller a second)."""
    proc = subprocess.run(
        [sys.executable, "-c", WARM_PROBE, str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(value.startswith("Parsed(") for value in report["parsed"].values()), report
    assert report["imported_by_first_parses"] == []
