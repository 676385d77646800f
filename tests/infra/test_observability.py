"""Dashboards and alert rules: valid for Prometheus, and querying only metrics Parley exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from parley_infra.media import ACTIVE_CALLS_METRIC
from parley_infra.observability import ALERT_RULES, DASHBOARDS, adapter_values

from .stack_harness import REPO_ROOT, Evaluation, stack_config

METRICS_FILE = REPO_ROOT / "infra" / "observability" / "metrics.txt"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
# Histograms are queried through these series; counters end in _total.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}
PROMQL_WORDS = {"parley"}  # tokens that look like names but are not (none today)


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: apt-get install -y prometheus (Debian package)"
    return path


def _listed() -> dict[str, str]:
    listed = {}
    for line in METRICS_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind = line.split()
            listed[name] = kind
    return listed


def _queries() -> dict[str, list[str]]:
    """Every PromQL expression, by the file it lives in."""
    queries: dict[str, list[str]] = {}
    rules = yaml.safe_load(ALERT_RULES.read_text())
    queries[ALERT_RULES.name] = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for dashboard in DASHBOARDS:
        data = json.loads(dashboard.read_text())
        targets = [t for p in data["panels"] for t in p["targets"]]
        # CloudWatch panels (the Lambdas' embedded metrics) are checked against what the
        # functions emit: tests/functions/test_voice.py.
        assert {t["datasource"]["type"] for t in targets} <= {"prometheus", "cloudwatch"}
        exprs = [t["expr"] for t in targets if t["datasource"]["type"] == "prometheus"]
        exprs += [v["query"] for v in data["templating"]["list"] if v["type"] == "query"]
        queries[dashboard.name] = exprs
    rules = adapter_values()["rules"]
    queries["prometheus-adapter"] = [r["seriesQuery"] for r in rules["custom"] + rules["external"]]
    return queries


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\bparley_[a-z0-9_]+", expr)) - PROMQL_WORDS


def _base(series: str, listed: dict[str, str]) -> str | None:
    """The metrics.txt name a queried series belongs to, if any."""
    for name, kind in listed.items():
        if any(series == name + suffix for suffix in SUFFIXES[kind]):
            return name
    return None


def _exported() -> dict[str, str]:
    """Metric names (as queried) and types that Parley's code registers.

    Each process makes one registry (shared.metrics.process_registry) and hands it to the
    metrics of every part it runs: the media node (media_nodes.metrics.MediaMetrics) with its
    event spool (shared.bus.durable.SpoolMetrics), the long-running consumer
    (functions.consumer.metrics.ConsumerMetrics) and beat's job queue probe
    (functions.jobs.metrics.QueueMetrics).
    """
    from functions.consumer.metrics import ConsumerMetrics
    from functions.jobs.metrics import QueueMetrics
    from media_nodes.metrics import MediaMetrics
    from shared.bus.durable import SpoolMetrics
    from shared.metrics import process_registry

    media_node, consumer, beat = process_registry(), process_registry(), process_registry()
    MediaMetrics(media_node)
    SpoolMetrics(media_node)
    ConsumerMetrics(consumer)
    QueueMetrics(beat)
    exported = {}
    for registry in (media_node, consumer, beat):
        for family in registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            exported[name] = family.type
    return exported


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(ALERT_RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_fire_on_bad_series_and_stay_quiet_on_good_ones() -> None:
    """promtool evaluates every alert against synthetic series (tests/infra/alerts_test.yml)."""
    result = subprocess.run(
        [_promtool(), "test", "rules", ALERT_TESTS.name],
        capture_output=True,
        text=True,
        cwd=ALERT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    defined = {
        r["alert"] for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]
    }
    assert tested == defined, f"alerts without a promtool test: {defined - tested}"


def test_every_queried_metric_is_listed() -> None:
    listed = _listed()
    for source, exprs in _queries().items():
        for expr in exprs:
            for series in _names(expr):
                assert _base(series, listed), f"{source} queries {series}, not in metrics.txt"


def test_every_listed_metric_is_queried() -> None:
    used = {_base(s, _listed()) for exprs in _queries().values() for e in exprs for s in _names(e)}
    assert set(_listed()) - used == set(), "metrics.txt lists names nothing queries"


def test_listed_metrics_are_exported_by_parley_with_their_types() -> None:
    exported = _exported()
    for name, kind in _listed().items():
        assert name in exported, f"{name} is in metrics.txt but no Parley code registers it"
        assert exported[name] == kind, f"{name} is a {exported[name]}, metrics.txt says {kind}"


def test_hpa_metric_is_exported_and_served_by_the_adapter(dev: Evaluation) -> None:
    assert _listed()[ACTIVE_CALLS_METRIC] == "gauge"
    hpa = dev.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "-hpa")
    assert hpa.inputs["spec"]["metrics"][0]["pods"]["metric"]["name"] == ACTIVE_CALLS_METRIC
    (rule,) = adapter_values()["rules"]["custom"]
    assert rule["name"]["as"] == ACTIVE_CALLS_METRIC


def test_dashboards_are_valid_grafana_json() -> None:
    assert DASHBOARDS, "no dashboards in infra/observability/grafana"
    for dashboard in DASHBOARDS:
        data = json.loads(dashboard.read_text())
        assert data["uid"] and data["title"]
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), f"{dashboard.name}: duplicate panel ids"
        for panel in data["panels"]:
            assert panel["targets"], f"{dashboard.name}: panel {panel['title']} has no query"
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}


@pytest.mark.parametrize("name", ["PrometheusRule", "PodMonitor"])
def test_rules_and_scraping_are_deployed(stack: Evaluation, name: str) -> None:
    resource = stack.one(
        f"kubernetes:monitoring.coreos.com/v1:{name}",
        "" if name == "PrometheusRule" else "media-scrape",
    )
    if name == "PrometheusRule":
        assert resource.inputs["spec"] == yaml.safe_load(ALERT_RULES.read_text())
    else:
        (endpoint,) = resource.inputs["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("media", "/metrics")


def test_dashboards_are_provisioned_and_alerts_reach_sns(stack: Evaluation) -> None:
    maps = stack.of_type("kubernetes:core/v1:ConfigMap")
    assert {tuple(m.inputs["data"]) for m in maps} == {(d.name,) for d in DASHBOARDS}
    assert all(m.inputs["metadata"]["labels"] == {"grafana_dashboard": "1"} for m in maps)
    release = stack.one("kubernetes:helm.sh/v3:Release", "kube-prometheus-stack")
    receivers = release.inputs["values"]["alertmanager"]["config"]["receivers"]
    assert receivers[0]["sns_configs"][0]["topic_arn"].startswith("arn:aws:sns:")
    alarms = {a.name for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for fn in ("voice", "transfer", "admin", "analytics", "consumer", "rollups", "lostcalls"):
        assert f"parley-{stack.stack}-{fn}-errors" in alarms
    assert f"parley-{stack.stack}-consumer-lag" in alarms


def test_log_search_domain_and_shippers_are_deployed(stack: Evaluation) -> None:
    from parley_infra.logsearch import INDEX_PREFIX

    domain = stack.one("aws:opensearch/domain:Domain")
    assert domain.inputs["engineVersion"] == "OpenSearch_2.19"
    assert domain.inputs["encryptAtRest"]["enabled"] and domain.inputs["vpcOptions"]["subnetIds"]
    fluent_bit = stack.one("kubernetes:helm.sh/v3:Release", "fluent-bit")
    outputs = fluent_bit.inputs["values"]["config"]["outputs"]
    assert "Name opensearch" in outputs and f"Logstash_Prefix {INDEX_PREFIX}" in outputs
    assert "AWS_Auth On" in outputs
    assert (
        f"Host {domain.name}-abc.us-east-1.es.amazonaws.com".replace("Host ", "Host vpc-")
        in outputs
    )
    assert stack.outputs["logSearchEndpoint"] == f"vpc-{domain.name}-abc.us-east-1.es.amazonaws.com"


def _env(deployment: Any) -> dict[str, str]:
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_a_trace_collector_is_deployed_and_every_workload_reaches_it(stack: Evaluation) -> None:
    """The collector writes into the OpenSearch domain (signed, with its own role); pods reach it
    by its Service, the Lambdas (in the VPC, outside the cluster) by an internal TLS NLB."""
    from parley_infra.network import OTLP_HTTP_PORT
    from parley_infra.traces import IN_CLUSTER_ENDPOINT, POD_LABELS, RELEASE

    domain = stack.one("aws:opensearch/domain:Domain")
    release = stack.one("kubernetes:helm.sh/v3:Release", "otel-collector")
    assert release.inputs["chart"] == "opentelemetry-collector"
    values = release.inputs["values"]
    assert values["mode"] == "deployment" and values["fullnameOverride"] == RELEASE
    assert values["image"]["repository"] == "otel/opentelemetry-collector-contrib"
    config = values["config"]
    exporter = config["exporters"]["opensearch"]
    assert (
        exporter["http"]["endpoint"] == f"https://vpc-{domain.name}-abc.us-east-1.es.amazonaws.com"
    )
    assert exporter["http"]["auth"] == {"authenticator": "sigv4auth"}
    assert config["extensions"]["sigv4auth"] == {"region": "us-east-1", "service": "es"}
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["opensearch"]
    receiver = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert receiver.endswith(f":{OTLP_HTTP_PORT}")
    assert RELEASE in IN_CLUSTER_ENDPOINT and IN_CLUSTER_ENDPOINT.endswith(f":{OTLP_HTTP_PORT}")

    # Its pods sign with a Pod Identity role allowed to write to this domain only.
    association = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "otel")
    assert association.inputs["serviceAccount"] == values["serviceAccount"]["name"]
    policy = json.loads(
        stack.one("aws:iam/rolePolicy:RolePolicy", "otel-collector").inputs["policy"]
    )
    (statement,) = policy["Statement"]
    assert "es:ESHttpPost" in statement["Action"]
    assert statement["Resource"] == [f"arn:aws:opensearch:us-east-1:123456789012:{domain.name}/*"]

    # Pods: the Service. Media node, job worker and beat all export there.
    for deployment in ("-deployment", "-jobs-worker", "-jobs-beat"):
        env = _env(stack.one("kubernetes:apps/v1:Deployment", deployment))
        assert env["PARLEY_OTLP_ENDPOINT"] == IN_CLUSTER_ENDPOINT, deployment

    # Lambdas: https://traces.<domain>, an internal NLB with the stack's certificate on 443,
    # forwarding to the collector pods; their security group lets HTTPS out, and the pods' lets
    # the NLB in on the OTLP port from inside the VPC only.
    domain_name = stack_config(stack.stack)["parley:domain"]
    traced = {
        fn.name.rsplit("-", 1)[1]: fn.inputs["environment"]["variables"].get("PARLEY_OTLP_ENDPOINT")
        for fn in stack.of_type("aws:lambda/function:Function")
    }
    # Every function that opens spans (the HTTP ones, the consumer); the scheduled ones open none.
    assert traced == {
        **dict.fromkeys(
            ["voice", "transfer", "admin", "analytics", "consumer"], f"https://traces.{domain_name}"
        ),
        "rollups": None,
        "lostcalls": None,
    }
    lb = stack.one("kubernetes:core/v1:Service", "-traces")
    annotations = lb.inputs["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert annotations[f"{prefix}internal"] == "true"
    assert annotations[f"{prefix}ssl-cert"].startswith("arn:aws:acm:")
    assert lb.inputs["spec"]["selector"] == POD_LABELS
    (port,) = lb.inputs["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, OTLP_HTTP_PORT)
    egress = stack.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    https_out = [
        r for r in egress if r.name.endswith("-lambdas-https") and r.inputs["fromPort"] == 443
    ]
    assert https_out
    (otlp_in,) = [
        r
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["fromPort"] == OTLP_HTTP_PORT
    ]
    assert otlp_in.inputs["securityGroupId"] == f"parley-{stack.stack}-media-nodes-id"
    assert otlp_in.inputs["cidrIpv4"] == str(
        stack_config(stack.stack).get("parley:network", {}).get("vpcCidr", "10.40.0.0/16")
    )
    assert stack.outputs["traceCollectorUrl"] == f"https://traces.{domain_name}"


def test_every_lambda_log_group_is_subscribed_into_opensearch(stack: Evaluation) -> None:
    from parley_infra.logsearch import LAMBDA_INDEX

    groups = {
        g.inputs["name"]
        for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.inputs.get("name", "").startswith("/aws/lambda/")
    }
    functions = stack.of_type("aws:lambda/function:Function")
    assert {f.inputs["loggingConfig"]["logGroup"] for f in functions} == groups
    assert len(groups) == len(functions) == 7
    stream = stack.one("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream")
    filters = stack.of_type("aws:cloudwatch/logSubscriptionFilter:LogSubscriptionFilter")
    assert {f.inputs["logGroup"] for f in filters} == groups
    stream_arn = f"arn:aws:firehose:us-east-1:123456789012:deliverystream/{stream.inputs['name']}"
    for subscription in filters:
        assert subscription.inputs["destinationArn"] == stream_arn
        assert subscription.inputs["filterPattern"] == ""
        assert subscription.inputs["roleArn"].endswith("-log-subscription")

    domain = stack.one("aws:opensearch/domain:Domain")
    config = stream.inputs["opensearchConfiguration"]
    assert stream.inputs["destination"] == "opensearch"
    assert config["domainArn"].endswith(f":{domain.name}")
    assert config["indexName"] == LAMBDA_INDEX and LAMBDA_INDEX.startswith("parley-logs-")
    assert config["indexRotationPeriod"] == "OneDay"
    assert config["s3BackupMode"] == "FailedDocumentsOnly"
    assert {s.removesuffix("-id") for s in config["vpcConfig"]["subnetIds"]} == {
        r.name for r in stack.of_type("aws:ec2/subnet:Subnet") if "-private-" in r.name
    }
    processors = [p["type"] for p in config["processingConfiguration"]["processors"]]
    assert processors == ["Decompression", "CloudWatchLogProcessing"]
    assert stream.inputs["serverSideEncryption"]["enabled"] is True

    # The subscription role may only put records into this stream.
    policy = json.loads(
        stack.one("aws:iam/rolePolicy:RolePolicy", "log-subscription").inputs["policy"]
    )
    assert policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["firehose:PutRecord", "firehose:PutRecordBatch"],
            "Resource": [stream_arn],
        }
    ]
