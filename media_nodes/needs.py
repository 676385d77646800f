"""What a deployed media node (``parley media serve``) reads from its environment.

infra/pulumi builds the media-node Deployment's environment and secret grants from this.
"""

from __future__ import annotations

from shared.settings import EVERY_PROCESS, KAFKA, QDRANT, REDIS, TRACING, Needs

MEDIA_NODE_NEEDS = (
    EVERY_PROCESS
    | REDIS  # the node registry the voice webhook picks from
    | KAFKA  # call events
    | QDRANT  # the agents' knowledge bases
    | TRACING
    | Needs.of(
        # Twilio's REST API redirects a call the agent escalates to a person.
        secrets=["PARLEY_LLM_API_KEY", "PARLEY_TWILIO_AUTH_TOKEN"],
        settings=[
            "PARLEY_TWILIO_ACCOUNT_SID",
            "PARLEY_ALLOW_UNSIGNED_STREAMS",
            "PARLEY_MEDIA_PUBLIC_URL",
            "PARLEY_MEDIA_MAX_CALLS",
            "PARLEY_NODE_ID",
            "PARLEY_SHUTDOWN_GRACE_S",
            "PARLEY_RECORDING_STORE",
            "PARLEY_LLM_BASE_URL",
            "PARLEY_LLM_MODEL",
        ],
    )
)
