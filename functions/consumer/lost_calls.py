"""Closing calls whose media node died mid-call (crash, OOM kill, node lost), which no
``call.ended`` will ever close. Runs in the long-running consumer on a timer (``parley events
consume --lost-call-sweep-s``); every consumer process may run it, the closing is one idempotent
statement.

A call is lost when it has no end (no ``call.ended``: ``end_reason`` is empty) and either

- its node is gone from the node registry (the heartbeat expired) and nothing was heard from the
  call for ``node_grace_s``: closed with end reason ``media_node_lost``; or
- nothing was heard from it for ``silent_after_s`` whatever the registry says (also the only rule
  when there is no registry): end reason ``events_stopped``.

"Heard" is the newest of the call's stored events (their receive time, so a backlog delayed by a
Kafka outage does not count as silence). The closing sets ``status`` completed (what Twilio
reports once the media stream is gone), ``ended_at`` to the last event, ``duration_ms`` from the
answer to it, the disposition ``call_lost`` unless the call already had one, and ``lost_at``.

Precedence afterwards: the closing stays. Late events from the node's spool are stored
(``call_events``, turns, intents: the record only grows) but a late ``disposition.set`` or
``call.ended`` does not override it; the late ``call.ended`` remains in ``call_events``. The
closing asks for the call's analysis, as a ``call.ended`` would. A Twilio
status callback cannot contradict it: statuses only move forward and the call is already at the
terminal rank; the callback is still recorded in ``call_status_events``. A call that Twilio
already reported completed but that never got its ``call.ended`` is closed the same way (its
status and end time stay Twilio's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from functions.analysis.store import request_for_calls
from shared.cache.registry import NodeRegistry

log = logging.getLogger(__name__)

NODE_LOST = "media_node_lost"
EVENTS_STOPPED = "events_stopped"
LOST_DISPOSITION = "call_lost"


async def close_lost_calls(
    pool: AsyncConnectionPool[Any],
    live_nodes: set[str] | None,
    *,
    node_grace_s: float = 60.0,
    silent_after_s: float = 7200.0,
) -> list[tuple[str, str]]:
    """Close the lost calls once; ``live_nodes`` None means the registry is unknown (only the
    silence rule applies). Returns (call id, end reason) of the calls closed now."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(
            """WITH open AS (SELECT call_id, node_id FROM calls
                             WHERE end_reason IS NULL AND lost_at IS NULL),
                    heard AS (SELECT o.call_id, o.node_id,
                                     max(e.received_at) AS received, max(e.occurred_at) AS at
                              FROM open o JOIN call_events e USING (call_id)
                              GROUP BY o.call_id, o.node_id),
                    lost AS (SELECT call_id, at, CASE
                                 WHEN received < now() - make_interval(secs => %(silent)s)
                                     THEN %(stopped)s
                                 ELSE %(node_lost)s END AS reason
                             FROM heard
                             WHERE received < now() - make_interval(secs => %(silent)s)
                                OR (%(known)s AND node_id IS NOT NULL
                                    AND NOT (node_id = ANY(%(live)s))
                                    AND received < now() - make_interval(secs => %(grace)s)))
               UPDATE calls c SET
                   status = CASE WHEN c.status_rank < 3 THEN 'completed' ELSE c.status END,
                   status_rank = 3,
                   ended_at = COALESCE(c.ended_at, lost.at),
                   duration_ms = COALESCE(c.duration_ms, GREATEST(0, (extract(epoch FROM
                       lost.at - COALESCE(c.answered_at, c.started_at)) * 1000)::integer)),
                   end_reason = lost.reason,
                   disposition = COALESCE(c.disposition, %(disposition)s),
                   lost_at = now(),
                   updated_at = now()
               FROM lost
               WHERE c.call_id = lost.call_id AND c.end_reason IS NULL AND c.lost_at IS NULL
               RETURNING c.call_id, c.end_reason""",
            {
                "silent": silent_after_s,
                "grace": node_grace_s,
                "known": live_nodes is not None,
                "live": sorted(live_nodes or ()),
                "stopped": EVENTS_STOPPED,
                "node_lost": NODE_LOST,
                "disposition": LOST_DISPOSITION,
            },
        )
        closed = [(str(c), str(r)) for c, r in await cur.fetchall()]
        # A lost call is over too: it waits for its analysis like one that ended (and a late
        # call.ended from the node's spool asks for none more).
        await request_for_calls(conn, [c for c, _ in closed])
    for call_id, reason in closed:
        log.warning("call %s closed as lost (%s)", call_id, reason)
    return closed


class LostCallSweeper:
    """Runs :func:`close_lost_calls` every ``every_s`` seconds until stopped."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        registry: NodeRegistry | None,
        *,
        every_s: float = 30.0,
        node_grace_s: float = 60.0,
        silent_after_s: float = 7200.0,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.every_s = every_s
        self.node_grace_s = node_grace_s
        self.silent_after_s = silent_after_s
        self.closed = 0

    async def sweep(self) -> list[tuple[str, str]]:
        live: set[str] | None = None
        if self.registry is not None:
            try:
                live = {n.node_id for n in await self.registry.nodes()}
            except Exception as exc:  # registry down: only the silence rule is safe
                log.warning("node registry unreadable (%s); only silent calls are closed", exc)
        closed = await close_lost_calls(
            self.pool, live, node_grace_s=self.node_grace_s, silent_after_s=self.silent_after_s
        )
        self.closed += len(closed)
        return closed

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("lost-call sweep failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                continue
