"""IAM building blocks: scoped policy statements, MSK resource ARNs and roles.

Inline policies name exact resources (secret ARNs, topic ARNs, the bucket). ``*`` resources come
only from the AWS-managed policies in :data:`MANAGED_POLICIES` and from :func:`allow_unscoped`,
each for actions AWS offers no resource-level permission for (ENI management, X-Ray, CloudWatch
agent; the named list :data:`UNSCOPED_ACTIONS`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

_MANAGED = "arn:aws:iam::aws:policy/"
MANAGED_POLICIES = {
    "lambda-vpc": _MANAGED + "service-role/AWSLambdaVPCAccessExecutionRole",
    "xray": _MANAGED + "AWSXRayDaemonWriteAccess",
    "eks-cluster": _MANAGED + "AmazonEKSClusterPolicy",
    "eks-worker": _MANAGED + "AmazonEKSWorkerNodePolicy",
    "eks-cni": _MANAGED + "AmazonEKS_CNI_Policy",
    "ecr-read": _MANAGED + "AmazonEC2ContainerRegistryReadOnly",
    "cloudwatch-agent": _MANAGED + "CloudWatchAgentServerPolicy",
}

Statement = dict[str, Any]

# Actions whose entry in AWS's Service Authorization Reference names no resource type: IAM
# evaluates them only against Resource "*", so a scoped statement would simply deny them. Each
# says who needs it. tests/infra/test_policies.py accepts "*" for a statement made of these
# actions alone, and nowhere else.
UNSCOPED_ACTIONS = {
    # Firehose's delivery into the VPC (Lambda logs to the OpenSearch domain) looks up the
    # subnets and security groups it was given before it places its network interfaces.
    "ec2:DescribeVpcs": "Firehose VPC delivery",
    "ec2:DescribeVpcAttribute": "Firehose VPC delivery",
    "ec2:DescribeSubnets": "Firehose VPC delivery",
    "ec2:DescribeSecurityGroups": "Firehose VPC delivery",
    "ec2:DescribeNetworkInterfaces": "Firehose VPC delivery",
    # Grafana's CloudWatch data source (the Lambdas' webhook metrics): metric reads name no
    # resource.
    "cloudwatch:GetMetricData": "Grafana CloudWatch data source",
    "cloudwatch:GetMetricStatistics": "Grafana CloudWatch data source",
    "cloudwatch:ListMetrics": "Grafana CloudWatch data source",
}


def allow(
    actions: Sequence[str], resources: Sequence[pulumi.Input[str]]
) -> pulumi.Output[Statement]:
    """One Allow statement on exact resources (resolved when the ARNs are known)."""
    return pulumi.Output.all(*resources).apply(
        lambda arns: {"Effect": "Allow", "Action": list(actions), "Resource": list(arns)}
    )


def allow_unscoped(actions: Sequence[str]) -> pulumi.Output[Statement]:
    """One Allow statement on Resource "*", only for actions in :data:`UNSCOPED_ACTIONS`."""
    unknown = sorted(set(actions) - UNSCOPED_ACTIONS.keys())
    if unknown:
        raise ValueError(f"{unknown} can be scoped to resources: use allow()")
    return pulumi.Output.from_input({"Effect": "Allow", "Action": list(actions), "Resource": ["*"]})


def document(statements: Sequence[pulumi.Output[Statement]]) -> pulumi.Output[str]:
    return pulumi.Output.all(*statements).apply(
        lambda items: json.dumps({"Version": "2012-10-17", "Statement": list(items)})
    )


def kafka_arn(cluster_arn: pulumi.Input[str], kind: str, name: str) -> pulumi.Output[str]:
    """ARN of an MSK topic or group: ``...:cluster/C/UUID`` becomes ``...:<kind>/C/UUID/<name>``."""
    return pulumi.Output.from_input(cluster_arn).apply(
        lambda arn: arn.replace(":cluster/", f":{kind}/", 1) + f"/{name}"
    )


def kafka_producer(
    cluster_arn: pulumi.Input[str], topics: Sequence[str]
) -> list[pulumi.Output[Statement]]:
    return [
        allow(["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], [cluster_arn]),
        allow(
            ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
            [kafka_arn(cluster_arn, "topic", topic) for topic in topics],
        ),
    ]


def kafka_consumer(
    cluster_arn: pulumi.Input[str], topics: Sequence[str], group: str
) -> list[pulumi.Output[Statement]]:
    return [
        allow(
            [
                "kafka-cluster:Connect",
                "kafka-cluster:DescribeCluster",
                "kafka:DescribeClusterV2",
                "kafka:GetBootstrapBrokers",
            ],
            [cluster_arn],
        ),
        allow(
            ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
            [kafka_arn(cluster_arn, "topic", topic) for topic in topics],
        ),
        allow(
            ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
            [kafka_arn(cluster_arn, "group", group)],
        ),
    ]


def read_secrets(
    secret_arns: Sequence[pulumi.Input[str]], key_arn: pulumi.Input[str]
) -> list[pulumi.Output[Statement]]:
    return [
        allow(["secretsmanager:GetSecretValue"], secret_arns),
        allow(["kms:Decrypt"], [key_arn]),
    ]


def role(
    name: str,
    service: str,
    managed: Sequence[str],
    statements: Sequence[pulumi.Output[Statement]],
    parent: pulumi.Resource,
    trust_actions: Sequence[str] = ("sts:AssumeRole",),
) -> aws.iam.Role:
    """A role one AWS service may assume, with AWS-managed policies and one scoped inline policy."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": list(trust_actions)}
        ],
    }
    created = aws.iam.Role(
        name, assume_role_policy=json.dumps(trust), opts=pulumi.ResourceOptions(parent=parent)
    )
    child = pulumi.ResourceOptions(parent=created)
    for policy in managed:
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}", role=created.name, policy_arn=MANAGED_POLICIES[policy], opts=child
        )
    if statements:
        aws.iam.RolePolicy(name, role=created.id, policy=document(statements), opts=child)
    return created
