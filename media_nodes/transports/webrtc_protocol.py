"""The ``/webrtc/signal`` WebSocket protocol: JSON text messages, never media. No I/O here.

Client -> node::

    {"type": "offer", "sdp": "v=0...", "agent_id": "acme-shop", "variables": {...}, "record": false}
    {"type": "ice", "candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}
    {"type": "dtmf", "digits": "1"}
    {"type": "hangup"}

Node -> client: ``hello`` (ICE servers), ``answer`` (SDP and call id), ``agent.activity``
(listening / thinking / speaking), every event of the call as it happens (``turn.user``,
``turn.agent``, ``latency.measured``, ``intent.detected``, ``disposition.set``, ``call.ended``,
... - the payloads of the shared event contracts), ``ended``, and ``error`` with a stable
``code`` and a human-readable ``message``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiortc.sdp import SessionDescription

MAX_MESSAGE_CHARS = 64_000
MAX_VARIABLES = 32
AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DTMF = re.compile(r"^[0-9*#A-D]{1,32}$")


class SignalError(ValueError):
    """A message or offer that cannot be used; ``code`` is stable, the text explains."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Offer:
    sdp: str
    agent_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    record: bool = False


@dataclass(frozen=True)
class IceCandidate:
    candidate: str  # "" means the end of the client's candidates
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True)
class Dtmf:
    digits: str


@dataclass(frozen=True)
class Hangup:
    pass


ClientMessage = Offer | IceCandidate | Dtmf | Hangup


def _parse_offer(data: dict[str, Any]) -> Offer:
    agent_id = data.get("agent_id")
    if agent_id is not None and (not isinstance(agent_id, str) or not AGENT_ID.match(agent_id)):
        raise SignalError("bad_message", "'agent_id' must be a short agent id")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
        raise SignalError("bad_message", f"'variables' must be an object of <= {MAX_VARIABLES}")
    record = data.get("record", False)
    if not isinstance(record, bool):
        raise SignalError("bad_message", "'record' must be true or false")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalError("bad_sdp", "the offer needs an 'sdp' string")
    check_offer_sdp(sdp)
    return Offer(
        sdp=sdp,
        agent_id=agent_id,
        variables={str(k)[:64]: str(v)[:256] for k, v in variables.items()},
        record=record,
    )


def check_offer_sdp(sdp: str) -> None:
    """An SDP offer we can answer: parseable, with an audio section the caller sends on."""
    if not sdp.lstrip().startswith("v=0"):
        raise SignalError("bad_sdp", "the offer is not SDP (it must start with 'v=0')")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises assorted errors for malformed lines
        raise SignalError("bad_sdp", f"the offer's SDP cannot be parsed: {exc}") from None
    audio = [m for m in description.media if m.kind == "audio"]
    if not audio:
        raise SignalError("no_audio", "the offer has no audio section: add a microphone track")
    if not any(m.direction in (None, "sendrecv", "sendonly") and m.port for m in audio):
        raise SignalError("no_audio", "the offer's audio section does not send audio")


def _parse_ice(data: dict[str, Any]) -> IceCandidate:
    candidate = data.get("candidate", "")
    if candidate is None:
        candidate = ""
    if not isinstance(candidate, str):
        raise SignalError("bad_message", "'candidate' must be a string")
    mid = data.get("sdpMid")
    index = data.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise SignalError("bad_message", "'sdpMid' must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise SignalError("bad_message", "'sdpMLineIndex' must be an integer")
    return IceCandidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index)


def parse_client_message(text: str | bytes | None) -> ClientMessage:
    """One message from the client, typed; :class:`SignalError` when it cannot be used."""
    if not isinstance(text, str):
        raise SignalError("bad_message", "messages are JSON text frames")
    if len(text) > MAX_MESSAGE_CHARS:
        raise SignalError("bad_message", f"message too long ({len(text)} characters)")
    try:
        data = json.loads(text)
    except ValueError:
        raise SignalError("bad_message", "message is not JSON") from None
    if not isinstance(data, dict):
        raise SignalError("bad_message", "message is not a JSON object")
    kind = data.get("type")
    match kind:
        case "offer":
            return _parse_offer(data)
        case "ice":
            return _parse_ice(data)
        case "dtmf":
            digits = data.get("digits")
            if not isinstance(digits, str) or not DTMF.match(digits):
                raise SignalError("bad_message", "'digits' must be DTMF digits (0-9 * # A-D)")
            return Dtmf(digits=digits)
        case "hangup":
            return Hangup()
        case _:
            raise SignalError("bad_message", f"unknown message type {str(kind)[:40]!r}")


# ---- what the node sends ----------------------------------------------------------------------


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def error_message(code: str, text: str) -> str:
    return message("error", code=code, message=text)
