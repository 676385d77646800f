"""Request and response bodies of the admin API (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from functions.common.auth import Scope

E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+15559870000"])]
AgentIdField = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
TenantIdField = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ZONES = frozenset(available_timezones())


def _zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError("not an IANA time zone name (e.g. Europe/Berlin, America/New_York)")
    return name


TimeZoneName = Annotated[
    str,
    Field(max_length=64, examples=["America/New_York"]),
    AfterValidator(_zone),
]
CallRetention = Annotated[
    int | None,
    Field(
        ge=1,
        le=36500,
        description="Delete calls (transcript, recording, events) that started longer ago; "
        "null keeps them.",
    ),
]


class Prices(Body):
    """What a call costs, per unit used; the aggregates and calls report the amounts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    per_minute: float = Field(0.0, ge=0, description="Per minute of call (telephony).")
    per_asr_minute: float = Field(0.0, ge=0, description="Per minute of caller speech recognised.")
    per_1k_tts_chars: float = Field(0.0, ge=0, description="Per 1,000 characters spoken.")
    per_1k_llm_tokens: float = Field(0.0, ge=0, description="Per 1,000 LLM tokens.")


class TenantSettings(Body):
    timezone: TimeZoneName = Field(
        "UTC", description="Days and weeks of the analytics; dates without an offset."
    )
    call_retention_days: CallRetention = None
    prices: Prices = Field(default_factory=Prices)
    recording_enabled: bool = Field(False, description="Record every call of the tenant.")
    recording_retention_days: int = Field(30, ge=1, le=3650, description="Keep recordings for.")
    redact_pii: bool = Field(True, description="Redact card numbers and the like in transcripts.")
    overflow_number: E164 | None = Field(
        None, description="Where calls go when no media node has capacity (else a polite hangup)."
    )


class SettingsReplace(Body):
    """All settings at once: a full replacement, so every field is required (PATCH changes some).

    Strict types: ``"no"``, ``0`` or ``"false"`` are not booleans here.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    recording_enabled: bool = Field(description="Record every call of the tenant.")
    recording_retention_days: int = Field(ge=1, le=3650, description="Keep recordings for.")
    redact_pii: bool = Field(description="Redact card numbers and the like in transcripts.")
    overflow_number: E164 | None = Field(
        description="Where calls go when no media node has capacity (null: a polite hangup)."
    )
    timezone: TimeZoneName = Field("UTC", description="Analytics days and weeks (default UTC).")
    call_retention_days: CallRetention = None
    prices: Prices = Field(default_factory=Prices, description="Default: every price 0.")
    confirm_redaction_off: bool = Field(
        False,
        description="Must be true in the request that turns redact_pii off (an audited action).",
    )


class SettingsUpdate(Body):
    """The settings to change; those not sent keep their value. Strict types, as for PUT."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recording_enabled: bool | None = None
    recording_retention_days: int | None = Field(None, ge=1, le=3650)
    redact_pii: bool | None = None
    overflow_number: E164 | None = Field(None, description="null removes the overflow number.")
    timezone: TimeZoneName | None = None
    call_retention_days: CallRetention = None
    prices: Prices | None = None
    confirm_redaction_off: bool = Field(
        False,
        description="Must be true in the request that turns redact_pii off (an audited action).",
    )


class TenantCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    tenant_id: TenantIdField | None = Field(None, description="Chosen id; generated if absent.")


class TenantOut(BaseModel):
    tenant_id: str
    name: str
    settings: TenantSettings
    created_at: datetime


def _read_only() -> list[Scope]:
    return ["read"]


class KeyCreate(Body):
    name: str = Field("", max_length=200)
    scopes: list[Scope] = Field(default_factory=_read_only, min_length=1, max_length=4)


class KeyOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class CreatedKey(KeyOut):
    key: str = Field(description="The secret API key. Shown only now: store it safely.")


class TenantCreated(BaseModel):
    tenant: TenantOut
    api_key: CreatedKey


class AgentUpload(Body):
    definition: dict[str, Any] | None = Field(None, description="The definition as JSON.")
    yaml: str | None = Field(None, max_length=2_000_000, description="Or as YAML/JSON text.")
    activate: bool = Field(True, description="Make the new version the one calls use.")

    @model_validator(mode="after")
    def _one_source(self) -> AgentUpload:
        if (self.definition is None) == (self.yaml is None):
            raise ValueError("send exactly one of 'definition' or 'yaml'")
        return self


class Problem(BaseModel):
    field: str
    line: int | None = None
    message: str


class ValidationResult(BaseModel):
    valid: bool
    agent_id: str | None = None
    problems: list[Problem] = Field(default_factory=list)


class AgentVersionRef(BaseModel):
    version: int
    created_at: datetime


class AgentOut(BaseModel):
    agent_id: str
    name: str
    active_version: int | None
    latest_version: int | None
    recording: bool
    updated_at: datetime


class AgentDetail(AgentOut):
    versions: list[AgentVersionRef]


class AgentVersionOut(BaseModel):
    agent_id: str
    version: int
    active: bool
    definition: dict[str, Any]
    created_at: datetime


class Activate(Body):
    version: int = Field(ge=1, le=1_000_000)


class RecordingSetting(Body):
    enabled: bool


class NumberAssign(Body):
    agent_id: AgentIdField


class NumberOut(BaseModel):
    number: str
    agent_id: str
    created_at: datetime


DocumentFormat = Literal["text", "markdown", "pdf_text"]


class DocumentUpload(Body):
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=1_000_000, description="Plain text or Markdown.")
    format: DocumentFormat = Field(
        "text", description="text, markdown, or pdf_text (text extracted from a PDF)."
    )


class DocumentOut(BaseModel):
    document_id: str
    agent_id: str
    title: str
    content_type: str
    chunk_count: int
    created_at: datetime


class Deletion(BaseModel):
    calls: int = Field(description="Calls deleted (with transcripts, events, derived rows).")
    recordings: int = Field(description="Recordings removed from storage.")
    call_ids: list[str]


class AuditEntry(BaseModel):
    entry_id: int
    key_id: str = Field(description="The API key that acted ('retention': the purge).")
    action: str
    detail: dict[str, Any]
    at: datetime


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before: int | None = Field(description="Pass as ?before= for older entries.")
