"""Log search in production: an Amazon OpenSearch Service domain in the VPC, fed by two
well-kept shippers, in the daily indices ``parley logs`` searches (``parley-logs-*``):

- the pods' JSON lines: Fluent Bit on EKS (a DaemonSet, Helm chart), into
  ``parley-logs-YYYY.MM.DD``;
- the Lambdas' lines: a CloudWatch Logs subscription filter on every function's log group into
  one Kinesis Data Firehose stream, which unpacks the CloudWatch envelope (its own decompression
  and message extraction) and delivers into the domain through the VPC, into
  ``parley-logs-lambda-YYYY-MM-DD``. Documents it cannot index land in a private bucket.

Firehose's VPC delivery needs a few ``ec2:Describe*`` actions AWS authorizes only on Resource
"*" (iam.UNSCOPED_ACTIONS, the one named exception to the no-wildcard rule); everything else it
gets is scoped to this domain, stream, bucket and these subnets.

The documents are those of shared/logsearch.py (functions/common/observability.py for the
Lambdas), already redacted by the process that wrote them; the index template and retention
policy are the repo's (infra/observability/opensearch), put by ``parley logs install``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import iam
from .cluster import Cluster
from .config import StackConfig
from .data import private_bucket
from .functions import Functions
from .network import HTTPS_PORT, Network

INDEX_PREFIX = "parley-logs"  # shared/logsearch.py searches parley-logs-*
LAMBDA_INDEX = f"{INDEX_PREFIX}-lambda"  # Firehose appends -YYYY-MM-DD (OneDay rotation)
FAILED_DOCUMENTS_DAYS = 14
FLUENT_BIT_NAMESPACE = "logging"
FLUENT_BIT_SA = "fluent-bit"


def fluent_bit_values(endpoint: str, region: str) -> dict[str, object]:
    """The chart's values: tail the containers' lines, keep Parley's JSON, send to OpenSearch."""
    return {
        "serviceAccount": {"create": True, "name": FLUENT_BIT_SA},
        "config": {
            "inputs": (
                "[INPUT]\n    Name tail\n    Path /var/log/containers/*parley*.log\n"
                "    multiline.parser cri\n    Tag kube.*\n    Mem_Buf_Limit 20MB\n"
            ),
            "filters": (
                "[FILTER]\n    Name parser\n    Match kube.*\n    Key_Name log\n"
                "    Parser json\n    Reserve_Data On\n"
            ),
            "outputs": (
                f"[OUTPUT]\n    Name opensearch\n    Match kube.*\n    Host {endpoint}\n"
                f"    Port {HTTPS_PORT}\n    tls On\n    AWS_Auth On\n    AWS_Region {region}\n"
                f"    Logstash_Format On\n    Logstash_Prefix {INDEX_PREFIX}\n"
                "    Logstash_DateFormat %Y.%m.%d\n    Suppress_Type_Name On\n"
                "    Retry_Limit 5\n"
            ),
        },
    }


