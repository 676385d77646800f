"""Bad frames are dropped and counted; the call goes on and nothing the caller said is lost."""

from __future__ import annotations

import base64
import json

from media_nodes.simulator.caller import Raw, call
from shared.events.models import TurnUser
from shared.tokens import sign
from tests.media.conftest import PATIENT, NodeFactory, clip, words

PRODUCTION = {
    "env": "production",
    "allow_unsigned_streams": False,
    "session_token_secret": "a-random-production-secret-of-40-chars!!",
}


def media(payload: str) -> Raw:
    return Raw(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}))


async def test_junk_is_dropped_and_the_call_goes_on(start_node: NodeFactory) -> None:
    preamble = [
        media(base64.b64encode(b"\xff" * 160).decode()),  # media before start
        Raw("{not json"),
        Raw(b"\x00\x01binary"),
    ]
    junk = [
        Raw(json.dumps({"event": "party", "streamSid": "MZ1"})),
        Raw("[1, 2, 3]"),
        media("%%%not-base64%%%"),
        media(base64.b64encode(b"\xff" * 20_000).decode()),  # 2.5 s in one frame
        media(""),
        Raw(json.dumps({"event": "media", "streamSid": "MZ1"})),  # no media object
        Raw(json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}})),
        Raw(json.dumps({"event": "mark", "mark": {"name": "never-sent"}})),
        media(base64.b64encode(b"\xff" * 7).decode()),  # odd-sized but valid: played, not dropped
    ]
    async with start_node() as running:
        result = await call(
            running.url, [*junk, clip("order_status")], preamble=preamble, **PATIENT
        )
        events = await running.wait_call_ended(result.call_sid)
        expected = {
            "media_before_start": 1,
            "malformed_json": 2,
            "binary_frame": 1,
            "unknown_event": 1,
            "bad_base64": 1,
            "oversized_frame": 1,
            "empty_frame": 1,
            "missing_field": 1,
            "bad_dtmf": 1,
            "unknown_mark": 1,
        }
        counted = {reason: running.dropped(reason) for reason in expected}
    assert counted == expected
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert {"check", "status", "order"} <= words(said[0].text)
    assert [e.type for e in events][-2:] == ["disposition.set", "call.ended"]


async def test_unsigned_stream_refused_in_production(start_node: NodeFactory) -> None:
    async with start_node(**PRODUCTION) as running:
        result = await call(running.url, [clip("yes")], **PATIENT)
        assert result.close_code == 1008
        assert result.greeting_ms is None
        assert running.dropped("unauthorized") == 1
        assert not running.events()


async def test_forged_or_expired_token_refused(start_node: NodeFactory) -> None:
    async with start_node() as running:
        forged = sign("c1", "t1", "acme-shop", 60, secret="not-the-secret")
        expired = sign(
            "c2", "t1", "acme-shop", 5, secret=running.settings.session_token_secret, now=0
        )
        another_call = sign(
            "c3",
            "t1",
            "acme-shop",
            60,
            secret=running.settings.session_token_secret,
            call_sid="CA" + "f" * 32,  # the simulated caller's CallSid is another
        )
        for parameters in (
            {"token": forged},
            {"token": expired},
            {"token": another_call},
            {"token": "garbage"},
            {"call_id": "../../etc/passwd"},
            {"tenant_id": "x" * 300},
        ):
            result = await call(running.url, [], parameters=parameters)
            assert result.close_code == 1008, parameters
        assert running.dropped("unauthorized") == 6
        assert not running.events()


async def test_signed_stream_takes_its_identity_from_the_token(start_node: NodeFactory) -> None:
    async with start_node(**PRODUCTION) as running:
        token = sign(
            "call-42", "tenant-7", "acme-shop", 60, secret=running.settings.session_token_secret
        )
        result = await call(running.url, [clip("yes")], parameters={"token": token}, **PATIENT)
        events = await running.wait_call_ended("call-42")
    assert result.greeting_ms is not None
    assert {e.tenant_id for e in events} == {"tenant-7"}
    started = events[0].payload
    assert started.type == "call.started" and started.agent_id == "acme-shop"


async def test_unknown_agent_ends_the_call_cleanly(start_node: NodeFactory) -> None:
    async with start_node() as running:
        result = await call(running.url, [clip("yes")], parameters={"agent_id": "no-such-agent"})
        events = await running.wait_call_ended(result.call_sid)
    assert result.closed_by_agent and result.greeting_ms is None
    assert [e.type for e in events] == ["call.started", "disposition.set", "call.ended"]
    assert events[-1].payload.reason == "error"  # type: ignore[union-attr]
