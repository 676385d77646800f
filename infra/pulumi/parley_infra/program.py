"""The whole stack: subsystems in dependency order, and the outputs a platform team needs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from . import traces
from .cluster import Cluster
from .config import load_stack_config, read_secrets
from .data import Data
from .functions import Functions
from .jobs import JobWorkers
from .logsearch import LogSearchDomain
from .media import MediaService
from .network import Network
from .observability import Observability
from .secrets import Secrets, SecretSpec


def build() -> dict[str, pulumi.Output[str] | str]:
    """Declare every resource; return (and export) the stack outputs."""
    cfg = load_stack_config()
    secret_values = read_secrets()
    region = pulumi.Config("aws").require("region")
    stack = pulumi.get_stack()
    name = f"parley-{stack}"
    aws_provider = aws.Provider(
        "aws",
        region=region,
        default_tags={
            "tags": {"project": "parley", "stack": stack, "environment": cfg.environment}
        },
    )
    opts = pulumi.ResourceOptions(providers={"aws": aws_provider})

    network = Network(name, cfg.network, opts=opts)
    data = Data(
        name,
        cfg,
        network,
        database_password=secret_values.database_password,
        redis_auth_token=secret_values.redis_auth_token,
        opts=opts,
    )
    secrets = Secrets(
        name,
        [
            SecretSpec("database-url", "PARLEY_DATABASE_URL", data.database_url, "PostgreSQL URL"),
            SecretSpec("redis-url", "PARLEY_REDIS_URL", data.redis_url, "Redis URL with AUTH"),
            SecretSpec(
                "twilio-auth-token",
                "PARLEY_TWILIO_AUTH_TOKEN",
                secret_values.twilio_auth_token,
                "Twilio auth token (webhook signatures, REST)",
            ),
            SecretSpec(
                "openai-api-key", "PARLEY_LLM_API_KEY", secret_values.openai_api_key, "LLM API key"
            ),
            SecretSpec(
                "session-token-secret",
                "PARLEY_SESSION_TOKEN_SECRET",
                secret_values.session_token_secret,
                "HMAC key of media-stream session tokens",
            ),
            SecretSpec(
                "qdrant-api-key",
                "PARLEY_QDRANT_API_KEY",
                secret_values.qdrant_api_key,
                "Qdrant server API key",
            ),
        ],
        opts=opts,
    )
    # The plain settings this stack knows. Each workload gets those its code declares it needs
    # (NEEDS, next to the code), plus the ARNs of the secrets it needs (parley_infra/environment).
    environment: dict[str, pulumi.Input[str]] = {
        "PARLEY_ENV": "production",
        "PARLEY_ALLOW_UNSIGNED_STREAMS": "false",
        "PARLEY_KAFKA_BOOTSTRAP": data.kafka_bootstrap,
        "PARLEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PARLEY_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
        "PARLEY_LLM_BASE_URL": cfg.llm_base_url,
        "PARLEY_LLM_MODEL": cfg.llm_model,
        "PARLEY_QDRANT_URL": cfg.qdrant_url,
        "PARLEY_TWILIO_ACCOUNT_SID": cfg.twilio_account_sid,
        "PARLEY_EXPORT_STORE": data.export_store,  # job workers write, the analytics API links
        # The Lambdas reach the trace collector through its internal load balancer; pods
        # through its cluster Service (below).
        "PARLEY_OTLP_ENDPOINT": traces.lambda_endpoint(cfg.domain),
    }
    functions = Functions(name, cfg, network, data, secrets, environment, opts=opts)
    cluster = Cluster(name, cfg.media, network, region, opts=opts)
    logs = LogSearchDomain(name, cfg, network, cluster, functions, region, opts=opts)
    collector = traces.TraceCollector(name, cfg, cluster, logs.domain, region, opts=opts)
    # Pods cannot reach instance metadata (hop limit 1), so they are told their region.
    pod_environment = {
        **environment,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "PARLEY_OTLP_ENDPOINT": collector.in_cluster_endpoint,
    }
    media = MediaService(name, cfg, cluster, data, secrets, pod_environment, opts=opts)
    JobWorkers(
        name,
        cfg,
        cluster,
        data,
        secrets,
        {**pod_environment, "PARLEY_PUBLIC_BASE_URL": functions.api_url},
        media.namespace,
        opts=opts,
    )
    observability = Observability(
        name,
        cfg,
        cluster,
        functions.functions,
        secret_values.grafana_admin_password,
        opts=opts,
    )

    outputs: dict[str, pulumi.Output[str] | str] = {
        "apiUrl": functions.api_url,
        "twilioVoiceWebhookUrl": functions.api_url.apply(lambda url: f"{url}/twilio/voice"),
        "twilioStatusCallbackUrl": functions.api_url.apply(lambda url: f"{url}/twilio/status"),
        "mediaStreamUrl": f"wss://media.{cfg.domain}/twilio/stream",
        "mediaLoadBalancer": media.load_balancer_hostname,
        "grafanaUrl": observability.grafana_url,
        "logSearchEndpoint": logs.endpoint,
        "traceCollectorUrl": collector.lambda_endpoint,
        "traceCollectorLoadBalancer": collector.load_balancer_hostname,
        "alertsTopicArn": observability.alerts.arn,
        "eksClusterName": cluster.eks.name,
        "recordingsBucket": data.recordings.bucket,
        "exportsBucket": data.exports.bucket,
        "kubeconfig": pulumi.Output.secret(cluster.kubeconfig),
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
