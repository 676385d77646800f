"""The ``/twilio/stream`` WebSocket: Twilio frames in, a :class:`CallSession` driven, frames out.

This is where Twilio's wire format ends: caller mu-law 8 kHz is decoded to PCM for the session,
agent PCM (played at 8 kHz, the phone line's rate) is encoded to mu-law, and Twilio's mark echoes
become :class:`~media_nodes.transports.port.Played` events. The call's life around it is
:func:`~media_nodes.pipeline.lifecycle.run_call`'s.

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
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from media_nodes.audio.codec import mulaw_to_pcm, pcm_to_mulaw
from media_nodes.dialogue.protocol import EndReason
from media_nodes.pipeline.call import CallIdentity, CallSession
from media_nodes.pipeline.events import SessionEvent
from media_nodes.pipeline.lifecycle import run_call
from media_nodes.pipeline.node import MediaNode
from media_nodes.transports.port import Played
from media_nodes.transports.twilio import (
    SAMPLE_RATE,
    Connected,
    Dtmf,
    InboundMessage,
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
from shared.cache.base import CacheUnavailable
from shared.tokens import TokenError

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008  # refused: no valid session token
CLOSE_TRY_AGAIN = 1013  # at capacity or draining


class TwilioTransport:
    """One Twilio media stream: the call's :class:`~media_nodes.pipeline.lifecycle.CallTransport`
    and its :class:`~media_nodes.transports.port.AudioPort` (8 kHz PCM, mu-law on the wire).
    A socket that went away swallows sends instead of raising."""

    rate = SAMPLE_RATE

    def __init__(self, websocket: WebSocket, node: MediaNode) -> None:
        self._ws = websocket
        self._node = node
        self._sid = ""
        self._start: Start | None = None
        self.closed = False
        self._close_sent = False

    # ---- AudioPort ----------------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self._ws.send_text(text)
        except Exception:  # disconnect races: the receive loop ends the call
            self.closed = True

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        await self._send(media_message(self._sid, pcm_to_mulaw(pcm)))

    async def mark(self, name: str) -> None:
        await self._send(mark_message(self._sid, name))

    async def clear(self) -> None:
        await self._send(clear_message(self._sid))

    # ---- the call's life ----------------------------------------------------------------------

    async def accept(self) -> bool:
        await self._ws.accept()
        return True

    async def refuse(self, why: str) -> None:
        self._drop("refused_" + why.replace(" ", "_"))
        await self._close(CLOSE_TRY_AGAIN, f"media node {why}")

    def _drop(self, why: str, detail: str = "") -> None:
        self._node.metrics.dropped_frames.labels(why).inc()
        log.info("twilio stream: dropped frame (%s) %s", why, detail[:120])

    async def _receive(self) -> tuple[InboundMessage, float] | None:
        """The next usable frame and when it arrived; None when the stream is over (a dropped
        socket, or our own close). Bad frames are dropped and counted here."""
        while True:
            try:
                message = await self._ws.receive()
            except (WebSocketDisconnect, RuntimeError):  # closed under us (a hang-up)
                return None
            if message["type"] == "websocket.disconnect":
                return None
            arrived = time.monotonic()
            text = message.get("text")
            if text is None:
                self._drop("binary_frame")
                continue
            try:
                return parse_message(text), arrived
            except ProtocolError as exc:
                self._drop(exc.reason, str(exc))

    async def identify(self, node: MediaNode) -> CallIdentity | None:
        """Until Twilio's ``start``: its token says who the call is; one stream per call."""
        while (received := await self._receive()) is not None:
            frame, _ = received
            match frame:
                case Start():
                    return await self._started(frame, node)
                case Media():
                    self._drop("media_before_start")
                case Dtmf():
                    self._drop("dtmf_before_start")
                case Mark():
                    self._drop("unknown_mark", frame.name)
                case Stop():
                    return None
                case Connected():
                    pass
        return None

    async def _started(self, frame: Start, node: MediaNode) -> CallIdentity | None:
        try:
            identity = identify(frame, node.settings)
        except TokenError as exc:
            self._drop("unauthorized", str(exc))
            await self._close(CLOSE_POLICY, str(exc)[:120])
            return None
        refusal = await _claim_stream(node, identity.call_id, frame.stream_sid)
        if refusal is not None:
            code, why = refusal
            self._drop("second_stream" if code == CLOSE_POLICY else "claims_unavailable")
            log.warning("call %s: stream refused: %s", identity.call_id, why)
            await self._close(code, why)
            return None
        self._start, self._sid = frame, frame.stream_sid
        return identity

    def trace_context(self) -> Mapping[str, str]:
        return self._start.custom_parameters if self._start is not None else {}

    def on_event(self, event: SessionEvent) -> None:
        """Twilio's caller hears the call and nothing else: events go to the bus only."""

    async def serve(self, session: CallSession) -> EndReason:
        while (received := await self._receive()) is not None:
            frame, arrived = received
            match frame:
                case Media():
                    await session.on_audio(mulaw_to_pcm(frame.payload), arrived)
                case Dtmf():
                    await session.on_dtmf(frame.digit)
                case Mark():
                    if not session.on_playback(Played(frame.name)):
                        self._drop("unknown_mark", frame.name)
                case Start():
                    self._drop("duplicate_start")
                case Stop():
                    break
                case Connected():
                    pass
        return "caller_hung_up"

    async def hang_up(self) -> None:
        """Close the socket once (also after a failed send: the close frame is still owed); the
        receive loop then ends."""
        await self._close(None, None)

    async def _close(self, code: int | None, reason: str | None) -> None:
        self.closed = True
        if self._close_sent:
            return
        self._close_sent = True
        if self._ws.application_state == WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(Exception):  # the peer went first: nothing is owed
            if code is None:
                await self._ws.close()
            else:
                await self._ws.close(code=code, reason=reason)

    async def close(self, session: CallSession | None, reason: EndReason) -> None:
        await self._close(None, None)


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
    await run_call(TwilioTransport(websocket, node), node)
