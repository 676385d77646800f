"""What each Lambda is: its handler in the repo's ``functions/`` package, routes and needs.

This table is the one place to edit when ``functions/`` gains or renames a function. Routes follow
issue #5; API Gateway picks the most specific route, so the admin API's catch-all ``/v1/{proxy+}``
never shadows the analytics or outbound-call routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONSUMER_GROUP = "parley-event-consumer"


@dataclass(frozen=True)
class LambdaSpec:
    name: str
    handler: str  # module.attribute, importable from the repo root
    routes: tuple[str, ...] = ()  # API Gateway HTTP API route keys
    secrets: tuple[str, ...] = ()  # Parley settings read from Secrets Manager
    produces: bool = False  # writes events to Kafka
    consumes: bool = False  # MSK event source mapping
    reads_recordings: bool = False  # pre-signed recording links
    scheduled: bool = False  # runs on functions.rollupSchedule
    memory_mb: int | None = None  # None: functions.memoryMb
    environment: dict[str, str] = field(default_factory=dict)


LAMBDAS = (
    LambdaSpec(
        name="voice",
        handler="functions.voice.app.handler",
        routes=("POST /twilio/voice", "POST /twilio/status"),
        secrets=(
            "PARLEY_DATABASE_URL",
            "PARLEY_REDIS_URL",  # media-node registry: pick a healthy node with capacity
            "PARLEY_TWILIO_AUTH_TOKEN",  # webhook signatures
            "PARLEY_SESSION_TOKEN_SECRET",  # signs the media-stream session token
        ),
    ),
    LambdaSpec(
        name="transfer",
        handler="functions.transfer.app.handler",
        routes=("POST /v1/calls/outbound", "POST /v1/calls/{call_id}/transfer"),
        secrets=("PARLEY_DATABASE_URL", "PARLEY_TWILIO_AUTH_TOKEN"),
    ),
    LambdaSpec(
        name="admin",
        handler="functions.admin.app.handler",
        routes=("ANY /v1/{proxy+}", "GET /docs", "GET /openapi.json"),
        secrets=("PARLEY_DATABASE_URL", "PARLEY_REDIS_URL", "PARLEY_QDRANT_API_KEY"),
        memory_mb=1024,  # embeds uploaded knowledge documents (MiniLM on onnxruntime)
    ),
    LambdaSpec(
        name="analytics",
        handler="functions.analytics.app.handler",
        routes=(
            "GET /v1/calls",
            "GET /v1/calls/{call_id}",
            "GET /v1/calls/{call_id}/recording",
            "GET /v1/dispositions/summary",
            "GET /v1/intents/summary",
            "GET /v1/latency/summary",
        ),
        secrets=("PARLEY_DATABASE_URL",),
        reads_recordings=True,  # pre-signed recording links
    ),
    LambdaSpec(
        name="consumer",
        handler="functions.consumer.lambda_handler.handler",
        secrets=("PARLEY_DATABASE_URL",),
        produces=True,  # poison events go to the dead-letter topic
        consumes=True,
    ),
    LambdaSpec(
        name="rollups",
        handler="functions.analytics.compaction.handler",  # folds updates into daily rollups
        secrets=("PARLEY_DATABASE_URL",),
        scheduled=True,
    ),
)
