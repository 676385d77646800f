"""Media: the media-node Deployment on EKS, its wss Service behind a TLS NLB, HPA and PDB.

Deploys never drop calls: a rolling update adds a pod before removing one (maxUnavailable 0), a
stopping pod first waits for the NLB to stop sending it new connections (preStop), then on SIGTERM
lets its active calls finish for up to ``media.drainSeconds`` (PARLEY_SHUTDOWN_GRACE_S), inside a
termination grace period longer than both. The PDB lets node drains evict one pod at a time and
the HPA scales on ``parley_active_calls`` per pod and scales in slowly.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from media_nodes.needs import MEDIA_NODE_NEEDS

from . import iam
from .autoscaling import deployment_autoscaler
from .cluster import MEDIA_NODE_LABEL, Cluster
from .config import MediaConfig, StackConfig
from .data import Data
from .environment import secret_arns, workload_environment
from .network import HTTPS_PORT, MEDIA_PORT
from .secrets import Secrets

NAMESPACE = "parley"
SERVICE_ACCOUNT = "media-node"
LABELS = {"app.kubernetes.io/name": "parley-media", "app.kubernetes.io/part-of": "parley"}
ACTIVE_CALLS_METRIC = "parley_active_calls"
PRE_STOP_SECONDS = 20  # NLB target deregistration + endpoint propagation before SIGTERM
GRACE_MARGIN_SECONDS = 15  # flush the event spool and exit after the last call
DATA_DIR = "/var/lib/parley"
# The command the image's ENTRYPOINT (tini -- parley) runs; tests/infra checks the image's CMD.
MEDIA_COMMAND = ("media", "serve", "--host", "0.0.0.0", "--port", str(MEDIA_PORT))
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def tls_nlb_annotations(certificate_arn: str, *, internal: bool) -> dict[str, str]:
    """A Network Load Balancer that terminates TLS on 443 with the stack's ACM certificate."""
    lb = "service.beta.kubernetes.io/aws-load-balancer-"
    annotations = {
        f"{lb}type": "nlb",
        f"{lb}ssl-cert": certificate_arn,
        f"{lb}ssl-ports": str(HTTPS_PORT),
        f"{lb}ssl-negotiation-policy": TLS_POLICY,
        f"{lb}backend-protocol": "tcp",
        f"{lb}cross-zone-load-balancing-enabled": "true",
    }
    if internal:
        annotations[f"{lb}internal"] = "true"
    return annotations


def termination_grace_seconds(drain_seconds: int) -> int:
    return PRE_STOP_SECONDS + drain_seconds + GRACE_MARGIN_SECONDS


