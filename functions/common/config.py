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

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
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
