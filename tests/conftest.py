"""Fixtures for the real servers started by ``scripts/services`` (PostgreSQL, Redis, Kafka).

Each test run gets its own database, Redis key prefix and Kafka topic prefix, so runs can share
the servers. A server that is down makes the tests that need it fail with its name — never skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

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
