"""Policy checks on everything both stacks declare: private data, encryption, least privilege."""

from __future__ import annotations

import json
from typing import Any

from parley_infra.iam import MANAGED_POLICIES, UNSCOPED_ACTIONS, allow_unscoped

from .stack_harness import TEST_SECRETS, Evaluation, is_secret, unwrap_secret

ANYWHERE = "0.0.0.0/0"


def test_databases_and_caches_are_private(stack: Evaluation) -> None:
    db = stack.one("aws:rds/instance:Instance")
    assert db.inputs["publiclyAccessible"] is False
    private_subnets = {
        r.name for r in stack.of_type("aws:ec2/subnet:Subnet") if "-private-" in r.name
    }
    for group_type in (
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:elasticache/subnetGroup:SubnetGroup",
    ):
        group = stack.one(group_type)
        assert {s.removesuffix("-id") for s in group.inputs["subnetIds"]} == private_subnets
    msk = stack.one("aws:msk/cluster:Cluster")
    clients = msk.inputs["brokerNodeGroupInfo"]["clientSubnets"]
    assert {s.removesuffix("-id") for s in clients} == private_subnets
    assert "connectivityInfo" not in msk.inputs["brokerNodeGroupInfo"]  # no public access


def test_only_load_balancers_are_reachable_from_the_internet(stack: Evaluation) -> None:
    for rule in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        assert rule.inputs.get("cidrIpv4") != ANYWHERE, rule.name
    for subnet in stack.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs.get("mapPublicIpOnLaunch", False) is False, subnet.name
    default = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not default.inputs.get("ingress") and not default.inputs.get("egress")


def test_data_ports_open_only_to_workloads(stack: Evaluation) -> None:
    ingress = stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    by_target: dict[str, set[tuple[str, float]]] = {}
    for rule in ingress:
        source = rule.inputs.get("referencedSecurityGroupId") or rule.inputs.get("cidrIpv4")
        by_target.setdefault(rule.inputs["securityGroupId"], set()).add(
            (source, rule.inputs["fromPort"])
        )
        assert rule.inputs["fromPort"] == rule.inputs["toPort"], "one port per rule"
    sg = f"parley-{stack.stack}-{{}}-id"
    workloads = {sg.format("lambdas"), sg.format("media-nodes")}
    assert by_target[sg.format("database")] == {(w, 5432) for w in workloads}
    assert by_target[sg.format("cache")] == {(w, 6379) for w in workloads}
    kafka_sources = {s for s, _ in by_target[sg.format("kafka")]}
    assert kafka_sources == workloads | {sg.format("kafka")}
    assert {p for _, p in by_target[sg.format("kafka")]} == {9098}


def test_encryption_at_rest(stack: Evaluation) -> None:
    db = stack.one("aws:rds/instance:Instance")
    assert db.inputs["storageEncrypted"] is True and db.inputs["kmsKeyId"]
    cache = stack.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert cache.inputs["atRestEncryptionEnabled"] is True and cache.inputs["kmsKeyId"]
    msk = stack.one("aws:msk/cluster:Cluster")
    assert msk.inputs["encryptionInfo"]["encryptionAtRestKmsKeyArn"]
    buckets = {b.name for b in stack.of_type("aws:s3/bucket:Bucket")}
    sse = stack.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert {c.name for c in sse} == buckets  # every bucket: recordings, log delivery failures
    for config in sse:
        rule = config.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule["sseAlgorithm"] == "aws:kms" and rule["kmsMasterKeyId"], config.name
    for secret in stack.of_type("aws:secretsmanager/secret:Secret"):
        assert secret.inputs["kmsKeyId"], secret.name
    eks = stack.one("aws:eks/cluster:Cluster")
    assert eks.inputs["encryptionConfig"]["resources"] == ["secrets"]
    template = stack.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    for key in stack.of_type("aws:kms/key:Key"):
        assert key.inputs["enableKeyRotation"] is True, key.name
    assert stack.one("aws:sns/topic:Topic").inputs["kmsMasterKeyId"]


def test_encryption_in_transit(stack: Evaluation) -> None:
    params = stack.one("aws:rds/parameterGroup:ParameterGroup")
    assert {"name": "rds.force_ssl", "value": "1"} in params.inputs["parameters"]
    cache = stack.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert cache.inputs["transitEncryptionEnabled"] is True
    assert is_secret(cache.inputs["authToken"])
    msk = stack.one("aws:msk/cluster:Cluster")
    transit = msk.inputs["encryptionInfo"]["encryptionInTransit"]
    assert transit == {"clientBroker": "TLS", "inCluster": True}
    assert msk.inputs["clientAuthentication"] == {"sasl": {"iam": True}, "unauthenticated": False}
    buckets = {b.name for b in stack.of_type("aws:s3/bucket:Bucket")}
    policies = stack.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert {p.name for p in policies} == buckets
    for bucket_policy in policies:
        deny = json.loads(bucket_policy.inputs["policy"])["Statement"][0]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    blocks = stack.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {b.name for b in blocks} == buckets
    for block in blocks:
        assert all(
            block.inputs[k] is True
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        ), block.name


