"""``WS /webrtc/signal``: one socket per browser call - negotiation, then the call's metadata.

1. The socket is authorised at connect time (``?token=`` - a short-lived session token from
   :mod:`shared.tokens`, or nothing when the development setting allows unsigned calls), then the
   node says ``hello`` with the ICE servers to use.
2. The client's ``offer`` (complete: the page waits for ICE gathering) is answered by aiortc.
3. Once ICE and DTLS connect, a :class:`CallSession` - the same pipeline as Twilio's - starts,
   fed by the remote audio track and speaking into an :class:`AgentAudioTrack`.
4. Until the end, the socket carries the call's events (transcript, agent activity, latency per
   turn, disposition) and takes ``dtmf`` and ``hangup`` messages.

Whatever ends it - hang-up from either side, a dropped socket, ICE failure, shutdown - the session
is finished (transcript, disposition, recording saved) and the peer connection is closed.
Bad messages get an ``error`` message with a stable code and are counted in
``parley_dropped_frames_total{reason="webrtc_<code>"}``; they never end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from media_nodes.dialogue.protocol import EndReason
from media_nodes.pipeline.call import CallIdentity, CallSession
from media_nodes.pipeline.node import MediaNode
from media_nodes.transports.webrtc import (
    AgentAudioTrack,
    browser_ice_servers,
    new_peer_connection,
    pump_caller_audio,
)
from media_nodes.transports.webrtc_protocol import (
    Dtmf,
    Hangup,
    IceCandidate,
    Offer,
    SignalError,
    error_message,
    message,
    parse_client_message,
)
from shared import tracing
from shared.settings import Settings
from shared.tokens import SessionClaims, TokenError, verify

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
DEFAULT_TENANT = "default"
EVENT_POLL_S = 0.05
NEGOTIATION_TIMEOUT_S = 60.0  # an idle socket that never offers is closed


class PeerRegistry:
    """Every live RTCPeerConnection of this process (tests assert none leak)."""

    def __init__(self) -> None:
        self.peers: set[RTCPeerConnection] = set()

    def __len__(self) -> int:
        return len(self.peers)


def authorize(token: str, settings: Settings) -> SessionClaims | None:
    """The token's claims; None for an allowed unsigned dev call; :class:`TokenError` otherwise."""
    if token:
        return verify(token, secret=settings.session_token_secret)
    if settings.production or not settings.allow_unsigned_streams:
        raise TokenError("missing session token")
    return None


def call_identity(claims: SessionClaims | None, offer: Offer, settings: Settings) -> CallIdentity:
    """Signed calls take call, tenant and agent from the token; dev calls from the offer."""
    sid = f"WR{uuid.uuid4().hex}"
    common: dict[str, Any] = {
        "stream_sid": sid,
        "variables": offer.variables,
        "record": offer.record,
        "channel": "webrtc",
    }
    if claims is not None:
        return CallIdentity(
            call_id=claims.call_id,
            tenant_id=claims.tenant_id,
            agent_id=claims.agent_id,
            **common,
        )
    return CallIdentity(
        call_id=f"web-{uuid.uuid4().hex[:16]}",
        tenant_id=DEFAULT_TENANT,
        agent_id=offer.agent_id or settings.default_agent,
        **common,
    )


