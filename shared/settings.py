"""Parley's settings: environment variables prefixed ``PARLEY_``, validated by pydantic-settings.

With nothing configured every value falls back to an embedded default: an in-process bus and
cache, Qdrant in local mode, no LLM. The database URL defaults to the loopback PostgreSQL that
``scripts/services start postgres`` runs (``make demo`` starts it for you).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar, overload

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

ENV_PREFIX = "PARLEY_"
DEV_SESSION_SECRET = "dev-insecure-session-secret-change-me"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329/parley"


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="ignore", validate_default=True
    )

    env: Literal["development", "test", "production"] = Field(
        "development", description="Deployment environment; production turns off dev shortcuts."
    )
    data_dir: Path = Field(
        Path(".parley"), description="Folder for local state: recordings, spool, Qdrant, caches."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    opensearch_url: str = Field(
        "http://127.0.0.1:19200",
        description="OpenSearch that `parley logs` searches (scripts/services start opensearch).",
    )
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP base URL traces are exported to (a collector, Jaeger); "
        "empty exports none.",
    )

    # Servers. Empty means the embedded in-process implementation.
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="PostgreSQL URL (psycopg conninfo).",
    )
    database_pool_max: int = Field(10, ge=1, le=200, description="Max connections per process.")
    redis_url: str = Field("", description="Redis URL; empty uses the in-process cache.")
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers (host:port,...); empty uses the in-process bus."
    )
    kafka_topic_prefix: str = Field("parley", description="Prefix of every Kafka topic.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol (MSK uses SSL or SASL_SSL)."
    )
    kafka_sasl_mechanism: Literal["", "AWS_MSK_IAM"] = Field(
        "", description="Kafka SASL auth: empty for none, AWS_MSK_IAM for MSK with IAM roles."
    )
    qdrant_url: str = Field("", description="Qdrant server URL; empty uses embedded local mode.")
    qdrant_api_key: SecretStr | None = Field(None, description="Qdrant API key for a server.")

    # Security.
    session_token_secret: SecretStr = Field(
        SecretStr(DEV_SESSION_SECRET),
        description="HMAC key signing media-stream session tokens (webhook -> media node).",
    )
    session_token_ttl_s: int = Field(120, ge=5, le=3600, description="Session token lifetime.")
    allow_unsigned_streams: bool = Field(
        True, description="Accept media streams without a session token (development only)."
    )
    twilio_auth_token: SecretStr | None = Field(
        None, description="Twilio auth token for webhook signature validation and REST calls."
    )
    twilio_account_sid: str = Field("", description="Twilio account SID for REST calls.")
    twilio_api_base: str = Field(
        "https://api.twilio.com", description="Twilio REST base URL (tests point it at a fake)."
    )

    # Media node.
    media_public_url: str = Field(
        "ws://127.0.0.1:8765", description="Base URL Twilio uses to reach this media node."
    )
    media_max_calls: int = Field(12, ge=1, le=1000, description="Concurrent calls per media node.")
    node_id: str = Field("", description="Media node id in the registry; empty derives one.")
    node_registry_ttl_s: float = Field(
        15.0, ge=1, le=300, description="A node missing heartbeats this long counts as lost."
    )
    asr_engine: str = Field(
        "auto",
        description="ASR engine by name (each is a module of media_nodes/asr/engines); auto "
        "picks faster-whisper.",
    )
    asr_model: Literal["tiny.en", "base"] = Field("tiny.en", description="Whisper model.")
    asr_model_path: Path | None = Field(
        None, description="Local CTranslate2 Whisper folder; overrides asr_model."
    )
    asr_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="ASR device.")
    asr_threads: int = Field(2, ge=1, le=64, description="CPU threads per ASR inference.")
    asr_concurrency: int = Field(2, ge=1, le=64, description="ASR inferences at once per process.")
    tts_engine: str = Field(
        "auto",
        description="TTS engine by name (each is a module of media_nodes/tts/engines); auto "
        "picks Piper when installed, else espeak-ng.",
    )
    endpoint_silence_ms: int = Field(
        400, ge=100, le=5000, description="Silence that ends a caller's turn."
    )
    end_of_turn_model: bool = Field(
        False,
        description="Ask the Smart Turn model at each pause whether the caller sounds finished: "
        "'incomplete' lengthens the wait (never past end_of_turn_cap_ms), 'complete' keeps "
        "endpoint_silence_ms (docs/media.md says why). Off by default: on bench/latency.py it "
        "lengthened more answers than it saved.",
    )
    room_noise_gate: bool = Field(
        True,
        description="In a room that sounds like speech (babble), count only windows well above "
        "the call's noise floor as the caller's voice: background talk neither barges in nor "
        "keeps a turn open.",
    )
    end_of_turn_cap_ms: int = Field(
        1400,
        ge=200,
        le=5000,
        description="Longest pause that does not end a turn, whatever "
        "the end-of-turn model or the dialogue says.",
    )
    speculative_asr_ms: int = Field(
        160, ge=0, le=5000, description="Silence after which ASR starts speculatively."
    )
    speculative_reply: bool = Field(
        True,
        description="Once the speculative transcript is in, decide the reply on a copy of the "
        "dialogue and synthesize its first words while the endpoint wait runs; played at once "
        "when the turn is confirmed, dropped without a trace when the caller goes on. Actions "
        "with outside effects (HTTP) still wait for the confirmed turn.",
    )
    barge_in_min_speech_ms: int = Field(
        128, ge=0, le=5000, description="Speech over the agent that stops its audio (held)."
    )
    backchannel_max_ms: int = Field(
        900,
        ge=0,
        le=10000,
        description="Held speech shorter than this, of backchannel words only, resumes the agent.",
    )
    backchannel_words: list[str] = Field(
        [
            "mm-hmm", "mhm", "mm", "mmm", "hmm", "uh-huh", "uh", "um", "ah", "oh", "yeah", "yes",
            "yep", "okay", "ok", "right", "sure", "alright", "i see", "got it", "go on",
        ],
        description="Backchannels (JSON list): said over the agent, they do not interrupt it.",
    )  # fmt: skip
    recording_store: str = Field(
        "", description="Where recordings go: empty = data_dir/recordings, or s3://bucket/prefix."
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, le=3600, description="On SIGTERM, how long active calls may finish."
    )

    # WebRTC (browser and app callers).
    webrtc_stun_urls: list[str] = Field(
        [], description="STUN servers for WebRTC ICE (JSON list of stun: URLs)."
    )
    webrtc_turn_urls: list[str] = Field(
        [], description="TURN servers for WebRTC ICE (JSON list of turn:/turns: URLs)."
    )
    webrtc_turn_username: str = Field("", description="Username for the TURN servers.")
    webrtc_turn_credential: SecretStr = Field(
        SecretStr(""), description="Credential for the TURN servers."
    )
    webrtc_loopback_ice: bool = Field(
        True,
        description="Offer 127.0.0.1 as an ICE host candidate (loopback-only hosts, tests).",
    )
    webrtc_connect_timeout_s: float = Field(
        15.0, gt=0, le=120, description="How long a WebRTC call may take to connect (ICE + DTLS)."
    )

    # Dialogue.
    llm_base_url: str = Field("", description="OpenAI-compatible base URL; empty disables the LLM.")
    llm_api_key: SecretStr = Field(SecretStr("none"), description="API key for the LLM server.")
    llm_model: str = Field("gpt-4o-mini", description="LLM model name.")
    llm_timeout_s: float = Field(3.0, gt=0, le=60, description="LLM call timeout before fallback.")
    intent_threshold: float = Field(
        0.5, ge=0, le=1, description="Min classifier confidence to accept an intent."
    )
    agents_dir: Path = Field(
        Path("examples/agents"), description="Folder of agent definitions for development."
    )
    default_agent: str = Field("acme-shop", description="Agent used by unsigned dev streams.")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in filter(None, (s.strip() for s in value.split(","))):
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"'{server}' is not host:port")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_scheme(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty or an http(s):// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("asr_engine", "tts_engine")
    @classmethod
    def _engine_name(cls, value: str) -> str:
        # Only the name's shape: the engines (one module each) live in the media node, which
        # refuses an unknown name when it starts; settings sit below it and cannot list them.
        if not value.isidentifier():
            raise ValueError(f"{value!r} is not an engine's name (a module name, or auto)")
        return value

    @field_validator("recording_store")
    @classmethod
    def _recording_store(cls, value: str) -> str:
        if value and not value.startswith(("s3://", "file://", "/")):
            raise ValueError("must be empty, an absolute path, file://... or s3://bucket/prefix")
        return value

    @field_validator("session_token_secret")
    @classmethod
    def _strong_secret_in_production(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("env") == "production" and (
            value.get_secret_value() == DEV_SESSION_SECRET or len(value.get_secret_value()) < 32
        ):
            raise ValueError("production needs a random secret of at least 32 characters")
        return value

    @model_validator(mode="after")
    def _explicit_database_in_production(self) -> Settings:
        # A deployed process that fell back to the loopback default would fail on its first query
        # (or worse, find some other database there): refuse to start instead.
        if self.env == "production" and self.database_url == DEFAULT_DATABASE_URL:
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_URL: production needs a database URL "
                f"(set it, or {ENV_PREFIX}DATABASE_URL{SECRET_ARN_SUFFIX})"
            )
        return self

    @property
    def production(self) -> bool:
        return self.env == "production"


SECRET_ARN_SUFFIX = "_SECRET_ARN"
SettingsT = TypeVar("SettingsT", bound=Settings)


@dataclass(frozen=True)
class Needs:
    """What a deployed component reads from its environment, by ``PARLEY_`` variable name.

    ``secrets`` arrive as ``PARLEY_X_SECRET_ARN`` (resolved at start by :func:`load_settings`);
    ``settings`` arrive as plain values. The deployment (infra/pulumi) gives each component
    exactly these, so a component declares here what its code reads, and nothing else.
    """

    secrets: frozenset[str] = frozenset()
    settings: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, secrets: Iterable[str] = (), settings: Iterable[str] = ()) -> Needs:
        return cls(frozenset(secrets), frozenset(settings))

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.secrets | other.secrets, self.settings | other.settings)

    def __post_init__(self) -> None:
        for variable in (*self.secrets, *self.settings):
            if not variable.startswith(ENV_PREFIX):
                raise ValueError(f"{variable} is not a {ENV_PREFIX} setting")
        if both := self.secrets & self.settings:
            raise ValueError(f"{sorted(both)} cannot be both a secret and a plain setting")


# Every deployed process: production refuses to start on the development session secret (see
# Settings) or without a database, so each one needs both, and must be told it is production.
EVERY_PROCESS = Needs.of(
    secrets=(f"{ENV_PREFIX}DATABASE_URL", f"{ENV_PREFIX}SESSION_TOKEN_SECRET"),
    settings=(f"{ENV_PREFIX}ENV", f"{ENV_PREFIX}DATA_DIR"),
)
KAFKA = Needs.of(
    settings=(
        f"{ENV_PREFIX}KAFKA_BOOTSTRAP",
        f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL",
        f"{ENV_PREFIX}KAFKA_SASL_MECHANISM",
    )
)
# Traces go to the collector beside each deployed process (see shared/tracing.py).
TRACING = Needs.of(settings=(f"{ENV_PREFIX}OTLP_ENDPOINT",))
REDIS = Needs.of(secrets=(f"{ENV_PREFIX}REDIS_URL",))
QDRANT = Needs.of(secrets=(f"{ENV_PREFIX}QDRANT_API_KEY",), settings=(f"{ENV_PREFIX}QDRANT_URL",))


class SecretNotFilled(LookupError):
    """The secret exists in Secrets Manager but no value was put in it yet."""


def read_secret(arn: str) -> str:
    """One secret's string from AWS Secrets Manager.

    boto3 finds the endpoint as everywhere else: the region's, or ``AWS_ENDPOINT_URL`` /
    ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` when set (a VPC endpoint, moto in server mode).
    """
    import boto3
    from botocore.exceptions import ClientError

    try:
        response = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        # Secrets Manager's words for an entry that exists but holds no version yet (a wrong
        # ARN is "can't find the specified secret." and stays an error).
        if error.get("Code") == "ResourceNotFoundException" and "staging label" in str(
            error.get("Message", "")
        ):
            raise SecretNotFilled(arn) from None
        raise
    if "SecretString" in response:
        return str(response["SecretString"])
    return bytes(response["SecretBinary"]).decode()


def resolve_secret_arns(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Fill ``PARLEY_X`` from AWS Secrets Manager for every ``PARLEY_X_SECRET_ARN`` set.

    Deployed workloads get secret ARNs, never values, in their environment (infra/pulumi); a
    value already set wins. Returns the variables filled.
    """
    env = os.environ if environ is None else environ
    wanted = {
        name.removesuffix(SECRET_ARN_SUFFIX): arn
        for name, arn in env.items()
        if name.startswith(ENV_PREFIX) and name.endswith(SECRET_ARN_SUFFIX) and arn
    }
    filled = []
    for name, arn in sorted(wanted.items()):
        if env.get(name):
            continue
        try:
            env[name] = read_secret(arn)
        except SecretNotFilled:
            # An optional secret the operator has not filled yet (the program creates every
            # entry; docs/deploy.md): its setting stays unset, as if it were not configured. A
            # required one then fails validation by its own name.
            log.warning("%s%s: secret %s has no value yet", name, SECRET_ARN_SUFFIX, arn)
            continue
        except Exception as exc:
            raise SettingsError(
                f"invalid settings:\n  {name}{SECRET_ARN_SUFFIX}: cannot read secret {arn}: {exc}"
            ) from None
        filled.append(name)
    return filled


@overload
def load_settings(**overrides: object) -> Settings: ...
@overload
def load_settings(model: type[SettingsT], /, **overrides: object) -> SettingsT: ...
def load_settings(model: type[Settings] = Settings, /, **overrides: object) -> Settings:
    """The one way every process (Lambda, consumer, media node, CLI) reads its settings.

    ``*_SECRET_ARN`` variables are resolved from Secrets Manager first; ``model`` is
    :class:`Settings` or a subclass adding a component's own settings. Raises
    :class:`SettingsError` naming each bad variable.
    """
    resolve_secret_arns()
    try:
        return model(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(message if not field else f"{ENV_PREFIX}{field.upper()}: {message}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
