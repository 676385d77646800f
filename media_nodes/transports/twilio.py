"""Twilio Media Streams, exactly as Twilio speaks it (bidirectional ``<Connect><Stream>``).

:func:`parse_message` turns one WebSocket text frame into a typed message or raises
:class:`ProtocolError` with a short ``reason`` (the label of the dropped-frames metric);
the ``*_message`` builders produce what we send back. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 bytes of mu-law per 20 ms
# Twilio sends 20 ms chunks but does not promise the size; anything beyond a second is abuse.
MAX_MEDIA_BYTES = SAMPLE_RATE
MAX_MESSAGE_CHARS = 64_000
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class ProtocolError(ValueError):
    """A frame that breaks the protocol; ``reason`` is a stable metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = SAMPLE_RATE
    channels: int = 1


@dataclass(frozen=True)
class Media:
    payload: bytes
    timestamp_ms: int | None
    chunk: int | None
    track: str


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    call_sid: str


InboundMessage = Connected | Start | Media | Dtmf | Mark | Stop


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("missing_field", f"'{key}' must be an object")
    return value


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise ProtocolError("missing_field", f"'{key}' must be a string")


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _parse_start(data: dict[str, Any]) -> Start:
    start = _obj(data, "start")
    media_format = start.get("mediaFormat") or {}
    if not isinstance(media_format, dict):
        raise ProtocolError("bad_start", "'mediaFormat' must be an object")
    encoding = str(media_format.get("encoding", "audio/x-mulaw"))
    rate = _int_or_none(media_format.get("sampleRate", SAMPLE_RATE))
    channels = _int_or_none(media_format.get("channels", 1))
    if encoding != "audio/x-mulaw" or rate != SAMPLE_RATE or channels != 1:
        raise ProtocolError("bad_start", f"unsupported media format {media_format}")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("bad_start", "'customParameters' must be an object")
    tracks = start.get("tracks") or ["inbound"]
    return Start(
        stream_sid=_str(start, "streamSid", required=False) or _str(data, "streamSid"),
        call_sid=_str(start, "callSid", required=False),
        account_sid=_str(start, "accountSid", required=False),
        tracks=tuple(str(t) for t in tracks) if isinstance(tracks, list) else ("inbound",),
        custom_parameters={str(k): str(v) for k, v in params.items()},
        encoding=encoding,
        sample_rate=SAMPLE_RATE,
        channels=1,
    )


def _parse_media(data: dict[str, Any]) -> Media:
    media = _obj(data, "media")
    encoded = _str(media, "payload")
    if len(encoded) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise ProtocolError("oversized_frame", f"{len(encoded)} base64 characters")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("bad_base64", str(exc)) from None
    if not payload:
        raise ProtocolError("empty_frame", "media payload is empty")
    return Media(
        payload=payload,
        timestamp_ms=_int_or_none(media.get("timestamp")),
        chunk=_int_or_none(media.get("chunk")),
        track=str(media.get("track", "inbound")),
    )


def _parse_dtmf(data: dict[str, Any]) -> Dtmf:
    digit = _str(_obj(data, "dtmf"), "digit")
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise ProtocolError("bad_dtmf", f"not a DTMF digit: {digit[:8]!r}")
    return Dtmf(digit=digit)


def parse_message(text: str | bytes) -> InboundMessage:
    """One Twilio frame, typed; :class:`ProtocolError` when it cannot be used."""
    if isinstance(text, bytes):
        raise ProtocolError("binary_frame", "Twilio sends JSON text frames only")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError("oversized_frame", f"{len(text)} characters")
    try:
        data = json.loads(text)
    except ValueError:
        raise ProtocolError("malformed_json", "frame is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed_json", "frame is not a JSON object")
    event = data.get("event")
    match event:
        case "media":
            return _parse_media(data)
        case "connected":
            return Connected(
                protocol=str(data.get("protocol", "")), version=str(data.get("version", ""))
            )
        case "start":
            return _parse_start(data)
        case "dtmf":
            return _parse_dtmf(data)
        case "mark":
            return Mark(name=_str(_obj(data, "mark"), "name"))
        case "stop":
            stop = data.get("stop")
            call_sid = stop.get("callSid", "") if isinstance(stop, dict) else ""
            return Stop(call_sid=str(call_sid))
        case _:
            raise ProtocolError("unknown_event", f"unknown event {str(event)[:40]!r}")


# ---- what we send -----------------------------------------------------------------------------


def media_message(stream_sid: str, mulaw: bytes) -> str:
    payload = base64.b64encode(mulaw).decode()
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
