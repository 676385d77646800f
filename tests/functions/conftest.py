"""Fixtures for the Lambda functions: a configured runtime on the real PostgreSQL and Redis,
Lambda invocations with the API Gateway sample events, tenants with API keys, and an HTTP fake of
Twilio's REST API that records every request."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import psycopg
import pytest
from psycopg.rows import dict_row

from functions.common import runtime as runtime_module
from functions.common.auth import generate_key, hash_key
from functions.common.config import FunctionSettings
from functions.samples import SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN, load_sample, twilio_event
from shared.cache import NodeInfo, NodeRegistry
from shared.cache.redis import RedisCache


@dataclass
class LambdaContext:
    function_name: str = "parley-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:parley-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    raw: bytes = b""  # the body's bytes, as sent (audio is not text)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Tenant:
    tenant_id: str
    key: str
    key_id: str

    @property
    def auth(self) -> str:
        return f"Bearer {self.key}"


_LOOP: list[asyncio.AbstractEventLoop] = []


def invoke(handler: Any, event: dict[str, Any]) -> Reply:
    """Invoke a Lambda handler exactly as AWS would (event dict + context)."""
    if _LOOP:  # the one loop of this test session, whatever ran in between (asyncio.run, ...)
        asyncio.set_event_loop(_LOOP[0])
    result = handler(event, LambdaContext())
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    text = raw.decode(errors="replace")
    headers = {k.lower(): v for k, v in result["headers"].items()}
    return Reply(result["statusCode"], headers, text, raw)


def api_event(
    sample: str,
    tenant: Tenant | None,
    *,
    path: str | None = None,
    query: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    stage: str | None = None,
) -> dict[str, Any]:
    """A sample event with the caller's key and, optionally, another path, query or body."""
    event = copy.deepcopy(load_sample(sample))
    event["headers"].pop("authorization", None)
    if tenant is not None:
        event["headers"]["authorization"] = tenant.auth
    if stage is not None:
        event["requestContext"]["stage"] = stage
    raw_path = path or event["requestContext"]["http"]["path"]
    if stage and stage != "$default":
        raw_path = f"/{stage}{raw_path}"
    if path is not None or stage is not None:
        event["rawPath"] = raw_path
        event["requestContext"]["http"]["path"] = raw_path
    if query is not None:
        event["rawQueryString"] = urlencode(query)
        event["queryStringParameters"] = dict(query) if query else None
        if not query:
            event.pop("queryStringParameters")
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        event["headers"].setdefault("content-type", "application/json")
    event["headers"].update(headers or {})
    return event


def api_request(handler: Any, method: str, path: str, tenant: Tenant, **query: Any) -> Reply:
    """An API request to ``handler`` through its Lambda event; a list value repeats its key."""
    event = api_event("analytics.get-v1-calls.json", tenant, path=path)
    pairs = [
        (k, v)
        for k, values in query.items()
        for v in (values if isinstance(values, list) else [values])
    ]
    event["rawQueryString"] = urlencode(pairs)
    event["queryStringParameters"] = {k: v for k, v in pairs} or None
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    return invoke(handler, event)


def call_sid() -> str:
    return "CA" + uuid.uuid4().hex


def phone() -> str:
    return "+1555" + "".join(random.choices("0123456789", k=7))


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The one loop the handlers run on (Mangum uses the thread's current loop)."""
    loop = asyncio.new_event_loop()
    _LOOP.append(loop)
    yield loop
    _LOOP.clear()
    loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Any:
    def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)

    return run_coroutine


@pytest.fixture
def settings(
    database_url: str, redis_url: str, tmp_path: Any, monkeypatch: Any
) -> FunctionSettings:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ParleyTest")
    return FunctionSettings(
        env="test",
        database_url=database_url,
        database_pool_max=4,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        twilio_auth_token=SAMPLE_AUTH_TOKEN,
        twilio_account_sid=SAMPLE_ACCOUNT_SID,
        twilio_api_base="http://127.0.0.1:9",  # nothing listens: a test that needs Twilio fakes it
        session_token_secret="test-session-secret",
    )


@pytest.fixture
def rt(
    settings: FunctionSettings, redis_prefix: str, loop: asyncio.AbstractEventLoop, run: Any
) -> Iterator[runtime_module.Runtime]:
    asyncio.set_event_loop(loop)
    runtime = runtime_module.configure(settings, cache_prefix=redis_prefix)
    yield runtime
    run(runtime.close())
    runtime_module.configure()


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def make_tenant(
    conn: psycopg.Connection[Any], scopes: list[str] | None = None, tenant_id: str | None = None
) -> Tenant:
    tenant_id = tenant_id or f"t-{uuid.uuid4().hex[:10]}"
    conn.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (tenant_id, tenant_id),
    )
    return add_key(conn, tenant_id, scopes or ["admin"])


def add_key(conn: psycopg.Connection[Any], tenant_id: str, scopes: list[str]) -> Tenant:
    key = generate_key()
    conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, key_hash, scopes) VALUES (%s, %s, %s, %s)",
        (key.key_id, tenant_id, hash_key(key.secret), scopes),
    )
    return Tenant(tenant_id, key.secret, key.key_id)


