"""A scheduled Lambda (EventBridge, e.g. every minute): fold pending analytics rollup deltas into
the daily rollups so summaries keep reading few rows. ``functions.analytics.compaction.handler``."""

from __future__ import annotations

import asyncio
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.app import _ensure_event_loop
from functions.common.db import db, fetch_one
from functions.common.observability import logger, metrics
from shared.settings import EVERY_PROCESS

NEEDS = EVERY_PROCESS


async def compact() -> bool:
    """True if this run compacted, False if another compaction was already running."""
    async with db() as conn:
        row = await fetch_one(conn, "SELECT parley_compact_rollups() AS done")
    return bool(row and row["done"])


@logger.inject_lambda_context
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _ensure_event_loop()
    done = asyncio.get_event_loop().run_until_complete(compact())
    logger.info("rollup compaction", compacted=done)
    metrics.add_metric(name="RollupCompactions", unit=MetricUnit.Count, value=1 if done else 0)
    return {"compacted": done}


__all__ = ["compact", "handler"]
