"""The stack files: validated with clear errors, documented, prod differing from dev as promised."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from parley_infra.config import (
    OPTIONAL_SECRETS,
    REQUIRED_SECRETS,
    ConfigError,
    StackConfig,
    parse_stack_config,
)
from pydantic import BaseModel

from .stack_harness import REPO_ROOT, TEST_SECRETS, Evaluation, evaluate, stack_config

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"


def _raw(stack: str) -> dict[str, Any]:
    return {
        k.removeprefix("parley:"): v
        for k, v in stack_config(stack).items()
        if k.startswith("parley:")
    }


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, key + ".")
        else:
            keys.append(key)
    return keys


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_stack_files_are_valid(name: str) -> None:
    cfg = parse_stack_config(_raw(name))
    assert cfg.environment == name


def test_every_key_and_secret_is_documented() -> None:
    doc = DEPLOY_DOC.read_text()
    missing = [key for key in _keys(StackConfig) if f"`{key}`" not in doc]
    missing += [key for key in REQUIRED_SECRETS + OPTIONAL_SECRETS if f"`{key}`" not in doc]
    assert not missing, f"docs/deploy.md does not describe: {missing}"
    assert "cannot be installed on these machines" in doc


def test_bad_values_are_named_in_one_clear_error() -> None:
    raw = _raw("dev")
    raw["database"] = {**raw["database"], "multiAZ": True, "backupRetentionDays": 90}
    raw["certificateArn"] = "not-an-arn"
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    message = str(caught.value)
    assert "parley:database.multiAZ: Extra inputs are not permitted" in message
    assert "parley:database.backupRetentionDays" in message
    assert "parley:certificateArn" in message and "ACM certificate ARN" in message


@pytest.mark.parametrize(
    ("section", "change", "complaint"),
    [
        ("kafka", {"consumerTopics": ["nope"]}, "consumerTopics not in topics"),
        ("kafka", {"replicationFactor": 4}, "exceeds the 2 brokers"),
        ("media", {"replicasMin": 9, "replicasMax": 2}, "replicasMin <= replicasMax"),
        ("media", {"targetActiveCalls": 50}, "cannot exceed callsPerPod"),
        ("network", {"vpcCidr": "10.0.0.0/24"}, "/16 or larger"),
    ],
)
def test_inconsistent_sizes_are_refused(
    section: str, change: dict[str, Any], complaint: str
) -> None:
    raw = _raw("dev")
    raw[section] = {**raw[section], **change}
    with pytest.raises(ConfigError, match=complaint):
        parse_stack_config(raw)


def test_program_stops_before_any_resource_on_missing_secrets() -> None:
    secrets = {k: v for k, v in TEST_SECRETS.items() if k != "parley:redisAuthToken"}
    with pytest.raises(Exception, match="pulumi config set --secret redisAuthToken") as caught:
        evaluate("dev", secrets=secrets)
    assert "databasePassword" not in str(caught.value)


def test_program_names_a_missing_image() -> None:
    functions = dict(stack_config("dev")["parley:functions"])
    del functions["image"]
    with pytest.raises(Exception, match=r"parley:functions\.image: Field required"):
        evaluate("dev", overrides={"parley:functions": functions})


def _nat_count(stack: Evaluation) -> int:
    return len(stack.of_type("aws:ec2/natGateway:NatGateway"))


def _grace(stack: Evaluation) -> int:
    deployment = stack.one("kubernetes:apps/v1:Deployment", "-deployment")
    return deployment.inputs["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


# The table "dev and prod" in docs/deploy.md, as (what, how to read it from a stack, dev, prod).
DOCUMENTED_DIFFERENCES = [
    ("availability zones", lambda s: len(s.of_type("aws:ec2/subnet:Subnet")) // 2, 2, 3),
    ("NAT gateways", _nat_count, 1, 3),
    ("RDS Multi-AZ", lambda s: s.one("aws:rds/instance:Instance").inputs["multiAz"], False, True),
    (
        "RDS backups (days)",
        lambda s: s.one("aws:rds/instance:Instance").inputs["backupRetentionPeriod"],
        1,
        14,
    ),
    (
        "RDS deletion protection",
        lambda s: s.one("aws:rds/instance:Instance").inputs["deletionProtection"],
        False,
        True,
    ),
    (
        "Redis nodes",
        lambda s: s.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs[
            "numCacheClusters"
        ],
        1,
        2,
    ),
    (
        "Redis failover",
        lambda s: s.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs[
            "automaticFailoverEnabled"
        ],
        False,
        True,
    ),
    ("MSK brokers", lambda s: s.one("aws:msk/cluster:Cluster").inputs["numberOfBrokerNodes"], 2, 3),
    (
        "topic replication",
        lambda s: {t.inputs["replicationFactor"] for t in s.of_type("aws:msk/topic:Topic")},
        {2},
        {3},
    ),
    (
        "public EKS API",
        lambda s: s.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]["endpointPublicAccess"],
        True,
        False,
    ),
    (
        "media pods min",
        lambda s: s.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "-hpa").inputs["spec"][
            "minReplicas"
        ],
        1,
        3,
    ),
    ("drain grace (s)", _grace, 20 + 120 + 15, 20 + 900 + 15),
    ("alert email", lambda s: len(s.of_type("aws:sns/topicSubscription:TopicSubscription")), 0, 1),
]


@pytest.mark.parametrize(
    ("what", "read", "in_dev", "in_prod"),
    DOCUMENTED_DIFFERENCES,
    ids=[d[0] for d in DOCUMENTED_DIFFERENCES],
)
def test_prod_differs_from_dev_as_documented(
    dev: Evaluation, prod: Evaluation, what: str, read: Any, in_dev: Any, in_prod: Any
) -> None:
    assert read(dev) == in_dev, f"dev {what}"
    assert read(prod) == in_prod, f"prod {what}"
    assert f"| {what} |" in DEPLOY_DOC.read_text(), f"docs/deploy.md does not list '{what}'"


def test_stack_outputs_a_platform_team_needs(stack: Evaluation) -> None:
    outputs = stack.outputs
    api = outputs["apiUrl"]
    assert api.startswith("https://")
    assert outputs["twilioVoiceWebhookUrl"] == f"{api}/twilio/voice"
    assert outputs["twilioStatusCallbackUrl"] == f"{api}/twilio/status"
    domain = stack_config(stack.stack)["parley:domain"]
    assert outputs["mediaStreamUrl"] == f"wss://media.{domain}/twilio/stream"
    assert outputs["grafanaUrl"] == f"https://grafana.{domain}"
    assert outputs["eksClusterName"] and outputs["recordingsBucket"]


def test_project_file_matches_the_config_namespace() -> None:
    from parley_infra.config import PROJECT

    from .stack_harness import PULUMI_DIR

    project = yaml.safe_load((PULUMI_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT  # `parley:` keys belong to the project of that name
    assert project["runtime"]["name"] == "python"
    venv = (PULUMI_DIR / project["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == REPO_ROOT / ".venv"
    assert (PULUMI_DIR / "__main__.py").read_text().count("build()") == 1
