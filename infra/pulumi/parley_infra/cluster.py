"""Cluster: the EKS control plane, the media node group and a Kubernetes provider for it.

The API endpoint is private unless ``media.adminCidrs`` lists networks; Kubernetes secrets are
encrypted with a KMS key; nodes run in private subnets, require IMDSv2 with one hop (pods cannot
borrow the node's role) and get AWS credentials per pod through EKS Pod Identity.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import iam
from .config import MediaConfig
from .network import Network

MEDIA_NODE_LABEL = {"parley.dev/role": "media"}


class Cluster(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: MediaConfig,
        network: Network,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description="EKS secrets envelope encryption",
            enable_key_rotation=True,
            opts=child,
        )
        cluster_role = iam.role(
            f"{name}-control-plane",
            "eks.amazonaws.com",
            ["eks-cluster"],
            [],
            parent=self,
            trust_actions=("sts:AssumeRole", "sts:TagSession"),
        )
        self.eks = aws.eks.Cluster(
            f"{name}-eks",
            version=cfg.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config={
                "subnet_ids": network.private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": bool(cfg.admin_cidrs),
                "public_access_cidrs": [str(c) for c in cfg.admin_cidrs] or None,
            },
            encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": True,
            },
            opts=child,
        )
        node_role = iam.role(
            f"{name}-nodes",
            "ec2.amazonaws.com",
            ["eks-worker", "eks-cni", "ecr-read"],
            [],
            parent=self,
        )
        template = aws.ec2.LaunchTemplate(
            f"{name}-media-nodes",
            vpc_security_group_ids=[
                self.eks.vpc_config.cluster_security_group_id,
                network.media_sg.id,
            ],
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {"volume_size": 50, "volume_type": "gp3", "encrypted": "true"},
                }
            ],
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}-media",
            cluster_name=self.eks.name,
            node_role_arn=node_role.arn,
            subnet_ids=network.private_subnet_ids,
            instance_types=list(cfg.node_instance_types),
            capacity_type="ON_DEMAND",  # spot reclaims would cut live calls
            scaling_config={
                "min_size": cfg.nodes_min,
                "desired_size": cfg.nodes_desired,
                "max_size": cfg.nodes_max,
            },
            update_config={"max_unavailable": 1},
            labels=MEDIA_NODE_LABEL,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["scaling_config.desired_size"]
            ),
        )
        aws.eks.Addon(
            f"{name}-pod-identity",
            cluster_name=self.eks.name,
            addon_name="eks-pod-identity-agent",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_group]),
        )
        self.kubeconfig = pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data
        ).apply(lambda args: _kubeconfig(*args, region=region))
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_group]),
        )
        self.register_outputs({"cluster_name": self.eks.name})

    def pod_role(
        self,
        name: str,
        namespace: str,
        service_account: str,
        managed: list[str],
        statements: list[pulumi.Output[iam.Statement]],
    ) -> aws.iam.Role:
        """A role one Kubernetes service account gets through EKS Pod Identity."""
        role = iam.role(
            name,
            "pods.eks.amazonaws.com",
            managed,
            statements,
            parent=self,
            trust_actions=("sts:AssumeRole", "sts:TagSession"),
        )
        aws.eks.PodIdentityAssociation(
            name,
            cluster_name=self.eks.name,
            namespace=namespace,
            service_account=service_account,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=role),
        )
        return role


def _kubeconfig(name: str, endpoint: str, ca_data: str, *, region: str) -> str:
    """A kubeconfig that authenticates with ``aws eks get-token`` (no long-lived credentials)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
        }
    )
