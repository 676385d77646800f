"""Observability: Prometheus + Grafana in the cluster, Parley's dashboards and alert rules from the
repo, container logs to CloudWatch, and CloudWatch alarms for the Lambdas (errors, the consumer's
lag, the Twilio webhooks' errors and latency). Every alert ends in one SNS topic.

The Lambdas' own metrics are CloudWatch embedded metrics (Powertools, functions/common): a Lambda
has no port to scrape and ends between requests, while every line it prints already reaches
CloudWatch Logs, so the metric costs no extra call. Grafana reads them through its CloudWatch
data source (the functions dashboard), with a Pod Identity role limited to metric reads.

Grafana is reachable only inside the VPC (internal TLS NLB at grafana.<domain>). The HPA's
``parley_active_calls`` reaches Kubernetes through prometheus-adapter.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from functions.common.observability import NAMESPACE as FUNCTIONS_NAMESPACE
from functions.common.observability import ROUTE_DIMENSION
from functions.common.observability import SERVICE as FUNCTIONS_SERVICE

from . import iam, media
from .cluster import Cluster
from .config import StackConfig
from .jobs import BEAT_LABELS, QUEUE_DEPTH_METRIC
from .network import HTTPS_PORT

OBSERVABILITY_DIR = Path(__file__).resolve().parents[2] / "observability"
ALERT_RULES = OBSERVABILITY_DIR / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((OBSERVABILITY_DIR / "grafana").glob("*.json"))
NAMESPACE = "monitoring"
RELEASE = "kps"  # fullnameOverride: services are kps-prometheus, kps-alertmanager, kps-grafana
ALERTMANAGER_SA = "kps-alertmanager"
GRAFANA_SA = "kps-grafana"
CLOUDWATCH_DATASOURCE = "cloudwatch"  # the uid the functions dashboard's panels name
CLOUDWATCH_READS = [
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
]
VOICE_WEBHOOK_P95_MS = 2000  # the voice webhook answers Twilio while the caller hears ringing
LAMBDA_ERROR_THRESHOLD = 5  # errors in 5 minutes
CONSUMER_OFFSET_LAG_THRESHOLD = 10000  # same as the ParleyConsumerLag rule


class Observability(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        cluster: Cluster,
        functions: dict[str, aws.lambda_.Function],
        grafana_admin_password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        self.alerts = aws.sns.Topic(f"{name}-alerts", kms_master_key_id="alias/aws/sns", opts=child)
        if cfg.observability.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alerts-email",
                topic=self.alerts.arn,
                protocol="email",
                endpoint=cfg.observability.alert_email,
                opts=pulumi.ResourceOptions(parent=self.alerts),
            )
        self._lambda_alarms(name, functions, child)
        self._log_shipping(name, cluster)

        namespace = k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": NAMESPACE}, opts=k8s_opts)
        ns_name = namespace.metadata.name
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": "grafana-admin", "namespace": ns_name},
            string_data={"admin-user": "admin", "admin-password": grafana_admin_password},
            opts=k8s_opts,
        )
        cluster.pod_role(
            f"{name}-alertmanager",
            NAMESPACE,
            ALERTMANAGER_SA,
            [],
            [iam.allow(["sns:Publish"], [self.alerts.arn])],
        )
        # Grafana reads the Lambdas' embedded metrics (the functions dashboard) from CloudWatch.
        cluster.pod_role(
            f"{name}-grafana",
            NAMESPACE,
            GRAFANA_SA,
            [],
            [iam.allow_unscoped(CLOUDWATCH_READS)],
        )
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        stack = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            name=RELEASE,
            namespace=ns_name,
            chart="kube-prometheus-stack",
            version=cfg.observability.kube_prometheus_stack_version,
            repository_opts={"repo": "https://prometheus-community.github.io/helm-charts"},
            values=pulumi.Output.all(self.alerts.arn, region).apply(
                lambda args: _stack_values(cfg, topic_arn=args[0], region=args[1])
            ),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[admin])),
        )
        after_stack = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[stack])
        )
        k8s.helm.v3.Release(
            f"{name}-prometheus-adapter",
            name="prometheus-adapter",
            namespace=ns_name,
            chart="prometheus-adapter",
            version=cfg.observability.prometheus_adapter_version,
            repository_opts={"repo": "https://prometheus-community.github.io/helm-charts"},
            values=adapter_values(),
            opts=after_stack,
        )
        for dashboard in DASHBOARDS:
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{dashboard.stem}",
                metadata={
                    "name": f"dashboard-{dashboard.stem}",
                    "namespace": ns_name,
                    "labels": {"grafana_dashboard": "1"},
                },
                data={dashboard.name: dashboard.read_text()},
                opts=k8s_opts,
            )
        k8s.apiextensions.CustomResource(
            f"{name}-alert-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": "parley", "namespace": ns_name},
            spec=yaml.safe_load(ALERT_RULES.read_text()),
            opts=after_stack,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-media-scrape",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "parley-media", "namespace": ns_name},
            spec={
                "namespaceSelector": {"matchNames": [media.NAMESPACE]},
                "selector": {"matchLabels": media.LABELS},
                "podMetricsEndpoints": [{"port": "media", "path": "/metrics", "interval": "15s"}],
            },
            opts=after_stack,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-jobs-scrape",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "parley-jobs-beat", "namespace": ns_name},
            spec={
                "namespaceSelector": {"matchNames": [media.NAMESPACE]},
                "selector": {"matchLabels": BEAT_LABELS},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/", "interval": "15s"}],
            },
            opts=after_stack,
        )
        k8s.core.v1.Service(
            f"{name}-grafana",
            metadata={
                "name": "grafana-internal",
                "namespace": ns_name,
                "annotations": media.tls_nlb_annotations(cfg.certificate_arn, internal=True),
            },
            spec={
                "type": "LoadBalancer",
                "selector": {
                    "app.kubernetes.io/name": "grafana",
                    "app.kubernetes.io/instance": RELEASE,
                },
                "ports": [
                    {"name": "https", "port": HTTPS_PORT, "target_port": 3000, "protocol": "TCP"}
                ],
            },
            opts=after_stack,
        )
        self.grafana_url = f"https://grafana.{cfg.domain}"
        self.register_outputs({"grafana_url": self.grafana_url, "alerts_topic": self.alerts.arn})

    def _lambda_alarms(
        self,
        name: str,
        functions: dict[str, aws.lambda_.Function],
        child: pulumi.ResourceOptions,
    ) -> None:
        for fn_name, fn in functions.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{fn_name}-errors",
                alarm_description=f"Parley Lambda {fn_name} is failing",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": fn.name},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=LAMBDA_ERROR_THRESHOLD,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.alerts.arn],
                ok_actions=[self.alerts.arn],
                opts=child,
            )
        for route in ("/twilio/voice", "/twilio/status"):
            short = route.rsplit("/", 1)[1]
            dimensions = {"service": FUNCTIONS_SERVICE, ROUTE_DIMENSION: route}
            aws.cloudwatch.MetricAlarm(
                f"{name}-webhook-{short}-errors",
                alarm_description=f"Twilio's {route} webhook is answered with errors (5xx)",
                namespace=FUNCTIONS_NAMESPACE,
                metric_name="ServerErrors",
                dimensions=dimensions,
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=LAMBDA_ERROR_THRESHOLD,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.alerts.arn],
                ok_actions=[self.alerts.arn],
                opts=child,
            )
        aws.cloudwatch.MetricAlarm(
            f"{name}-webhook-voice-latency",
            alarm_description=(
                "Twilio's voice webhook is slow (p95): callers ring longer before the agent "
                "answers. Follow a slow request's trace (docs/operations.md)."
            ),
            namespace=FUNCTIONS_NAMESPACE,
            metric_name="LatencyMs",
            dimensions={"service": FUNCTIONS_SERVICE, ROUTE_DIMENSION: "/twilio/voice"},
            extended_statistic="p95",
            period=300,
            evaluation_periods=2,
            threshold=VOICE_WEBHOOK_P95_MS,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.alerts.arn],
            ok_actions=[self.alerts.arn],
            opts=child,
        )
        if "consumer" in functions:
            aws.cloudwatch.MetricAlarm(
                f"{name}-consumer-lag",
                alarm_description="Parley event consumer Lambda is behind on MSK",
                namespace="AWS/Lambda",
                metric_name="OffsetLag",
                dimensions={"FunctionName": functions["consumer"].name},
                statistic="Maximum",
                period=300,
                evaluation_periods=2,
                threshold=CONSUMER_OFFSET_LAG_THRESHOLD,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.alerts.arn],
                ok_actions=[self.alerts.arn],
                opts=child,
            )

    def _log_shipping(self, name: str, cluster: Cluster) -> None:
        """Container logs to CloudWatch Logs through the EKS CloudWatch Observability add-on."""
        role = cluster.pod_role(
            f"{name}-cloudwatch-agent",
            "amazon-cloudwatch",
            "cloudwatch-agent",
            ["cloudwatch-agent"],
            [],
        )
        aws.eks.Addon(
            f"{name}-cloudwatch",
            cluster_name=cluster.eks.name,
            addon_name="amazon-cloudwatch-observability",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, cluster.node_group]),
        )


def adapter_values() -> dict[str, object]:
    """prometheus-adapter: expose parley_active_calls per pod to the HPA (custom metrics API)."""
    return {
        "prometheus": {"url": f"http://{RELEASE}-prometheus.{NAMESPACE}.svc", "port": 9090},
        "rules": {
            "default": False,
            "custom": [
                {
                    "seriesQuery": f'{media.ACTIVE_CALLS_METRIC}{{namespace!="",pod!=""}}',
                    "resources": {
                        "overrides": {
                            "namespace": {"resource": "namespace"},
                            "pod": {"resource": "pod"},
                        }
                    },
                    "name": {"matches": media.ACTIVE_CALLS_METRIC, "as": media.ACTIVE_CALLS_METRIC},
                    "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
                }
            ],
            # The job queue's backlog, served by the one beat pod, for the workers' HPA.
            "external": [
                {
                    "seriesQuery": f'{QUEUE_DEPTH_METRIC}{{namespace!=""}}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
                    "name": {"matches": QUEUE_DEPTH_METRIC, "as": QUEUE_DEPTH_METRIC},
                    "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
                }
            ],
        },
    }


def _stack_values(cfg: StackConfig, *, topic_arn: str, region: str) -> dict[str, object]:
    return {
        "fullnameOverride": RELEASE,
        "prometheus": {
            "prometheusSpec": {
                "retention": cfg.observability.prometheus_retention,
                # Pick up Parley's PodMonitor and PrometheusRule, not only the chart's own.
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        "alertmanager": {
            "serviceAccount": {"name": ALERTMANAGER_SA},
            "config": {
                "route": {"receiver": "sns", "group_by": ["alertname"]},
                "receivers": [
                    {
                        "name": "sns",
                        "sns_configs": [
                            {
                                "topic_arn": topic_arn,
                                "sigv4": {"region": region},
                                "subject": "{{ .CommonLabels.alertname }}",
                            }
                        ],
                    }
                ],
            },
        },
        "grafana": {
            "serviceAccount": {"name": GRAFANA_SA},
            "additionalDataSources": [
                {
                    "name": "CloudWatch",
                    "type": "cloudwatch",
                    "uid": CLOUDWATCH_DATASOURCE,
                    "access": "proxy",
                    # The default chain finds the pod's Pod Identity credentials.
                    "jsonData": {"authType": "default", "defaultRegion": region},
                }
            ],
            "admin": {
                "existingSecret": "grafana-admin",
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard"}},
            "grafana.ini": {"server": {"root_url": f"https://grafana.{cfg.domain}"}},
        },
    }
