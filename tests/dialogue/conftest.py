"""Fixtures for the dialogue tests: the shared embedder, the example agent, a real LLM server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.factory import AgentDialogueFactory
from media_nodes.dialogue.runtime import AgentRuntime
from shared.agents.loader import LoadedAgent, load_agent_file
from shared.knowledge.embedder import Embedder, get_embedder
from shared.knowledge.store import KnowledgeBase
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_AGENT = ROOT / "examples" / "agents" / "acme-shop"
DENTAL_AGENT = ROOT / "examples" / "agents" / "smile-dental"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(agents_dir=ROOT / "examples" / "agents", llm_base_url="")


@pytest.fixture(scope="session")
def acme() -> LoadedAgent:
    return load_agent_file(EXAMPLE_AGENT)


@pytest.fixture(scope="session")
def knowledge(embedder: Embedder) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase(":memory:", embedder=embedder)
    yield kb
    kb.close()


@pytest.fixture
async def factory(
    settings: Settings, knowledge: KnowledgeBase, embedder: Embedder
) -> AsyncIterator[AgentDialogueFactory]:
    made = AgentDialogueFactory(settings, knowledge=knowledge, embedder=embedder)
    yield made
    await made.aclose()


@pytest.fixture(scope="session")
def acme_runtime(
    settings: Settings, knowledge: KnowledgeBase, embedder: Embedder, acme: LoadedAgent
) -> AgentRuntime:
    """The example agent compiled once for the whole run (examples embedded, knowledge indexed).

    Tests that make HTTP calls swap in their own client with ``dataclasses.replace``.
    """
    factory = AgentDialogueFactory(
        settings, knowledge=knowledge, embedder=embedder, http=httpx.AsyncClient()
    )
    return factory._compile("tenant-a", acme)


@pytest.fixture(scope="session")
def dental_runtime(
    settings: Settings, knowledge: KnowledgeBase, embedder: Embedder
) -> AgentRuntime:
    """The second example agent (a dental practice's booking line), compiled once."""
    factory = AgentDialogueFactory(
        settings, knowledge=knowledge, embedder=embedder, http=httpx.AsyncClient()
    )
    return factory._compile("tenant-d", load_agent_file(DENTAL_AGENT))


@pytest.fixture
def new_session(acme_runtime: AgentRuntime):  # type: ignore[no-untyped-def]
    def make(**changes: object) -> AgentSession:
        from dataclasses import replace

        runtime = replace(acme_runtime, **changes) if changes else acme_runtime
        return AgentSession(runtime, call_id="call-test", variables={})

    return make
