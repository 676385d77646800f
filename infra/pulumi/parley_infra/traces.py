"""Traces in production: an OpenTelemetry Collector on EKS that every workload exports to, storing
the spans in the log-search OpenSearch domain next to the logs.

Why this collector and this store: the workloads speak plain OTLP/HTTP (shared/tracing.py), and
Amazon OpenSearch Service accepts only SigV4-signed requests from IAM principals. The Collector's
contrib image has both halves, maintained upstream: the ``opensearch`` exporter, signed by the
``sigv4auth`` extension with the collector pods' own Pod Identity role. Keeping traces in the
domain that already holds the logs means one place to follow a call (a log line's ``trace_id``
is the trace's ``traceId``), one retention story, and no second managed service to pay for.

Who reaches it, and how:

- pods (media node, job worker, beat) in the cluster: the collector's ClusterIP Service,
  :data:`IN_CLUSTER_ENDPOINT`;
- the Lambdas, which run in the VPC's private subnets but outside the cluster (no cluster DNS,
  no ClusterIP routes): an internal TLS Network Load Balancer at ``https://traces.<domain>`` (the
  stack's certificate; the ``traceCollectorLoadBalancer`` output gets that CNAME like
  ``grafana.<domain>``). Their security group already allows HTTPS out; the NLB reaches the
  collector pods on :data:`~parley_infra.network.OTLP_HTTP_PORT` from inside the VPC only.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import iam, media
from .cluster import MEDIA_NODE_LABEL, Cluster
from .config import StackConfig
from .network import HTTPS_PORT, OTLP_HTTP_PORT

NAMESPACE = "tracing"
RELEASE = "otel-collector"  # fullnameOverride: the chart's Service is otel-collector
SERVICE_ACCOUNT = "otel-collector"
IN_CLUSTER_ENDPOINT = f"http://{RELEASE}.{NAMESPACE}.svc.cluster.local:{OTLP_HTTP_PORT}"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib"  # has opensearch + sigv4auth
# The chart's pod labels, which the Lambdas' load balancer selects.
POD_LABELS = {
    "app.kubernetes.io/name": "opentelemetry-collector",
    "app.kubernetes.io/instance": RELEASE,
}
TRACES_DATASET = "parley"  # spans land in ss4o_traces-parley-<stack>


def lambda_endpoint(domain: str) -> str:
    """What the Lambdas export to: the internal NLB, by the name the certificate covers."""
    return f"https://traces.{domain}"


def traces_index(stack: str) -> str:
    return f"ss4o_traces-{TRACES_DATASET}-{stack}"


def collector_values(opensearch_host: str, region: str, stack: str) -> dict[str, object]:
    """The chart's values: OTLP/HTTP in, batched, signed and written to the OpenSearch domain."""
    return {
        "mode": "deployment",
        "fullnameOverride": RELEASE,
        "replicaCount": 2,
        "image": {"repository": COLLECTOR_IMAGE},
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "nodeSelector": MEDIA_NODE_LABEL,
        "resources": {
            "requests": {"cpu": "200m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        # Only OTLP/HTTP: what shared/tracing.py sends.
        "ports": {
            "otlp-http": {
                "enabled": True,
                "containerPort": OTLP_HTTP_PORT,
                "servicePort": OTLP_HTTP_PORT,
            },
            "otlp": {"enabled": False},
            "jaeger-compact": {"enabled": False},
            "jaeger-thrift": {"enabled": False},
            "jaeger-grpc": {"enabled": False},
            "zipkin": {"enabled": False},
        },
        "config": {
            "extensions": {
                "health_check": {"endpoint": "${env:MY_POD_IP}:13133"},
                "sigv4auth": {"region": region, "service": "es"},
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "http": {"endpoint": f"${{env:MY_POD_IP}}:{OTLP_HTTP_PORT}"},
                        "grpc": None,
                    }
                },
                "jaeger": None,
                "zipkin": None,
                "prometheus": None,
            },
            "processors": {
                "memory_limiter": {"check_interval": "1s", "limit_percentage": 80},
                "batch": {"send_batch_size": 512, "timeout": "5s"},
            },
            "exporters": {
                "opensearch": {
                    "http": {
                        "endpoint": f"https://{opensearch_host}",
                        "auth": {"authenticator": "sigv4auth"},
                    },
                    "dataset": TRACES_DATASET,
                    "namespace": stack,
                },
                "debug": None,
            },
            "service": {
                "extensions": ["health_check", "sigv4auth"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "batch"],
                        "exporters": ["opensearch"],
                    },
                    "metrics": None,
                    "logs": None,
                },
            },
        },
    }


class TraceCollector(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        cluster: Cluster,
        domain: aws.opensearch.Domain,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:TraceCollector", name, None, opts)
        write = iam.allow(
            ["es:ESHttpPost", "es:ESHttpPut", "es:ESHttpGet", "es:ESHttpHead"],
            [domain.arn.apply(lambda arn: f"{arn}/*")],
        )
        role = cluster.pod_role(f"{name}-otel-collector", NAMESPACE, SERVICE_ACCOUNT, [], [write])
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-tracing", metadata={"name": NAMESPACE}, opts=k8s_opts
        )
        stack = pulumi.get_stack()
        release = k8s.helm.v3.Release(
            f"{name}-otel-collector",
            name=RELEASE,
            chart="opentelemetry-collector",
            version=cfg.observability.otel_collector_chart_version,
            namespace=namespace.metadata.name,
            repository_opts={"repo": "https://open-telemetry.github.io/opentelemetry-helm-charts"},
            values=domain.endpoint.apply(lambda host: collector_values(host, region, stack)),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[role])),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-traces",
            metadata={
                "name": "traces-internal",
                "namespace": namespace.metadata.name,
                "annotations": media.tls_nlb_annotations(cfg.certificate_arn, internal=True),
            },
            spec={
                "type": "LoadBalancer",
                "selector": POD_LABELS,
                "ports": [
                    {
                        "name": "otlp-https",
                        "port": HTTPS_PORT,
                        "target_port": OTLP_HTTP_PORT,
                        "protocol": "TCP",
                    }
                ],
            },
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[release])
            ),
        )
        self.in_cluster_endpoint = IN_CLUSTER_ENDPOINT
        self.lambda_endpoint = lambda_endpoint(cfg.domain)
        self.load_balancer_hostname: pulumi.Output[str] = self.service.status.apply(
            lambda status: (
                status.load_balancer.ingress[0].hostname or ""
                if status and status.load_balancer and status.load_balancer.ingress
                else ""
            )
        )
        self.register_outputs({"load_balancer_hostname": self.load_balancer_hostname})
