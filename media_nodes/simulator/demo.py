"""``parley demo``: a whole inbound phone call on embedded defaults, as Twilio would place it.

One process runs the HTTP API (the Lambda functions, served locally) and a media node, sharing an
in-process cache (the media-node registry) and bus; PostgreSQL is the only server. The demo:

1. creates a tenant with an API key, uploads the example agent and routes a number to it
   through the admin API;
2. rings the voice webhook like Twilio (signed with a demo auth token), which picks the media node
   from the registry and answers TwiML ``<Connect><Stream>`` with a signed session token;
3. streams the caller's recorded audio (``examples/audio``, made with Piper) to the node in real
   time, plays the agent's answers, echoes marks — exactly as Twilio does;
4. sends Twilio's final status callback and reads the call back through the analytics API:
   transcript, intents, slots, disposition and the latency of every turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from twilio.request_validator import RequestValidator

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "examples" / "audio"
AGENT_DIR = ROOT / "examples" / "agents" / "acme-shop"
DEMO_AUTH_TOKEN = "demo-twilio-auth-token"
DEMO_NUMBER = "+15550100123"
CALLER_NUMBER = "+15555550100"
# What the caller says, turn by turn: an intent, a slot (spoken digits), a confirmation, then a
# request for a person (escalation).
SCRIPT = ("order_status", "order_number", "yes", "human")

Printer = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo could not run; the message says which step and why."""


@dataclass
class DemoResult:
    call_id: str
    call: dict[str, Any]
    caller_latency_ms: list[float | None] = field(default_factory=list)
    greeting_ms: float | None = None
    agent_audio_s: float = 0.0
    # Compilations of the agent while the call ran: 0 when the node prepared it on activation.
    compiled_during_call: int = 0

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _orders_api(port: int) -> Any:
    """The example shop's order API stand-in (the agent's lookup tool calls it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("acme_orders_api", AGENT_DIR / "orders_api.py")
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {AGENT_DIR / 'orders_api.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), module.OrdersHandler)
    except OSError:
        yield None  # already served on this port (another demo): use that one
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def _serve(app: Any, port: int, name: str) -> AsyncIterator[uvicorn.Server]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1200):  # model loading can take a while on a busy machine
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        with contextlib.suppress(BaseException):
            await task
        raise DemoError(f"the {name} did not start on 127.0.0.1:{port}")
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise DemoError(f"{what} failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


async def _setup_tenant(
    api: httpx.AsyncClient, settings: Settings, say: Printer
) -> tuple[str, int]:
    """A fresh tenant (one per demo run), the agent uploaded and a number routed to it; returns
    the tenant and the agent's active version."""
    from functions.admin.tenants import create_tenant
    from functions.common.auth import store_key
    from shared.agents.loader import inline_knowledge, load_agent_file
    from shared.db import connect

    conn = await connect(settings.database_url, autocommit=True)
    try:
        # The demo number belongs to one demo tenant at a time: an earlier run's lets it go
        # (its calls and analytics stay), so `make demo` can run again and again.
        await conn.execute(
            "DELETE FROM phone_numbers WHERE number = %s AND tenant_id LIKE 'demo-%%'",
            (DEMO_NUMBER,),
        )
        created = await create_tenant(
            conn, "Demo Shop", tenant_id=f"demo-{uuid.uuid4().hex[:6]}", key_name="demo"
        )
        # Only the platform operator gives numbers to tenants: the demo plays that part too.
        operator = await store_key(conn, created.tenant.tenant_id, ["platform"], "demo operator")
    finally:
        await conn.close()
    key = created.api_key.key
    api.headers["Authorization"] = f"Bearer {key}"
    say(f"tenant {created.tenant.tenant_id} created; API key {key[:12]}… (shown once)")

    loaded = load_agent_file(AGENT_DIR)
    definition = inline_knowledge(loaded).model_dump(mode="json", exclude_none=True)
    body = _check(
        await api.post("/v1/agents", json={"definition": definition, "activate": True}),
        "uploading the acme-shop agent",
    )
    say(f"agent acme-shop uploaded through the admin API (version {body['version']})")
    _check(
        await api.put(
            f"/v1/tenants/{created.tenant.tenant_id}/phone-numbers/{DEMO_NUMBER}",
            json={"agent_id": "acme-shop"},
            headers={"Authorization": f"Bearer {operator.secret}"},
        ),
        "giving the demo number to the tenant",
    )
    say(f"number {DEMO_NUMBER} routes to acme-shop")
    return str(created.tenant.tenant_id), int(body["version"])


