"""The lost-call sweep as a scheduled Lambda (EventBridge, on the functions' schedule).

In AWS the consumer is a Lambda driven by its MSK event source: it has no timer, so the sweep
that ``parley events consume`` runs between batches runs here instead, with the same rules
(:mod:`functions.consumer.lost_calls`). The node registry is read from Redis, so a call whose
media node stopped beating is closed as ``media_node_lost``.
``functions.consumer.lost_calls_lambda.handler``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.app import _ensure_event_loop
from functions.common.observability import logger, metrics
from functions.common.runtime import runtime
from functions.consumer.lost_calls import LostCallSweeper
from shared.settings import EVERY_PROCESS, REDIS

NEEDS = EVERY_PROCESS | REDIS  # the node registry says which media nodes are alive


async def sweep() -> list[tuple[str, str]]:
    """Close the lost calls once; (call id, end reason) of each closed now."""
    rt = runtime()
    return await LostCallSweeper(await rt.pool(), rt.registry()).sweep()


@logger.inject_lambda_context
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _ensure_event_loop()
    closed = asyncio.get_event_loop().run_until_complete(sweep())
    logger.info("lost-call sweep", closed=len(closed))
    metrics.add_metric(name="LostCallsClosed", unit=MetricUnit.Count, value=len(closed))
    return {"closed": [call_id for call_id, _ in closed]}


__all__ = ["handler", "sweep"]
