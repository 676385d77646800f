"""What a deployed media node (``parley media serve``) reads from its environment.

infra/pulumi builds the media-node Deployment's environment and secret grants from this.
"""

from __future__ import annotations

from shared.settings import EVERY_PROCESS, KAFKA, QDRANT, REDIS, Needs

MEDIA_NODE_NEEDS = (
    EVERY_PROCESS
    | REDIS  # the node registry the voice webhook picks from
    | KAFKA  # call events
    | QDRANT  # the agents' knowledge bases
    | Needs.of(
        secrets=["PARLEY_LLM_API_KEY"],
        settings=[
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