async def _status_callback(webhook_base: str, call_sid: str, duration_s: int) -> None:
    url = f"{webhook_base}/twilio/status"
    form = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER_NUMBER,
        "To": DEMO_NUMBER,
        "CallStatus": "completed",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "CallDuration": str(duration_s),
    }
    signature = RequestValidator(DEMO_AUTH_TOKEN).compute_signature(url, form)
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(url, data=form, headers={"X-Twilio-Signature": signature})
    if response.status_code >= 400:
        raise DemoError(f"status callback failed: HTTP {response.status_code} {response.text}")


async def run_demo(
    settings: Settings, *, say: Printer = print, out: Path | None = None
) -> DemoResult:
    """Place the demo call; return what the analytics API reports about it."""
    from pydantic import SecretStr

    from functions.common.config import FunctionSettings
    from functions.common.runtime import configure
    from functions.local import create_local_app
    from media_nodes.app import create_app
    from media_nodes.dialogue.factory import AgentDialogueFactory
    from media_nodes.preparation import AgentPreparer
    from media_nodes.simulator.caller import Say, SimulatedCaller, Step, load_wav, save_wav
    from media_nodes.simulator.webhook import dial
    from shared.cache import InProcessCache, NodeRegistry
    from shared.db import create_pool
    from shared.knowledge import KnowledgeBase

    missing = [name for name in SCRIPT if not (AUDIO / f"{name}.wav").exists()]
    if missing:
        raise DemoError(f"caller audio missing in {AUDIO}: {missing}")

    api_port, media_port = _free_port(), _free_port()
    media_url = f"ws://127.0.0.1:{media_port}"
    node_settings = settings.model_copy(
        update={
            "media_public_url": media_url,
            "twilio_auth_token": SecretStr(DEMO_AUTH_TOKEN),
            "node_id": settings.node_id or "demo-node",
            "agents_dir": AGENT_DIR.parent,
        }
    )
    # One process, so the two sides share what Redis and a Qdrant server would hold.
    cache = InProcessCache()
    knowledge = KnowledgeBase(node_settings.data_dir / "qdrant")
    configure(FunctionSettings(**node_settings.model_dump()), cache=cache, knowledge=knowledge)
    pool = await create_pool(node_settings.database_url, max_size=4)
    dialogue = AgentDialogueFactory(node_settings, pool=pool, knowledge=knowledge)

    media_app = create_app(node_settings, registry=NodeRegistry(cache), dialogue=dialogue)
    say("starting the HTTP API and a media node (loading speech models)…")
    started = time.monotonic()
    try:
        with _orders_api(8787):
            async with (
                _serve(create_local_app(), api_port, "HTTP API"),
                _serve(media_app, media_port, "media node"),
            ):
                say(
                    f"ready in {time.monotonic() - started:.1f} s: "
                    f"API http://127.0.0.1:{api_port}, "
                    f"media node {media_url}"
                )
                api_base = f"http://127.0.0.1:{api_port}"
                async with httpx.AsyncClient(base_url=api_base, timeout=30) as api:
                    tenant_id, version = await _setup_tenant(api, node_settings, say)
                    # The node compiles an agent when its version is activated; a real caller
                    # rings long after that, the demo's rings at once, so it lets the node finish.
                    waited = time.monotonic()
                    agents: AgentPreparer = media_app.state.agents
                    if not await agents.wait_prepared(tenant_id, "acme-shop", version, 60):
                        raise DemoError("the media node did not prepare acme-shop within 60 s")
                    say(
                        f"media node prepared acme-shop v{version} on its activation "
                        f"({time.monotonic() - waited:.1f} s after the upload answered)"
                    )
                    for _ in range(100):  # the node heartbeats into the registry at start-up
                        if await NodeRegistry(cache).pick() is not None:
                            break
                        await asyncio.sleep(0.1)

                    say(f"\n{CALLER_NUMBER} dials {DEMO_NUMBER}: Twilio rings the voice webhook")
                    stream = await dial(
                        f"{api_base}/twilio/voice",
                        from_number=CALLER_NUMBER,
                        to_number=DEMO_NUMBER,
                        auth_token=DEMO_AUTH_TOKEN,
                    )
                    call_id = stream.parameters.get("call_id", "")
                    say(
                        f'TwiML <Connect><Stream url="{stream.url}"> (call {call_id}, signed token)'
                    )
                    caller = SimulatedCaller(
                        stream.url, parameters=stream.parameters, call_sid=stream.call_sid
                    )
                    steps: list[Step] = [
                        Say(load_wav(AUDIO / f"{name}.wav"), label=name) for name in SCRIPT
                    ]
                    compiled_before = dialogue.compilations[(tenant_id, "acme-shop")]
                    call_started = time.monotonic()
                    result = await caller.run(steps)
                    duration = time.monotonic() - call_started
                    compiled = dialogue.compilations[(tenant_id, "acme-shop")] - compiled_before
                    if out is not None:
                        save_wav(out, result.agent_audio)
                    await _wait_for_call(api, call_id)
                    await _status_callback(api_base, stream.call_sid, int(duration))
                    call = _check(await api.get(f"/v1/calls/{call_id}"), "reading the call back")
    finally:
        await dialogue.aclose()
        await pool.close()
        knowledge.close()
    return DemoResult(
        call_id=call_id,
        call=call,
        caller_latency_ms=[t.latency_ms for t in result.turns],
        greeting_ms=result.greeting_ms,
        agent_audio_s=len(result.agent_audio) / 8000,
        compiled_during_call=compiled,
    )