class MediaService(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        cluster: Cluster,
        data: Data,
        secrets: Secrets,
        environment: dict[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:MediaService", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
            opts=k8s_opts,
        )
        self.namespace: pulumi.Output[str] = namespace.metadata.name
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": SERVICE_ACCOUNT, "namespace": namespace.metadata.name},
            opts=k8s_opts,
        )
        topics = [topic.name for topic in cfg.kafka.topics]
        recordings = data.recordings.arn.apply(lambda arn: f"{arn}/recordings/*")
        cluster.pod_role(
            f"{name}-pods",
            NAMESPACE,
            SERVICE_ACCOUNT,
            [],
            iam.read_secrets(secret_arns(MEDIA_NODE_NEEDS, secrets), secrets.key.arn)
            + iam.kafka_producer(data.kafka.arn, topics)
            + [
                iam.allow(["s3:PutObject"], [recordings]),
                iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [data.key.arn]),
            ],
        )
        media = cfg.media
        offered: dict[str, pulumi.Input[str]] = {
            **environment,
            "PARLEY_MEDIA_PUBLIC_URL": f"wss://media.{cfg.domain}",
            "PARLEY_MEDIA_MAX_CALLS": str(media.calls_per_pod),
            "PARLEY_SHUTDOWN_GRACE_S": str(media.drain_seconds),
            "PARLEY_DATA_DIR": DATA_DIR,
            "PARLEY_RECORDING_STORE": data.recordings.bucket.apply(
                lambda b: f"s3://{b}/recordings"
            ),
        }
        variables = {
            **workload_environment(
                "media node",
                MEDIA_NODE_NEEDS,
                offered,
                secrets,
                set_elsewhere=["PARLEY_NODE_ID"],
            ),
            **{name: value for name, value in environment.items() if name.startswith("AWS_")},
        }
        env: list[Any] = [{"name": k, "value": v} for k, v in sorted(variables.items())]
        env.append(
            {"name": "PARLEY_NODE_ID", "value_from": {"field_ref": {"field_path": "metadata.name"}}}
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": "parley-media",
                "namespace": namespace.metadata.name,
                "labels": LABELS,
            },
            spec={
                "replicas": media.replicas_min,
                "selector": {"match_labels": LABELS},
                "strategy": {
                    "type": "RollingUpdate",
                    "rolling_update": {"max_surge": 1, "max_unavailable": 0},
                },
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": self._pod_spec(media, env),
                },
            },
            opts=pulumi.ResourceOptions.merge(
                k8s_opts,
                pulumi.ResourceOptions(depends_on=[account], ignore_changes=["spec.replicas"]),
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": "parley-media",
                "namespace": namespace.metadata.name,
                "labels": LABELS,
                "annotations": tls_nlb_annotations(cfg.certificate_arn, internal=False),
            },
            spec={
                "type": "LoadBalancer",
                "selector": LABELS,
                "ports": [
                    {"name": "wss", "port": HTTPS_PORT, "target_port": "media", "protocol": "TCP"}
                ],
            },
            opts=k8s_opts,
        )
        deployment_autoscaler(
            f"{name}-hpa",
            deployment="parley-media",
            namespace=namespace.metadata.name,
            replicas=(media.replicas_min, media.replicas_max),
            metric=("Pods", ACTIVE_CALLS_METRIC),
            average_value=media.target_active_calls,
            # Scale in one pod at a time, long after load falls: each pod holds live calls.
            scale_down={
                "stabilization_window_seconds": 600,
                "policies": [{"type": "Pods", "value": 1, "period_seconds": 300}],
            },
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.deployment])
            ),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": "parley-media", "namespace": namespace.metadata.name},
            spec={"max_unavailable": 1, "selector": {"match_labels": LABELS}},
            opts=k8s_opts,
        )
        # Known once AWS has created the NLB (empty in a preview).
        self.load_balancer_hostname: pulumi.Output[str] = self.service.status.apply(
            lambda status: (
                status.load_balancer.ingress[0].hostname or ""
                if status and status.load_balancer and status.load_balancer.ingress
                else ""
            )
        )
        self.register_outputs({"load_balancer_hostname": self.load_balancer_hostname})

    @staticmethod
    def _pod_spec(media: MediaConfig, env: list[Any]) -> k8s.core.v1.PodSpecArgsDict:
        resources = {"cpu": media.cpu, "memory": media.memory}
        return {
            "service_account_name": SERVICE_ACCOUNT,
            "termination_grace_period_seconds": termination_grace_seconds(media.drain_seconds),
            "node_selector": MEDIA_NODE_LABEL,
            "topology_spread_constraints": [
                {
                    "max_skew": 1,
                    "topology_key": "topology.kubernetes.io/zone",
                    "when_unsatisfiable": "ScheduleAnyway",
                    "label_selector": {"match_labels": LABELS},
                }
            ],
            "security_context": {
                "run_as_non_root": True,
                "run_as_user": 10001,
                "run_as_group": 10001,
                "fs_group": 10001,
                "seccomp_profile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "media-node",
                    "image": media.image,
                    "args": list(MEDIA_COMMAND),
                    "ports": [{"name": "media", "container_port": MEDIA_PORT, "protocol": "TCP"}],
                    "env": env,
                    "resources": {"requests": resources, "limits": resources},
                    "startup_probe": {
                        "http_get": {"path": "/healthz", "port": "media"},
                        "period_seconds": 2,
                        "failure_threshold": 60,  # models load before the first probe passes
                    },
                    "readiness_probe": {
                        "http_get": {"path": "/readyz", "port": "media"},
                        "period_seconds": 5,
                    },
                    "liveness_probe": {
                        "http_get": {"path": "/healthz", "port": "media"},
                        "period_seconds": 10,
                        "failure_threshold": 6,
                    },
                    "lifecycle": {
                        "pre_stop": {"sleep": {"seconds": PRE_STOP_SECONDS}},
                    },
                    "security_context": {
                        "allow_privilege_escalation": False,
                        "read_only_root_filesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volume_mounts": [
                        {"name": "data", "mount_path": DATA_DIR},
                        {"name": "tmp", "mount_path": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "data", "empty_dir": {"size_limit": "2Gi"}},
                {"name": "tmp", "empty_dir": {"medium": "Memory", "size_limit": "256Mi"}},
            ],
        }
