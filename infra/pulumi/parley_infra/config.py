"""The stack's configuration: every ``parley:*`` key, validated before any resource is declared.

Each key is a field below (camelCase in ``Pulumi.<stack>.yaml``). A typo or a bad value fails the
program with one message naming every bad key, instead of a half-built stack. Differences between
stacks live only in the stack files: the code has no ``if prod`` branches.

Secrets (passwords, API keys) are not fields: they are Pulumi secrets read with
:func:`read_secrets`, so they stay encrypted in the stack file and in the state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

PROJECT = "parley"


class ConfigError(Exception):
    """The stack configuration is invalid; the message names each bad ``parley:`` key."""


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class NetworkConfig(_Section):
    vpc_cidr: IPv4Network = Field(
        IPv4Network("10.40.0.0/16"), description="VPC address range (a /16 is split into /20s)."
    )
    availability_zones: int = Field(
        2, ge=2, le=4, description="AZs used; RDS, Redis and MSK need at least two."
    )
    nat_gateway_per_az: bool = Field(
        False, description="One NAT gateway per AZ (true: survives an AZ outage) or one shared."
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _big_enough(cls, value: IPv4Network) -> IPv4Network:
        if value.prefixlen > 16:
            raise ValueError("must be a /16 or larger")
        return value


class DatabaseConfig(_Section):
    instance_class: str = Field("db.t4g.micro", description="RDS PostgreSQL instance class.")
    engine_version: str = Field("16", description="PostgreSQL major version.")
    allocated_storage_gb: int = Field(20, ge=20, le=65536, description="Initial gp3 storage.")
    max_allocated_storage_gb: int = Field(
        100, ge=20, le=65536, description="Storage autoscaling cap."
    )
    multi_az: bool = Field(False, description="Synchronous standby in a second AZ.")
    backup_retention_days: int = Field(1, ge=1, le=35, description="Automated backup retention.")
    deletion_protection: bool = Field(
        False, description="Refuse deletion (and keep a final snapshot)."
    )


class RedisConfig(_Section):
    node_type: str = Field("cache.t4g.micro", description="ElastiCache node type.")
    engine_version: str = Field("7.1", description="Redis engine version.")
    nodes: int = Field(
        1, ge=1, le=6, description="Nodes (primary + replicas); 2+ turns on failover."
    )
    snapshot_retention_days: int = Field(0, ge=0, le=35, description="Daily snapshots kept.")


class KafkaTopic(_Section):
    name: str = Field(description="Topic name.")
    partitions: int = Field(6, ge=1, le=1000, description="Partition count.")


class KafkaConfig(_Section):
    version: str = Field("3.8.x", description="MSK Kafka version.")
    broker_instance_type: str = Field("kafka.t3.small", description="MSK broker instance type.")
    brokers_per_az: int = Field(1, ge=1, le=10, description="Brokers in each AZ.")
    storage_gb: int = Field(20, ge=1, le=16384, description="EBS storage per broker.")
    replication_factor: int = Field(2, ge=1, le=5, description="Replicas of every topic.")
    topics: tuple[KafkaTopic, ...] = Field(
        (
            KafkaTopic(name="parley.call-events"),
            KafkaTopic(name="parley.call-events.dlq", partitions=1),
        ),
        description="Topics to create; the consumer Lambda reads consumerTopics.",
    )
    consumer_topics: tuple[str, ...] = Field(
        ("parley.call-events",), description="Topics the event-consumer Lambda reads."
    )
    consumer_batch_size: int = Field(500, ge=1, le=10000, description="Records per Lambda batch.")

    @model_validator(mode="after")
    def _consumer_topics_exist(self) -> KafkaConfig:
        missing = set(self.consumer_topics) - {topic.name for topic in self.topics}
        if missing:
            raise ValueError(f"consumerTopics not in topics: {sorted(missing)}")
        return self


class MediaConfig(_Section):
    image: str = Field(description="Media node image (ECR URI with tag or digest).")
    kubernetes_version: str = Field("1.33", description="EKS Kubernetes version.")
    node_instance_types: tuple[str, ...] = Field(
        ("c7i.xlarge",), description="Node instance types."
    )
    nodes_min: int = Field(2, ge=1, le=100, description="Node group minimum size.")
    nodes_desired: int = Field(2, ge=1, le=100, description="Node group initial size.")
    nodes_max: int = Field(4, ge=1, le=500, description="Node group maximum size.")
    replicas_min: int = Field(2, ge=1, le=500, description="HPA minimum media pods.")
    replicas_max: int = Field(4, ge=1, le=5000, description="HPA maximum media pods.")
    calls_per_pod: int = Field(
        10, ge=1, le=1000, description="PARLEY_MEDIA_MAX_CALLS per pod (bench/capacity.py)."
    )
    target_active_calls: int = Field(
        7, ge=1, le=1000, description="HPA target of parley_active_calls per pod."
    )
    cpu: str = Field("2", description="CPU request = limit per pod (bench/capacity.py).")
    memory: str = Field("2Gi", description="Memory request = limit per pod (models + calls).")
    drain_seconds: int = Field(
        300, ge=30, le=3600, description="How long a stopping pod lets active calls finish."
    )
    admin_cidrs: tuple[IPv4Network, ...] = Field(
        (), description="Networks allowed to reach the EKS API publicly; empty = private only."
    )

    @model_validator(mode="after")
    def _sizes_ordered(self) -> MediaConfig:
        if not self.nodes_min <= self.nodes_desired <= self.nodes_max:
            raise ValueError("need nodesMin <= nodesDesired <= nodesMax")
        if self.replicas_min > self.replicas_max:
            raise ValueError("need replicasMin <= replicasMax")
        if self.target_active_calls > self.calls_per_pod:
            raise ValueError("targetActiveCalls cannot exceed callsPerPod")
        return self


class FunctionsConfig(_Section):
    image: str = Field(
        description="Functions image (ECR URI with tag or digest) of functions.Dockerfile."
    )
    memory_mb: int = Field(512, ge=128, le=10240, description="Lambda memory.")
    timeout_s: int = Field(15, ge=3, le=900, description="Lambda timeout (Twilio waits 15 s).")
    rollup_schedule: str = Field("rate(5 minutes)", description="EventBridge schedule of rollups.")
    log_retention_days: int = Field(14, description="CloudWatch log retention.")
    throttle_rate: int = Field(100, ge=1, description="API Gateway steady requests per second.")
    throttle_burst: int = Field(200, ge=1, description="API Gateway burst.")


class ObservabilityConfig(_Section):
    alert_email: str = Field("", description="Email subscribed to the alerts topic; empty: none.")
    otel_collector_chart_version: str = Field(
        "0.109.0",
        description="opentelemetry-collector Helm chart: the trace collector every workload "
        "exports to (PARLEY_OTLP_ENDPOINT), writing to the log-search OpenSearch domain.",
    )
    prometheus_retention: str = Field("15d", description="Prometheus retention.")
    kube_prometheus_stack_version: str = Field("75.15.1", description="Helm chart version.")
    prometheus_adapter_version: str = Field("4.14.1", description="Helm chart version.")


class JobsConfig(_Section):
    image: str = Field("", description="Job worker image; empty uses the media node image.")
    workers_min: int = Field(1, ge=1, le=100, description="HPA minimum worker pods.")
    workers_max: int = Field(4, ge=1, le=500, description="HPA maximum worker pods.")
    concurrency: int = Field(4, ge=1, le=64, description="Task processes per worker pod.")
    target_queue_per_worker: int = Field(
        20, ge=1, le=10000, description="HPA target: waiting tasks per worker pod."
    )
    cpu: str = Field("500m", description="CPU request = limit per worker pod.")
    # Each task process that analyses calls holds the local MiniLM model (about 350 MB with its
    # imports, measured): four processes fit in 2 GiB.
    memory: str = Field("2Gi", description="Memory request = limit per worker pod.")

    @model_validator(mode="after")
    def _sizes_ordered(self) -> JobsConfig:
        if self.workers_min > self.workers_max:
            raise ValueError("need workersMin <= workersMax")
        return self


class StackConfig(_Section):
    environment: Literal["dev", "staging", "prod"] = Field(
        description="Stack role; sets PARLEY_ENV."
    )
    domain: str = Field(
        description="DNS zone for media.<domain> and grafana.<domain> (CNAMEs to the outputs)."
    )
    certificate_arn: str = Field(description="ACM certificate for *.<domain> (NLB TLS).")
    twilio_account_sid: str = Field("", description="Twilio account SID (not secret).")
    llm_base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible URL.")
    llm_model: str = Field("gpt-4o-mini", description="LLM model name.")
    qdrant_url: str = Field(
        "", description="Qdrant server URL for knowledge bases (PARLEY_QDRANT_URL)."
    )
    recording_retention_days: int = Field(30, ge=1, description="Days before recordings expire.")
    network: NetworkConfig = NetworkConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    kafka: KafkaConfig = KafkaConfig()
    media: MediaConfig
    functions: FunctionsConfig
    observability: ObservabilityConfig = ObservabilityConfig()
    jobs: JobsConfig = JobsConfig()

    @model_validator(mode="after")
    def _enough_brokers(self) -> StackConfig:
        brokers = self.kafka.brokers_per_az * self.network.availability_zones
        if self.kafka.replication_factor > brokers:
            raise ValueError(
                f"kafka.replicationFactor {self.kafka.replication_factor} "
                f"exceeds the {brokers} brokers"
            )
        return self

    @field_validator("certificate_arn")
    @classmethod
    def _is_acm_arn(cls, value: str) -> str:
        if not value.startswith("arn:aws:acm:"):
            raise ValueError("must be an ACM certificate ARN (arn:aws:acm:...)")
        return value


# Secrets the program reads with config.require_secret / get_secret (never plain values).
REQUIRED_SECRETS = ("databasePassword", "redisAuthToken", "grafanaAdminPassword")
OPTIONAL_SECRETS = ("twilioAuthToken", "openaiApiKey", "sessionTokenSecret", "qdrantApiKey")


@dataclass(frozen=True)
class StackSecrets:
    """Pulumi secret outputs; optional ones are None when not set (fill them in AWS later)."""

    database_password: pulumi.Output[str]
    redis_auth_token: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    twilio_auth_token: pulumi.Output[str] | None
    openai_api_key: pulumi.Output[str] | None
    session_token_secret: pulumi.Output[str] | None
    qdrant_api_key: pulumi.Output[str] | None


def _raw_value(config: pulumi.Config, key: str) -> Any:
    value = config.get(key)
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value  # a plain string such as a domain name
    return parsed if isinstance(parsed, dict | list) else value


def parse_stack_config(raw: dict[str, Any]) -> StackConfig:
    """Validate raw ``parley:`` values (camelCase keys); a bad one raises :class:`ConfigError`."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{PROJECT}:{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(problems)) from None


def load_stack_config() -> StackConfig:
    config = pulumi.Config(PROJECT)
    raw = {}
    for name, field in StackConfig.model_fields.items():
        key = field.alias or name
        value = _raw_value(config, key)
        if value is not None:
            raw[key] = value
    return parse_stack_config(raw)


def read_secrets() -> StackSecrets:
    config = pulumi.Config(PROJECT)
    missing = [key for key in REQUIRED_SECRETS if config.get_secret(key) is None]
    if missing:
        hints = "\n  ".join(f"pulumi config set --secret {key} <value>" for key in missing)
        raise ConfigError(f"missing required secrets; set them with:\n  {hints}")
    return StackSecrets(
        database_password=config.require_secret("databasePassword"),
        redis_auth_token=config.require_secret("redisAuthToken"),
        grafana_admin_password=config.require_secret("grafanaAdminPassword"),
        twilio_auth_token=config.get_secret("twilioAuthToken"),
        openai_api_key=config.get_secret("openaiApiKey"),
        session_token_secret=config.get_secret("sessionTokenSecret"),
        qdrant_api_key=config.get_secret("qdrantApiKey"),
    )