async def _wait_for_call(api: httpx.AsyncClient, call_id: str, timeout_s: float = 20) -> None:
    """Wait until the call's disposition has reached PostgreSQL (the projector is async)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = await api.get(f"/v1/calls/{call_id}")
        if response.status_code == 200 and response.json().get("ended_at"):
            return
        await asyncio.sleep(0.2)
    raise DemoError(f"call {call_id} did not reach the database within {timeout_s:.0f} s")


def render(result: DemoResult) -> str:
    """The call as a person wants to read it."""
    call = result.call
    lines = ["", "── transcript (" + call["call_id"] + ") " + "─" * 30]
    for turn in call.get("turns", []):
        who = "agent " if turn["speaker"] == "agent" else "caller"
        cut = " [interrupted]" if turn.get("interrupted") else ""
        lines.append(f"  {who} │ {turn['text']}{cut}")
    lines.append("── latency per turn (ms) " + "─" * 36)
    lines.append("  turn  caller-measured  node v2v  endpoint  asr  dialogue  tts")
    node_rows = sorted(call.get("latency", []), key=lambda row: row["turn_index"])
    for index, measured in enumerate(result.caller_latency_ms, start=1):
        row = node_rows[index - 1] if index <= len(node_rows) else {}

        def ms(value: Any) -> str:
            return "-" if value is None else f"{value:.0f}"

        lines.append(
            f"  {index:>4}  {ms(measured):>15}  {ms(row.get('voice_to_voice_ms')):>8}  "
            f"{ms(row.get('endpoint_ms')):>8}  {ms(row.get('asr_ms')):>3}  "
            f"{ms(row.get('dialogue_first_text_ms')):>8}  {ms(row.get('tts_first_audio_ms')):>3}"
        )
    if result.greeting_ms is not None:
        lines.append(
            f"  greeting: first audio {result.greeting_ms:.0f} ms after the stream started"
        )
    intents = [f"{i['intent']} ({i['confidence']:.2f})" for i in call.get("intent_hits", [])]
    lines.append("── stored in PostgreSQL " + "─" * 37)
    lines.append(f"  intents:     {', '.join(intents) or ', '.join(call.get('intents', []))}")
    lines.append(f"  slots:       {json.dumps(call.get('slots', {}))}")
    lines.append(f"  disposition: {call.get('disposition')}")
    lines.append(f"  summary:     {call.get('summary')}")
    lines.append(f"  status:      {call.get('status')} ({call.get('duration_ms')} ms)")
    return "\n".join(lines)
