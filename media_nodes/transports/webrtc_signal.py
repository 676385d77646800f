"""``WS /webrtc/signal``: one socket per browser call - negotiation, then the call's metadata.

1. The socket is authorised at connect time (``?token=`` - a short-lived session token from
   :mod:`shared.tokens`, or nothing when the development setting allows unsigned calls), then the
   node says ``hello`` with the ICE servers to use.
2. The client's ``offer`` (complete: the page waits for ICE gathering) is answered by aiortc.
3. Once ICE and DTLS connect, a :class:`CallSession` - the same pipeline as Twilio's - starts,
   fed 16 kHz PCM from the remote audio track and speaking into an :class:`AgentAudioTrack`.
4. Until the end, the socket carries the call's events as the session emits them (transcript,
   agent activity, latency per turn, disposition) and takes ``dtmf`` and ``hangup`` messages.

The call's life - registration, start, finish, the end's bookkeeping - is
:func:`~media_nodes.pipeline.lifecycle.run_call`'s, as for Twilio; :class:`SignalSession` is the
transport it drives. Whatever ends the call - hang-up from either side, a dropped socket, ICE
failure, shutdown - the session is finished (transcript, disposition, recording saved), the
client is told ``ended`` and the peer connection is closed.
Bad messages get an ``error`` message with a stable code and are counted in
``parley_dropped_frames_total{reason="webrtc_<code>"}``; they never end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from media_nodes.dialogue.protocol import EndReason
from media_nodes.pipeline.call import CallIdentity, CallSession
from media_nodes.pipeline.events import AgentActivity, SessionEvent
from media_nodes.pipeline.lifecycle import run_call
from media_nodes.pipeline.node import MediaNode
from media_nodes.transports.port import Played
from media_nodes.transports.webrtc import (
    PIPELINE_RATE,
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
    """One signalling socket and the call it sets up: the call's
    :class:`~media_nodes.pipeline.lifecycle.CallTransport`, its audio port the agent's track."""

    rate = PIPELINE_RATE

    def __init__(self, websocket: WebSocket, node: MediaNode, registry: PeerRegistry) -> None:
        self.ws = websocket
        self.node = node
        self.registry = registry
        self.claims: SessionClaims | None = None
        self.pc: RTCPeerConnection | None = None
        self.track: AgentAudioTrack | None = None
        self.session: CallSession | None = None
        self._remote_audio: MediaStreamTrack | None = None
        self._identity: CallIdentity | None = None
        self._connected = asyncio.Event()  # ICE and DTLS are up: media can flow
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self._reason: EndReason | None = None
        self._outbox: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._forwarder: asyncio.Task[None] | None = None
        self._activity = ""
        self._greeted = False  # hello sent: the client is owed an "ended"
        self._closed = False

    # ---- socket helpers -----------------------------------------------------------------------

    async def send(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self.ws.send_text(text)
        except Exception:  # the client went away; the receive loop ends the call
            self._closed = True

    async def refuse_message(self, code: str, text: str) -> None:
        self.node.metrics.dropped_frames.labels(f"webrtc_{code}").inc()
        log.info("webrtc signal: %s: %s", code, text[:200])
        await self.send(error_message(code, text))

    def end(self, reason: EndReason | None) -> None:
        if self._reason is None and reason is not None:
            self._reason = reason
        self._ended.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- AudioPort: the agent's track ---------------------------------------------------------

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        if self.track is not None:
            await self.track.play(pcm)

    async def mark(self, name: str) -> None:
        if self.track is not None:
            await self.track.mark(name)

    async def clear(self) -> None:
        if self.track is not None:
            await self.track.clear()

    # ---- the call's life (run_call drives it) -------------------------------------------------

    async def accept(self) -> bool:
        await self.ws.accept()
        return True

    async def refuse(self, why: str) -> None:
        await self.refuse_message("busy", "this media node is not taking calls now; try again")
        if not self._greeted:
            await self._close_socket(CLOSE_TRY_AGAIN)

    async def identify(self, node: MediaNode) -> CallIdentity | None:
        """Authorise the socket, then take offers until one is answered and its media
        connection is up; None when the call ends first."""
        try:
            self.claims = authorize(self.ws.query_params.get("token", ""), node.settings)
        except TokenError as exc:
            await self.refuse_message("unauthorized", str(exc))
            await self._close_socket(CLOSE_POLICY)
            return None
        await self.send(message("hello", ice_servers=browser_ice_servers(node.settings)))
        self._greeted = True
        self._forwarder = asyncio.create_task(self._forward_events(), name="webrtc-events")
        self._spawn(self._receive(), "webrtc-signal-receive")
        self._spawn(self._negotiation_watchdog(), "webrtc-negotiation")
        connected = asyncio.create_task(self._connected.wait())
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait({connected, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            ended.cancel()
        return self._identity if not self._ended.is_set() else None

    def trace_context(self) -> Mapping[str, str]:
        # A page that started the call in a trace hands its context over in the signalling URL
        # (?traceparent=...).
        return {k: v for k, v in self.ws.query_params.items() if k == tracing.TRACEPARENT}

    def on_event(self, event: SessionEvent) -> None:
        self._outbox.put_nowait(event)

    def _played(self, event: Played) -> None:
        """The track's playback progress, for the session. It is bound before anything is played:
        run_call hands the session to serve right after starting it, before the greeting's
        task has run at all."""
        if self.session is not None:
            self.session.on_playback(event)

    async def serve(self, session: CallSession) -> EndReason:
        self.session = session
        assert self._remote_audio is not None
        self._spawn(pump_caller_audio(self._remote_audio, session.on_audio), "webrtc-caller-in")
        await self._ended.wait()
        await self._stop_inputs()  # what the caller said so far is already in the session
        return self._reason or "caller_hung_up"

    async def hang_up(self) -> None:
        """The session's hang-up (agent ended, transferred, shutdown): it set its own reason."""
        self.end(None)

    async def close(self, session: CallSession | None, reason: EndReason) -> None:
        self.end(None)
        await self._stop_inputs()
        try:
            if session is not None and self.session is None:  # it never got to serve
                await self.refuse_message("call_failed", "the call could not start")
            if self._forwarder is not None:
                self._outbox.put_nowait(None)  # the events emitted so far, then stop
                with contextlib.suppress(Exception):
                    await self._forwarder
            if self._greeted:
                outcome = session.outcome if session is not None else None
                disposition = outcome.disposition if outcome is not None else None
                await self.send(message("ended", reason=reason, disposition=disposition))
        finally:
            await self._drop_peer()
            await self._close_socket(CLOSE_NORMAL)

    async def _stop_inputs(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- the client's messages ----------------------------------------------------------------

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
                    await self.refuse_message(exc.code, exc.message)
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
            await self.refuse_message("timeout", "no offer received in time")
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
        if any(call.call_id == identity.call_id for call in node.calls):
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
        self.track = AgentAudioTrack(on_playback=self._played)
        try:
            up = await self._negotiate(pc, offer, identity)
        except BaseException:
            await self._drop_peer()  # the client may try again with a better offer
            raise
        self._spawn(self._connect(pc, identity, up), f"webrtc-{identity.call_id}")

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

    async def _negotiate(
        self, pc: RTCPeerConnection, offer: Offer, identity: CallIdentity
    ) -> asyncio.Event:
        """Answer ``offer``; the event is set once the media connection is up."""
        assert self.track is not None
        up = asyncio.Event()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._remote_audio is None:
                self._remote_audio = track

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                up.set()
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
        return up

    async def _connect(
        self, pc: RTCPeerConnection, identity: CallIdentity, up: asyncio.Event
    ) -> None:
        """Until ICE and DTLS are up (then the call is identified), or give up."""
        try:
            await asyncio.wait_for(up.wait(), self.node.settings.webrtc_connect_timeout_s)
        except TimeoutError:
            pass
        if self._ended.is_set():
            return
        if pc.connectionState != "connected":
            await self.refuse_message("ice_failed", "the media connection could not be established")
            self.end("error")
            return
        self._identity = identity
        self._connected.set()

    # ---- metadata out -------------------------------------------------------------------------

    async def _forward_events(self) -> None:
        """The call's events and the agent's activity, in the order the session emitted them."""
        while (event := await self._outbox.get()) is not None:
            if isinstance(event, AgentActivity):
                if event.activity != self._activity:
                    self._activity = event.activity
                    await self.send(message("agent.activity", activity=event.activity))
                continue
            payload = event.payload.model_dump(mode="json")
            kind = str(payload.pop("type"))
            await self.send(message(kind, **payload))

    async def _close_socket(self, code: int) -> None:
        self._closed = True
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code)


async def serve_webrtc_signal(
    websocket: WebSocket, node: MediaNode, registry: PeerRegistry
) -> None:
    await run_call(SignalSession(websocket, node, registry), node)
