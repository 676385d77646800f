"""Log search in production: an Amazon OpenSearch Service domain in the VPC, and Fluent Bit on
EKS shipping the pods' JSON log lines to it, in the daily indices ``parley logs`` searches.

The Lambdas' logs stay in CloudWatch Logs: a subscription into a VPC domain goes through
Firehose, whose VPC delivery needs ``ec2:Describe*`` on every resource, which this program's
no-wildcard IAM rule refuses (tests/infra/test_policies.py).

The documents are those of shared/logsearch.py, already redacted by the process that wrote
them; the index template and retention policy are the repo's (infra/observability/opensearch),
put by ``parley logs install``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import iam
from .cluster import Cluster
from .network import HTTPS_PORT, Network

INDEX_PREFIX = "parley-logs"  # shared/logsearch.py searches parley-logs-*
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
        network: Network,
        cluster: Cluster,
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

        self.endpoint = self.domain.endpoint
        self.register_outputs({"endpoint": self.endpoint})