class SignalSession:
    """One signalling socket and the call it sets up."""

    def __init__(self, websocket: WebSocket, node: MediaNode, registry: PeerRegistry) -> None:
        self.ws = websocket
        self.node = node
        self.registry = registry
        self.claims: SessionClaims | None = None
        self.pc: RTCPeerConnection | None = None
        self.track: AgentAudioTrack | None = None
        self.session: CallSession | None = None
        self.call_span: tracing.Span | None = None
        self._remote_audio: MediaStreamTrack | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self._reason: EndReason | None = None
        self._forwarded = 0  # events of the session already sent to the client
        self._activity = ""
        self._closed = False

    # ---- socket helpers -----------------------------------------------------------------------

    async def send(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self.ws.send_text(text)
        except Exception:  # the client went away; the receive loop ends the call
            self._closed = True

    async def refuse(self, code: str, text: str) -> None:
        self.node.metrics.dropped_frames.labels(f"webrtc_{code}").inc()
        log.info("webrtc signal: %s: %s", code, text[:200])
        await self.send(error_message(code, text))

    def end(self, reason: EndReason | None) -> None:
        if self._reason is None and reason is not None:
            self._reason = reason
        self._ended.set()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the socket's life --------------------------------------------------------------------

    async def run(self) -> None:
        node = self.node
        await self.ws.accept()
        if not node.accepting():
            await self.refuse("busy", "this media node is not taking calls now; try again")
            await self._close_socket(CLOSE_TRY_AGAIN)
            return
        try:
            self.claims = authorize(self.ws.query_params.get("token", ""), node.settings)
        except TokenError as exc:
            await self.refuse("unauthorized", str(exc))
            await self._close_socket(CLOSE_POLICY)
            return
        await self.send(message("hello", ice_servers=browser_ice_servers(node.settings)))
        receiver = asyncio.create_task(self._receive(), name="webrtc-signal-receive")
        watchdog = asyncio.create_task(self._negotiation_watchdog(), name="webrtc-negotiation")
        try:
            await self._ended.wait()
        finally:
            watchdog.cancel()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            await self._tear_down()

    async def _receive(self) -> None:
        try:
            while not self._ended.is_set():
                raw = await self.ws.receive()
                if raw["type"] == "websocket.disconnect":
                    self._closed = True
                    self.end("caller_hung_up")
                    return
                try:
                    parsed = parse_client_message(raw.get("text"))
                    await self._handle(parsed)
                except SignalError as exc:
                    await self.refuse(exc.code, exc.message)
        except WebSocketDisconnect:
            self._closed = True
            self.end("caller_hung_up")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webrtc signal failed")
            self.end("error")

    async def _negotiation_watchdog(self) -> None:
        await asyncio.sleep(NEGOTIATION_TIMEOUT_S)
        if self.pc is None:
            await self.refuse("timeout", "no offer received in time")
            self.end(None)

    async def _handle(self, msg: Offer | IceCandidate | Dtmf | Hangup) -> None:
        match msg:
            case Offer():
                if self.pc is not None:
                    raise SignalError("duplicate_offer", "this call is already negotiated")
                await self._answer(msg)
            case IceCandidate():
                if self.pc is None or self.pc.remoteDescription is None:
                    raise SignalError("bad_state", "send the offer before ICE candidates")
                await self._add_candidate(msg)
            case Dtmf():
                if self.session is None:
                    raise SignalError("bad_state", "the call is not connected yet")
                for digit in msg.digits:
                    await self.session.on_dtmf(digit)
            case Hangup():
                self.end("caller_hung_up")

    async def _add_candidate(self, msg: IceCandidate) -> None:
        assert self.pc is not None
        if not msg.candidate:
            return  # end of candidates: aiortc needs no notice
        try:
            candidate = candidate_from_sdp(msg.candidate.removeprefix("candidate:"))
        except Exception:
            raise SignalError("bad_message", "the ICE candidate cannot be parsed") from None
        candidate.sdpMid = msg.sdp_mid
        candidate.sdpMLineIndex = msg.sdp_mline_index
        await self.pc.addIceCandidate(candidate)

    # ---- negotiation --------------------------------------------------------------------------

    async def _answer(self, offer: Offer) -> None:
        node = self.node
        identity = call_identity(self.claims, offer, node.settings)
        if any(call.identity.call_id == identity.call_id for call in node.calls):
            raise SignalError("call_in_progress", "this token's call is already connected")
        try:  # fail before any media work when the agent does not exist
            await node.dialogue.new_session(
                tenant_id=identity.tenant_id,
                agent_id=identity.agent_id,
                call_id="webrtc-agent-check",
                variables={},
            )
        except LookupError as exc:
            raise SignalError("unknown_agent", str(exc)) from None
        pc = new_peer_connection(node.settings)
        self.pc = pc
        self.registry.peers.add(pc)
        self.track = AgentAudioTrack()
        try:
            await self._negotiate(pc, offer, identity)
        except BaseException:
            await self._drop_peer()  # the client may try again with a better offer
            raise
        self._spawn(self._start_when_connected(identity), f"webrtc-{identity.call_id}")

    async def _drop_peer(self) -> None:
        pc, self.pc = self.pc, None
        if self.track is not None:
            self.track.stop()
            self.track = None
        self._remote_audio = None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
            self.registry.peers.discard(pc)

    async def _negotiate(self, pc: RTCPeerConnection, offer: Offer, identity: CallIdentity) -> None:
        assert self.track is not None

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._remote_audio is None:
                self._remote_audio = track

        @pc.on("connectionstatechange")
        def on_state() -> None:
            failed = pc.connectionState in ("failed", "closed")
            if failed and pc is self.pc and not self._ended.is_set():
                log.info("webrtc call %s: connection %s", identity.call_id, pc.connectionState)
                self.end("error" if pc.connectionState == "failed" else "caller_hung_up")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc: ValueError/InvalidStateError/... for unusable SDP
            raise SignalError("bad_sdp", f"the offer cannot be used: {exc}") from None
        if self._remote_audio is None:
            raise SignalError("no_audio", "the offer carries no audio track")
        pc.addTrack(self.track)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)  # aiortc gathers all candidates here
        local = pc.localDescription
        await self.send(message("answer", sdp=local.sdp, call_id=identity.call_id))

    async def _start_when_connected(self, identity: CallIdentity) -> None:
        pc = self.pc
        assert pc is not None and self.track is not None
        deadline = time.monotonic() + self.node.settings.webrtc_connect_timeout_s
        while pc.connectionState != "connected":
            if self._ended.is_set():
                return
            if time.monotonic() > deadline or pc.connectionState in ("failed", "closed"):
                await self.refuse("ice_failed", "the media connection could not be established")
                self.end("error")
                return
            await asyncio.sleep(0.02)
        if not self.node.accepting():
            await self.refuse("busy", "this media node is not taking calls now; try again")
            self.end(None)
            return
        # The call's span, as for a Twilio stream: a page that started the call in a trace hands
        # its context over in the signalling URL (?traceparent=...). The tasks the call starts
        # from here are its children.
        self.call_span = tracing.start_call(
            identity.call_id,
            {k: v for k, v in self.ws.query_params.items() if k == tracing.TRACEPARENT},
            **{
                "tenant.id": identity.tenant_id,
                "agent.id": identity.agent_id,
                "call.channel": "webrtc",
            },
        )
        session = CallSession(self.node, self.track, identity, hangup=self._agent_hung_up)
        self.track.on_mark = session.on_mark
        self.session = session
        self.node.calls.add(session)
        try:
            await session.start()
        except Exception as exc:  # e.g. the agent was removed since the offer
            log.exception("webrtc call %s could not start", identity.call_id)
            await self.refuse("call_failed", f"the call could not start: {exc}")
            self.end("error")
            return
        assert self._remote_audio is not None
        self._spawn(pump_caller_audio(self._remote_audio, session.on_media), "webrtc-caller-in")
        self._spawn(self._forward_events(), "webrtc-events")

    async def _agent_hung_up(self) -> None:
        """CallSession's hang-up (agent ended, transferred, shutdown): it set its own reason."""
        self.end(None)

    # ---- metadata out -------------------------------------------------------------------------

    async def _flush_events(self) -> None:
        session = self.session
        if session is None:
            return
        emitted = session.events.emitted
        while self._forwarded < len(emitted):
            event = emitted[self._forwarded]
            self._forwarded += 1
            payload = event.payload.model_dump(mode="json")
            kind = str(payload.pop("type"))
            if kind == "turn.user":
                await self._set_activity("thinking")
            await self.send(message(kind, **payload))

    async def _set_activity(self, activity: str) -> None:
        if activity != self._activity:
            self._activity = activity
            await self.send(message("agent.activity", activity=activity))

    async def _forward_events(self) -> None:
        """The call's events, as they are emitted, plus the agent's activity."""
        while not self._ended.is_set():
            await self._flush_events()
            session = self.session
            if session is not None and session.playout.speaking:
                await self._set_activity("speaking")
            elif self._activity in ("", "speaking"):
                await self._set_activity("listening")
            await asyncio.sleep(EVENT_POLL_S)

    # ---- the end ------------------------------------------------------------------------------

    async def _tear_down(self) -> None:
        reason: EndReason = self._reason or "caller_hung_up"
        # Stop feeding and forwarding first: what the caller said so far is already in the session.
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session = self.session
        try:
            if session is not None:
                try:
                    await session.finish(reason)
                finally:
                    self.node.calls.discard(session)
                await self._flush_events()
                reason = session.end_reason or reason
                self.node.metrics.calls_ended.labels(reason).inc()
            if self.call_span is not None:
                self.call_span.set_attribute("call.end_reason", reason)
                self.call_span.end()
            disposition = session.outcome.disposition if session and session.outcome else None
            await self.send(message("ended", reason=reason, disposition=disposition))
        finally:
            await self._drop_peer()
            await self._close_socket(CLOSE_NORMAL)

    async def _close_socket(self, code: int) -> None:
        self._closed = True
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code)


async def serve_webrtc_signal(
    websocket: WebSocket, node: MediaNode, registry: PeerRegistry
) -> None:
    await SignalSession(websocket, node, registry).run()
