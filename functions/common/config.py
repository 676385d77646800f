"""Settings of the functions: Parley's shared settings plus the few only the API needs."""

from __future__ import annotations

from pydantic import Field, field_validator

from shared.settings import Settings


class FunctionSettings(Settings):
    public_base_url: str = Field(
        "",
        description=(
            "Public base URL of the API (https://host/stage) as Twilio sees it; empty rebuilds it "
            "from each request (Host, X-Forwarded-Proto, API Gateway stage)."
        ),
    )

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")