def _allow_statements(stack: Evaluation) -> list[dict[str, Any]]:
    statements = []
    for policy in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
        document = json.loads(policy.inputs["policy"])
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", policy.name
            statements.append({**statement, "policy": policy.name})
    return statements


def test_no_wildcard_iam(stack: Evaluation) -> None:
    """Every statement names its resources, except statements made only of the named actions
    AWS authorizes on Resource "*" alone (iam.UNSCOPED_ACTIONS), which name "*" and only it."""
    statements = _allow_statements(stack)
    assert statements, "expected inline policies"
    unscoped = []
    for statement in statements:
        actions = statement["Action"]
        resources = statement["Resource"]
        assert isinstance(actions, list) and isinstance(resources, list)
        assert resources, statement
        for action in actions:
            assert "*" not in action, statement
        if resources == ["*"]:
            assert set(actions) <= UNSCOPED_ACTIONS.keys(), statement
            unscoped.append(statement)
            continue
        for resource in resources:
            assert resource != "*" and not resource.endswith(":*"), statement
    # Who gets them: Firehose's VPC delivery and Grafana's CloudWatch reads, nobody else.
    assert {s["policy"].removeprefix(f"parley-{stack.stack}-") for s in unscoped} == {
        "log-delivery",
        "grafana",
    }
    assert {a for s in unscoped for a in s["Action"]} == UNSCOPED_ACTIONS.keys()
    for action in UNSCOPED_ACTIONS:
        assert action.split(":")[1].startswith(("Describe", "Get", "List")), action


def test_unscoped_statements_refuse_actions_that_can_be_scoped() -> None:
    import pytest

    with pytest.raises(ValueError, match="can be scoped"):
        allow_unscoped(["ec2:DescribeSubnets", "ec2:CreateNetworkInterface"])


def test_managed_policies_are_the_documented_few(stack: Evaluation) -> None:
    attached = {
        a.inputs["policyArn"]
        for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attached <= set(MANAGED_POLICIES.values())
    assert not any(arn.endswith(("AdministratorAccess", "PowerUserAccess")) for arn in attached)


def test_roles_trust_one_service_each(stack: Evaluation) -> None:
    for role in stack.of_type("aws:iam/role:Role"):
        trust = json.loads(role.inputs["assumeRolePolicy"])
        (statement,) = trust["Statement"]
        assert set(statement["Principal"]) == {"Service"}, role.name
        assert statement["Principal"]["Service"] in {
            "lambda.amazonaws.com",
            "eks.amazonaws.com",
            "ec2.amazonaws.com",
            "pods.eks.amazonaws.com",
            "firehose.amazonaws.com",  # Lambda logs into OpenSearch
            "logs.amazonaws.com",  # the log groups' subscription into Firehose
        }


def test_secret_values_never_appear_in_plain_inputs(stack: Evaluation) -> None:
    """Secrets reach resources only as Pulumi secrets, never in env vars or configs."""
    for resource in stack.resources:
        for key, value in resource.inputs.items():
            if is_secret(value):
                continue
            text = json.dumps(value, default=str)
            for secret in TEST_SECRETS.values():
                assert secret not in text, f"{resource.type} {resource.name}.{key} leaks a secret"
    versions = stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert versions and all(is_secret(v.inputs["secretString"]) for v in versions)
    database_url = next(v for v in versions if "database-url" in v.name)
    assert unwrap_secret(database_url.inputs["secretString"]).startswith(
        "postgresql://parley:db%20pass%2Fwith%3Aodd%40chars@"
    )


def test_optional_secrets_left_out_are_created_empty(stack: Evaluation) -> None:
    names = {s.name.split("-", 2)[-1] for s in stack.of_type("aws:secretsmanager/secret:Secret")}
    assert names == {
        "database-url",
        "redis-url",
        "twilio-auth-token",
        "openai-api-key",
        "session-token-secret",
        "qdrant-api-key",
    }
    filled = {
        v.name.split("-", 2)[-1]
        for v in stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    # The tests configure the Twilio token but not the OpenAI key or the session secret.
    assert filled == {"database-url", "redis-url", "twilio-auth-token"}


def test_everything_is_tagged_with_project_and_stack(stack: Evaluation) -> None:
    provider = stack.one("pulumi:providers:aws")
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags == {"project": "parley", "stack": stack.stack, "environment": stack.stack}
