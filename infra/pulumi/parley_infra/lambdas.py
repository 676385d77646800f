"""What each Lambda is: its handler in the repo's ``functions/`` package, its triggers and size.

What a Lambda *reads* and *answers* is not listed here: each handler's module declares its
``NEEDS`` (settings and secrets, :class:`shared.settings.Needs`) and, for an HTTP function, its
FastAPI ``app`` whose routes become the API Gateway routes. :func:`workload` asks the module, so
the deployed environment, secret grants and route table cannot drift from the code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from shared.settings import Needs

CONSUMER_GROUP = "parley-event-consumer"
# API Gateway sends a request no route matches to this function, so an unknown path gets the
# API's own error shape (a 404 from FastAPI) rather than API Gateway's.
DEFAULT_ROUTE_FUNCTION = "admin"
DEFAULT_ROUTE = "$default"


@dataclass(frozen=True)
class LambdaSpec:
    name: str
    handler: str  # module.attribute, importable from the repo root
    produces: bool = False  # writes events to Kafka
    consumes: bool = False  # MSK event source mapping
    reads_recordings: bool = False  # pre-signed recording links
    reads_exports: bool = False  # pre-signed links to export jobs' files
    scheduled: bool = False  # runs on functions.rollupSchedule (EventBridge)
    memory_mb: int | None = None  # None: functions.memoryMb


@dataclass(frozen=True)
class Workload:
    """What the handler's module declares: the settings it reads and the routes it answers."""

    needs: Needs
    routes: tuple[str, ...]


@cache
def workload(handler: str) -> Workload:
    from functions.common.app import route_keys

    module = importlib.import_module(handler.rpartition(".")[0])
    needs = getattr(module, "NEEDS", None)
    if not isinstance(needs, Needs):
        raise TypeError(f"{module.__name__} declares no NEEDS (shared.settings.Needs)")
    app = getattr(module, "app", None)
    routes = tuple(sorted(route_keys(app))) if app is not None else ()
    return Workload(needs, routes)


LAMBDAS = (
    LambdaSpec(name="voice", handler="functions.voice.app.handler"),
    LambdaSpec(name="transfer", handler="functions.transfer.app.handler"),
    LambdaSpec(
        name="admin",
        handler="functions.admin.app.handler",
        memory_mb=1024,  # embeds uploaded knowledge documents (MiniLM on onnxruntime)
    ),
    LambdaSpec(
        name="analytics",
        handler="functions.analytics.app.handler",
        reads_recordings=True,  # pre-signed recording links
        reads_exports=True,  # pre-signed links to the files of export jobs
    ),
    LambdaSpec(
        name="consumer",
        handler="functions.consumer.lambda_handler.handler",
        produces=True,  # poison events go to the dead-letter topic
        consumes=True,
    ),
    LambdaSpec(
        name="rollups",
        handler="functions.analytics.compaction.handler",  # folds updates into daily rollups
        scheduled=True,
    ),
    LambdaSpec(
        name="lostcalls",
        # closes calls whose media node died; the MSK-driven consumer has no timer to do it
        handler="functions.consumer.lost_calls_lambda.handler",
        scheduled=True,
    ),
)


def route_table() -> dict[str, str]:
    """Route key -> the Lambda answering it; a route two functions claim is an error."""
    table: dict[str, str] = {}
    for spec in LAMBDAS:
        for route in workload(spec.handler).routes:
            if route in table:
                raise ValueError(f"{route} is answered by both {table[route]} and {spec.name}")
            table[route] = spec.name
    table[DEFAULT_ROUTE] = DEFAULT_ROUTE_FUNCTION
    return table