class LogSearchDomain(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        network: Network,
        cluster: Cluster,
        functions: Functions,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:LogSearch", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-opensearch",
            vpc_id=network.vpc.id,
            description="OpenSearch log domain: HTTPS from inside the VPC",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": HTTPS_PORT,
                    "to_port": HTTPS_PORT,
                    "cidr_blocks": [network.vpc.cidr_block],
                }
            ],
            opts=child,
        )
        self.domain = aws.opensearch.Domain(
            f"{name}-logs",
            engine_version="OpenSearch_2.19",
            cluster_config={"instance_type": "t3.small.search", "instance_count": 1},
            ebs_options={"ebs_enabled": True, "volume_size": 20, "volume_type": "gp3"},
            vpc_options={
                "subnet_ids": [network.private_subnet_ids[0]],
                "security_group_ids": [group.id],
            },
            encrypt_at_rest={"enabled": True},
            node_to_node_encryption={"enabled": True},
            domain_endpoint_options={
                "enforce_https": True,
                "tls_security_policy": "Policy-Min-TLS-1-2-2019-07",
            },
            opts=child,
        )
        write = iam.allow(
            ["es:ESHttpPost", "es:ESHttpPut", "es:ESHttpGet"],
            [self.domain.arn.apply(lambda arn: f"{arn}/*")],
        )
        # Fluent Bit (a DaemonSet) signs its requests with its Pod Identity role.
        shipper = cluster.pod_role(
            f"{name}-fluent-bit", FLUENT_BIT_NAMESPACE, FLUENT_BIT_SA, [], [write]
        )
        k8s_opts = pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[shipper]
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-logging", metadata={"name": FLUENT_BIT_NAMESPACE}, opts=k8s_opts
        )
        k8s.helm.v3.Release(
            f"{name}-fluent-bit",
            name="fluent-bit",
            chart="fluent-bit",
            namespace=namespace.metadata.name,
            repository_opts={"repo": "https://fluent.github.io/helm-charts"},
            values=self.domain.endpoint.apply(lambda host: fluent_bit_values(host, region)),
            opts=k8s_opts,
        )

        self._lambda_logs(name, cfg, network, functions, region)

        self.endpoint = self.domain.endpoint
        self.register_outputs({"endpoint": self.endpoint})

    def _lambda_logs(
        self, name: str, cfg: StackConfig, network: Network, functions: Functions, region: str
    ) -> None:
        """Every Lambda's log group -> one Firehose stream -> the domain (inside the VPC)."""
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(
            f"{name}-log-delivery",
            description="Lambda log documents OpenSearch refused (Firehose backup)",
            enable_key_rotation=True,
            opts=child,
        )
        failed = private_bucket(
            f"{name}-log-delivery-failures", key, FAILED_DOCUMENTS_DAYS, child, rule="failures"
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-log-delivery",
            vpc_id=network.vpc.id,
            description="Firehose delivery to the OpenSearch log domain",
            egress=[
                {
                    "protocol": "tcp",
                    "from_port": HTTPS_PORT,
                    "to_port": HTTPS_PORT,
                    "cidr_blocks": [network.vpc.cidr_block],
                }
            ],
            opts=child,
        )
        account = self.domain.arn.apply(lambda arn: arn.split(":")[4])
        ec2_arn = pulumi.Output.all(account).apply(lambda a: f"arn:aws:ec2:{region}:{a[0]}")
        interfaces = ec2_arn.apply(lambda base: f"{base}:network-interface/*")
        subnets = [
            pulumi.Output.all(ec2_arn, subnet).apply(lambda a: f"{a[0]}:subnet/{a[1]}")
            for subnet in network.private_subnet_ids
        ]
        security_group = pulumi.Output.all(ec2_arn, group.id).apply(
            lambda a: f"{a[0]}:security-group/{a[1]}"
        )
        delivery = iam.role(
            f"{name}-log-delivery",
            "firehose.amazonaws.com",
            [],
            [
                iam.allow(
                    ["es:ESHttpPost", "es:ESHttpPut", "es:ESHttpGet"],
                    [self.domain.arn.apply(lambda arn: f"{arn}/*")],
                ),
                iam.allow(
                    ["es:DescribeDomain", "es:DescribeDomains", "es:DescribeDomainConfig"],
                    [self.domain.arn],
                ),
                iam.allow(
                    [
                        "s3:AbortMultipartUpload",
                        "s3:GetBucketLocation",
                        "s3:GetObject",
                        "s3:ListBucket",
                        "s3:ListBucketMultipartUploads",
                        "s3:PutObject",
                    ],
                    [failed.arn, failed.arn.apply(lambda arn: f"{arn}/*")],
                ),
                iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [key.arn]),
                iam.allow(["ec2:CreateNetworkInterface"], [interfaces, security_group, *subnets]),
                iam.allow(
                    ["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface"],
                    [interfaces],
                ),
                iam.allow_unscoped(
                    [
                        "ec2:DescribeVpcs",
                        "ec2:DescribeVpcAttribute",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeNetworkInterfaces",
                    ]
                ),
            ],
            parent=self,
        )
        self.lambda_log_stream = aws.kinesis.FirehoseDeliveryStream(
            f"{name}-lambda-logs",
            name=f"parley-{pulumi.get_stack()}-lambda-logs",
            destination="opensearch",
            server_side_encryption={"enabled": True, "key_type": "AWS_OWNED_CMK"},
            opensearch_configuration={
                "domain_arn": self.domain.arn,
                "index_name": LAMBDA_INDEX,
                "index_rotation_period": "OneDay",
                "role_arn": delivery.arn,
                "buffering_interval": 60,
                "buffering_size": 5,
                "retry_duration": 300,
                "s3_backup_mode": "FailedDocumentsOnly",
                "s3_configuration": {
                    "role_arn": delivery.arn,
                    "bucket_arn": failed.arn,
                    "kms_key_arn": key.arn,
                },
                "vpc_config": {
                    "subnet_ids": network.private_subnet_ids,
                    "security_group_ids": [group.id],
                    "role_arn": delivery.arn,
                },
                # CloudWatch Logs hands subscribers gzipped envelopes of many lines: Firehose
                # unpacks them, so each of our JSON lines becomes one document.
                "processing_configuration": {
                    "enabled": True,
                    "processors": [
                        {
                            "type": "Decompression",
                            "parameters": [
                                {"parameter_name": "CompressionFormat", "parameter_value": "GZIP"}
                            ],
                        },
                        {
                            "type": "CloudWatchLogProcessing",
                            "parameters": [
                                {
                                    "parameter_name": "DataMessageExtraction",
                                    "parameter_value": "true",
                                }
                            ],
                        },
                    ],
                },
            },
            # Firehose checks at creation that its role reaches the domain and the VPC.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delivery]),
        )
        stream = self.lambda_log_stream
        subscriber = iam.role(
            f"{name}-log-subscription",
            "logs.amazonaws.com",
            [],
            [iam.allow(["firehose:PutRecord", "firehose:PutRecordBatch"], [stream.arn])],
            parent=self,
        )
        for fn_name, log_group in sorted(functions.log_groups.items()):
            aws.cloudwatch.LogSubscriptionFilter(
                f"{name}-{fn_name}-logs",
                name="parley-log-search",
                log_group=log_group.name,
                filter_pattern="",  # every line: the process already chose what to log
                destination_arn=stream.arn,
                role_arn=subscriber.arn,
                opts=pulumi.ResourceOptions(parent=log_group, depends_on=[subscriber]),
            )
