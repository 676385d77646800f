"""Settings of the functions: Parley's shared settings plus the few only the API needs."""

from __future__ import annotations

from ipaddress import ip_network

from pydantic import Field, field_validator

from shared.settings import Settings


class FunctionSettings(Settings):
    public_base_url: str = Field(
        "",
        description=(
            "Public base URL of the API (https://host/stage) as Twilio sees it; empty rebuilds it "
            "from each request (Host, the proxy's X-Forwarded-Proto, API Gateway stage)."
        ),
    )
    trusted_proxies: list[str] = Field(
        [],
        description=(
            "Addresses or CIDRs (JSON list) of the proxies whose X-Forwarded-Host and "
            "X-Forwarded-Proto are believed; empty believes none."
        ),
    )
    jobs_key_prefix: str = Field(
        "parley:jobs:",
        description="Prefix of the job scheduler's Redis keys (Celery broker queues, beat lock).",
    )
    jobs_visibility_timeout_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds a task taken by a worker stays invisible to others; a worker that died "
            "without acknowledging it gives it back to the queue after this."
        ),
    )
    campaign_tick_s: float = Field(
        2.0, gt=0, description="Seconds between two dispatch rounds of the running campaigns."
    )
    campaign_dial_stale_s: float = Field(
        120.0,
        gt=0,
        description=(
            "Seconds a claimed dial may go without any word of its call (no Call SID, no "
            "callback) before the attempt is lost: Twilio never had it, and the contact is "
            "dialled again as a new attempt."
        ),
    )
    campaign_tenant_max_concurrency: int = Field(
        20, gt=0, description="Campaign calls a tenant may have at once unless its limit is set."
    )
    retention_purge_interval_s: float = Field(
        3600.0, gt=0, description="Seconds between two runs of the per-tenant retention purge."
    )
    webhook_sweep_s: float = Field(
        1.0, gt=0, description="Seconds between two sweeps for due webhook deliveries."
    )
    webhook_lease_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds a swept webhook delivery belongs to the task sent for it; after that a "
            "later sweep sends it again (a task lost with its worker)."
        ),
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a webhook receiver has to answer one POST."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, description="Attempts before a webhook delivery goes to the dead-letter list."
    )
    webhook_retry_base_s: float = Field(
        30.0, gt=0, description="Seconds before a failed webhook delivery's second attempt."
    )
    webhook_retry_factor: float = Field(
        3.0, ge=1, description="Each further retry of a webhook delivery waits this much longer."
    )
    webhook_retry_max_s: float = Field(
        3600.0, gt=0, description="The longest wait between two attempts of a webhook delivery."
    )
    analysis_sweep_s: float = Field(
        5.0, gt=0, description="Seconds between two sweeps for calls waiting for their analysis."
    )
    analysis_lease_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds a swept analysis request belongs to the task sent for it; after that a "
            "later sweep sends it again (a task lost with its worker)."
        ),
    )
    analysis_max_attempts: int = Field(
        5, ge=1, description="Tries of one call's analysis before it is given up with its error."
    )
    analysis_llm_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds the LLM has for each part of a call's analysis (off the call's path).",
    )
    webhook_secret_overlap_s: float = Field(
        86400.0,
        ge=0,
        le=7 * 86400,
        description=(
            "Seconds a rotated webhook secret keeps signing deliveries beside the new one "
            "(POST /v1/webhooks/{id}/secret may choose another overlap)."
        ),
    )
    export_store: str = Field(
        "",
        description=(
            "Where export jobs (POST /v1/exports) write their files: empty = data_dir/exports, "
            "an absolute path, file://PATH, or s3://bucket/prefix."
        ),
    )
    export_ttl_s: float = Field(
        86400.0,
        gt=0,
        le=7 * 86400,
        description="Seconds a finished export's file can be downloaded before it is deleted.",
    )
    export_lease_s: float = Field(
        900.0,
        gt=0,
        description=(
            "Seconds an export job belongs to the worker that took it; after that (the worker "
            "died) the sweep gives it to another."
        ),
    )

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("export_store")
    @classmethod
    def _export_store(cls, value: str) -> str:
        if value and not value.startswith(("s3://", "file://", "/")):
            raise ValueError("must be empty, an absolute path, file://... or s3://bucket/prefix")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"'{entry}' is not an IP address or CIDR") from None
        return value
