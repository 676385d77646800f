"""One call's life, whatever carries it: :func:`run_call` is the only place a call starts and ends.

A transport (:class:`CallTransport`) knows its wire: how to open a connection, who is calling,
how to carry media and controls, how to close. :func:`run_call` owns everything else, in this
order, for every transport: accept; refuse when the node takes no calls; identify; open the
call's trace span; create the :class:`CallSession`, register it in ``node.calls`` and start it;
let the transport serve it until the call ends; then - always, whatever ended it - stop the
media, finish the session (transcript, disposition, recording saved), unregister it, count the
end, close the span and let the transport close.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from media_nodes.dialogue.protocol import EndReason
from media_nodes.pipeline.call import CallIdentity, CallSession
from media_nodes.pipeline.events import SessionEvent
from media_nodes.pipeline.node import MediaNode
from media_nodes.transports.port import AudioPort
from shared import tracing

log = logging.getLogger(__name__)


class CallTransport(AudioPort, Protocol):
    """A transport's side of a call; its :class:`AudioPort` is the call's audio."""

    async def accept(self) -> bool:
        """Open the connection; False when it cannot be used (the peer was told why)."""

    async def refuse(self, why: str) -> None:
        """The node takes no calls now (``why``: "draining" or "at capacity")."""

    async def identify(self, node: MediaNode) -> CallIdentity | None:
        """Wait until the call is known and its media can flow; None when there is no call
        (refused, or the peer went away: the transport has told it why)."""

    def trace_context(self) -> Mapping[str, str]:
        """What the peer handed over to continue a trace (W3C ``traceparent``), if anything."""

    def on_event(self, event: SessionEvent) -> None:
        """The session's events as they happen (call events, agent activity)."""

    async def serve(self, session: CallSession) -> EndReason:
        """Carry the call's media and controls to ``session`` until the call ends; why it ended
        on this side (the session's own reason, if it set one, takes precedence)."""

    async def hang_up(self) -> None:
        """Stop the media now: the agent ended the call, the node is shutting down, or the call
        is over. Called more than once; only the first does anything."""

    async def close(self, session: CallSession | None, reason: EndReason) -> None:
        """The end: the session (if one ran) is finished and saved; tell the peer, let go."""


async def run_call(transport: CallTransport, node: MediaNode) -> None:
    """Run one call on ``transport`` from the first byte to the last."""
    if not await transport.accept():
        return
    session: CallSession | None = None
    reason: EndReason = "caller_hung_up"
    try:
        identity = await _admit(transport, node)
        if identity is None:
            return
        span = tracing.start_call(
            identity.call_id,
            transport.trace_context(),
            **{
                "tenant.id": identity.tenant_id,
                "agent.id": identity.agent_id,
                "call.channel": identity.channel,
            },
        )
        session = CallSession(
            node, transport, identity, hangup=transport.hang_up, listener=transport.on_event
        )
        node.calls.add(session)
        try:
            await session.start()
            reason = await transport.serve(session)
        except LookupError as exc:  # no such agent for the tenant (removed since it was checked)
            log.error("call %s cannot start: %s", identity.call_id, exc)
            reason = "error"
        except Exception:
            log.exception("call %s failed", identity.call_id)
            reason = "error"
        finally:
            # The media first: the call is over, and the peer is owed that now, not after the
            # call is saved (transcribing its last words, handing its events to a slow broker).
            await transport.hang_up()
            try:
                await session.finish(reason)
            finally:
                node.calls.discard(session)
                reason = session.end_reason or reason
                node.metrics.calls_ended.labels(reason).inc()
                span.set_attribute("call.end_reason", reason)
                span.end()
    finally:
        await transport.close(session, reason)


async def _admit(transport: CallTransport, node: MediaNode) -> CallIdentity | None:
    """Who is calling, if the node takes the call; None when it does not (the peer was told)."""
    if not node.accepting():
        await transport.refuse("draining" if node.draining else "at capacity")
        return None
    try:
        identity = await transport.identify(node)
    except Exception:
        log.exception("call setup failed")
        return None
    if identity is not None and not node.accepting():  # filled up or began draining meanwhile
        await transport.refuse("draining" if node.draining else "at capacity")
        return None
    return identity