def make_agent(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    agent_id: str = "acme-shop",
    *,
    number: str | None = None,
) -> str | None:
    """An agent with an active version 1, and optionally a number routed to it."""
    definition = json.loads(load_sample("admin.post-v1-agents.json")["body"])["definition"]
    definition["id"] = agent_id
    conn.execute(
        "INSERT INTO agents (tenant_id, agent_id, name, active_version) VALUES (%s, %s, %s, 1)",
        (tenant_id, agent_id, agent_id),
    )
    conn.execute(
        "INSERT INTO agent_versions (tenant_id, agent_id, version, definition) "
        "VALUES (%s, %s, 1, %s)",
        (tenant_id, agent_id, json.dumps(definition)),
    )
    if number:
        conn.execute(
            "INSERT INTO phone_numbers (number, tenant_id, agent_id) VALUES (%s, %s, %s)",
            (number, tenant_id, agent_id),
        )
    return number


@pytest.fixture
def tenant(sql: psycopg.Connection[Any]) -> Tenant:
    return make_tenant(sql)


@pytest.fixture
def other_tenant(sql: psycopg.Connection[Any]) -> Tenant:
    return make_tenant(sql)


@pytest.fixture
def heartbeat(rt: runtime_module.Runtime, redis_url: str, redis_prefix: str, run: Any) -> Any:
    """Register a media node in the Redis registry, as a media node's heartbeat does."""

    def beat(info: NodeInfo) -> NodeInfo:
        async def send() -> None:
            cache = RedisCache(redis_url, key_prefix=redis_prefix)
            try:
                await NodeRegistry(cache).heartbeat(info)
            finally:
                await cache.close()

        run(send())
        return info

    return beat


@pytest.fixture
def node(heartbeat: Any) -> NodeInfo:
    """One healthy media node in the Redis registry."""
    return heartbeat(
        NodeInfo(node_id="node-a", url="wss://media-a.example.com", capacity=4, active_calls=1)
    )


def voice_event(
    form: dict[str, str], *, path: str = "/twilio/voice", **kwargs: Any
) -> dict[str, Any]:
    return twilio_event(path, form, **kwargs)


def inbound_form(sid: str, to: str, caller: str = "+15551230001", **extra: str) -> dict[str, str]:
    return {
        "AccountSid": SAMPLE_ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": caller,
        "To": to,
        **extra,
    }


# --- an HTTP fake of Twilio's REST API -------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]

    def value(self, name: str) -> str:
        (only,) = self.values(name)
        return only


@dataclass
class FakeTwilio:
    base_url: str
    requests: list[Recorded] = field(default_factory=list)
    fail_with: int | None = None
    next_sid: str = field(default_factory=call_sid)
    # Campaign tests: a new SID per call, a hook run before the answer (to hold it) and one
    # after it (to play Twilio's callbacks for the call).
    fresh_sids: bool = False
    before_reply: Any = None
    after_reply: Any = None
    after_update: Any = None  # run with (request, sid) after a call update is answered
    lock: threading.Lock = field(default_factory=threading.Lock)


class _BacklogServer(ThreadingHTTPServer):
    # Campaign workers dial in bursts (many processes at once): the default backlog of 5
    # refuses some of them, which Twilio never does.
    request_queue_size = 128
    daemon_threads = True


def start_fake_twilio() -> tuple[FakeTwilio, ThreadingHTTPServer]:
    """Answers like api.twilio.com for Calls create/update; refuses wrong credentials with 401.
    (The benchmarks run it too.) Stop it with ``server.shutdown()``."""
    state = FakeTwilio(base_url="")
    expected_auth = (
        "Basic " + base64.b64encode(f"{SAMPLE_ACCOUNT_SID}:{SAMPLE_AUTH_TOKEN}".encode()).decode()
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
            recorded = Recorded(
                "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, form
            )
            with state.lock:
                state.requests.append(recorded)
            if self.headers.get("Authorization") != expected_auth:
                self._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return
            if state.fail_with:
                self._reply(
                    state.fail_with,
                    {
                        "code": 21211,
                        "message": "Invalid 'To' Phone Number",
                        "status": state.fail_with,
                    },
                )
                return
            prefix = f"/2010-04-01/Accounts/{SAMPLE_ACCOUNT_SID}/Calls"
            if self.path == prefix + ".json":
                sid = call_sid() if state.fresh_sids else state.next_sid
                if state.before_reply:
                    state.before_reply(recorded)
                try:
                    self._reply(
                        201, {"sid": sid, "status": "queued", "account_sid": SAMPLE_ACCOUNT_SID}
                    )
                finally:
                    # Twilio places the call even when the client that asked is gone.
                    if state.after_reply:
                        state.after_reply(recorded, sid)
            elif self.path.startswith(prefix + "/") and self.path.endswith(".json"):
                sid = self.path[len(prefix) + 1 : -len(".json")]
                self._reply(
                    200, {"sid": sid, "status": "in-progress", "account_sid": SAMPLE_ACCOUNT_SID}
                )
                if state.after_update:
                    state.after_update(recorded, sid)
            else:
                self._reply(404, {"code": 20404, "message": "not found", "status": 404})

    server = _BacklogServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return state, server


@pytest.fixture
def fake_twilio(rt: runtime_module.Runtime) -> Iterator[FakeTwilio]:
    state, server = start_fake_twilio()
    rt._settings = rt.settings.model_copy(update={"twilio_api_base": state.base_url})
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_api(rt: Any, fake_twilio: FakeTwilio) -> Iterator[str]:
    """``parley api serve`` in a thread: the local app on a real port, as the CLI runs it."""
    from functions.local import serving_in_thread

    with serving_in_thread(_free_port()) as url:
        yield url
