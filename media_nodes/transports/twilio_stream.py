"""The ``/twilio/stream`` WebSocket: Twilio frames in, a :class:`CallSession` driven, frames out.

Bad frames are dropped and counted (``parley_dropped_frames_total{reason}``), never fatal. A
stream is refused (policy-violation close) without a valid session token unless the development
setting allows unsigned streams. Whatever ends the call - ``stop``, a dropped socket, the agent
hanging up, shutdown - the socket is closed at once (answering the caller's close handshake)
and then the session's transcript, disposition and recording are saved.
"""

from __future__ import annotations

import contextlib
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from media_nodes.dialogue.protocol import EndReason
from media_nodes.pipeline.call import CallSession
from media_nodes.pipeline.node import MediaNode
from media_nodes.transports.twilio import (
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from media_nodes.transports.twilio_identity import identify
from shared import tracing
from shared.cache.base import CacheUnavailable
from shared.tokens import TokenError

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008  # refused: no valid session token
CLOSE_TRY_AGAIN = 1013  # at capacity or draining


class TwilioSink:
    """Agent audio to Twilio; a socket that went away swallows sends instead of raising."""

    def __init__(self, websocket: WebSocket, stream_sid: str) -> None:
        self._ws = websocket
        self._sid = stream_sid
        self.closed = False
        self._close_sent = False

    async def _send(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self._ws.send_text(text)
        except Exception:  # disconnect races: the receive loop ends the call
            self.closed = True

    async def send_audio(self, mulaw: bytes) -> None:
        await self._send(media_message(self._sid, mulaw))

    async def send_mark(self, name: str) -> None:
        await self._send(mark_message(self._sid, name))

    async def send_clear(self) -> None:
        await self._send(clear_message(self._sid))

    async def close(self) -> None:
        """Close the socket once (also after a failed send: the close frame is still owed)."""
        self.closed = True
        if self._close_sent:
            return
        self._close_sent = True
        with contextlib.suppress(Exception):
            await self._ws.close()


async def _claim_stream(node: MediaNode, call_id: str, stream_sid: str) -> tuple[int, str] | None:
    """None if this is the call's first stream, else the close code and reason. A call that
    already had a stream (a replayed webhook or token) must never get another: its record
    would be rewritten by a conversation the caller never had."""
    try:
        if await node.streams.claim(call_id, stream_sid):
            return None
    except CacheUnavailable as exc:
        return CLOSE_TRY_AGAIN, f"stream registry unavailable: {exc}"[:120]
    return CLOSE_POLICY, "this call already had a media stream"


async def serve_twilio_stream(websocket: WebSocket, node: MediaNode) -> None:
    await websocket.accept()
    if not node.accepting():
        why = "draining" if node.draining else "at capacity"
        node.metrics.dropped_frames.labels("refused_" + why.replace(" ", "_")).inc()
        await websocket.close(code=CLOSE_TRY_AGAIN, reason=f"media node {why}")
        return
    session: CallSession | None = None
    sink: TwilioSink | None = None
    reason: EndReason = "caller_hung_up"
    call_span: tracing.Span | None = None

    def drop(why: str, detail: str = "") -> None:
        node.metrics.dropped_frames.labels(why).inc()
        log.info("twilio stream: dropped frame (%s) %s", why, detail[:120])

    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            arrived = time.monotonic()
            text = message.get("text")
            if text is None:
                drop("binary_frame")
                continue
            try:
                frame = parse_message(text)
            except ProtocolError as exc:
                drop(exc.reason, str(exc))
                continue
            match frame:
                case Media():
                    if session is None:
                        drop("media_before_start")
                    else:
                        await session.on_media(frame.payload, arrived)
                case Start():
                    if session is not None:
                        drop("duplicate_start")
                        continue
                    try:
                        identity = identify(frame, node.settings)
                    except TokenError as exc:
                        drop("unauthorized", str(exc))
                        await websocket.close(code=CLOSE_POLICY, reason=str(exc)[:120])
                        return
                    refusal = await _claim_stream(node, identity.call_id, frame.stream_sid)
                    if refusal is not None:
                        code, why = refusal
                        drop("second_stream" if code == CLOSE_POLICY else "claims_unavailable")
                        log.warning("call %s: stream refused: %s", identity.call_id, why)
                        await websocket.close(code=code, reason=why)
                        return
                    sink = TwilioSink(websocket, frame.stream_sid)
                    call_span = tracing.start_call(
                        identity.call_id,
                        frame.custom_parameters,
                        **{"tenant.id": identity.tenant_id, "agent.id": identity.agent_id},
                    )
                    session = CallSession(node, sink, identity, hangup=sink.close)
                    node.calls.add(session)
                    try:
                        await session.start()
                    except LookupError as exc:  # no such agent for the tenant
                        log.error("call %s cannot start: %s", identity.call_id, exc)
                        reason = "error"
                        break
                case Dtmf():
                    if session is None:
                        drop("dtmf_before_start")
                    else:
                        await session.on_dtmf(frame.digit)
                case Mark():
                    if session is None or not session.on_mark(frame.name):
                        drop("unknown_mark", frame.name)
                case Stop():
                    break
                case Connected():
                    pass
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("twilio stream failed")
        reason = "error"
    finally:
        # The socket first: the stream is over, and the caller's side is owed the close
        # handshake now, not after the call is saved (transcribing its last words, handing its
        # events to a slow broker). While we are not reading, a close frame from the caller
        # would wait unanswered for all of that.
        if sink is not None:
            await sink.close()
        elif websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()
        if session is not None:
            try:
                await session.finish(reason)
            finally:
                node.calls.discard(session)
                node.metrics.calls_ended.labels(session.end_reason or reason).inc()
                if call_span is not None:
                    call_span.set_attribute("call.end_reason", session.end_reason or reason)
                    call_span.end()
