"""Jobs: the Celery worker Deployment on EKS (HPA on the queue's depth) and exactly one beat.

Workers run the media-node image (it carries the whole ``parley`` CLI) with ``parley worker``.
A stopping worker gets a long grace period so the task it holds can finish; one killed anyway
loses nothing (acks late: the task comes back after the visibility timeout, and a dial is claimed
in the database, so it is never placed twice). Beat runs the periodic jobs (campaign ticks, the
retention purge, the export sweep): one replica, recreated rather than rolled, so two never run
at once; it also serves ``parley_jobs_queue_depth``, which prometheus-adapter gives the workers'
HPA as an external metric. Analytics rollups stay the scheduled Lambda (see docs/campaigns.md).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from functions.jobs.app import NEEDS as JOB_NEEDS
from functions.jobs.metrics import QUEUE_DEPTH_METRIC

from . import iam
from .autoscaling import deployment_autoscaler
from .cluster import MEDIA_NODE_LABEL, Cluster
from .config import JobsConfig, StackConfig
from .data import EXPORTS_PREFIX, Data
from .environment import secret_arns, workload_environment
from .media import DATA_DIR, NAMESPACE
from .secrets import Secrets

SERVICE_ACCOUNT = "job-worker"
WORKER_LABELS = {
    "app.kubernetes.io/name": "parley-jobs-worker",
    "app.kubernetes.io/part-of": "parley",
}
BEAT_LABELS = {"app.kubernetes.io/name": "parley-jobs-beat", "app.kubernetes.io/part-of": "parley"}
METRICS_PORT = 9108
WORKER_GRACE_SECONDS = 120  # a dial or purge batch in hand finishes before SIGKILL


def worker_command(concurrency: int) -> list[str]:
    return ["worker", f"--concurrency={concurrency}"]


BEAT_COMMAND = ["beat", f"--metrics-port={METRICS_PORT}", f"--schedule={DATA_DIR}/beat-schedule"]


class JobWorkers(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        cluster: Cluster,
        data: Data,
        secrets: Secrets,
        environment: dict[str, pulumi.Input[str]],
        namespace: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:JobWorkers", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        jobs = cfg.jobs
        # The media node image carries the whole parley CLI, `parley worker` included.
        image = jobs.image or cfg.media.image
        account = k8s.core.v1.ServiceAccount(
            f"{name}-jobs-sa",
            metadata={"name": SERVICE_ACCOUNT, "namespace": namespace},
            opts=k8s_opts,
        )
        cluster.pod_role(
            f"{name}-job-worker",
            NAMESPACE,
            SERVICE_ACCOUNT,
            [],
            [
                *iam.read_secrets(secret_arns(JOB_NEEDS, secrets), secrets.key.arn),
                # Export jobs write their files (multipart uploads) and the sweep deletes them.
                iam.allow(
                    ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                    [data.exports.arn.apply(lambda a: f"{a}/{EXPORTS_PREFIX}/*")],
                ),
                iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [data.key.arn]),
            ],
        )
        offered = {**environment, "PARLEY_DATA_DIR": DATA_DIR}
        variables = {
            **workload_environment("job worker", JOB_NEEDS, offered, secrets),
            **{k: v for k, v in environment.items() if k.startswith("AWS_")},
        }
        env: list[Any] = [{"name": k, "value": v} for k, v in sorted(variables.items())]
        after_account = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[account])
        )
        self.worker = k8s.apps.v1.Deployment(
            f"{name}-jobs-worker",
            metadata={
                "name": "parley-jobs-worker",
                "namespace": namespace,
                "labels": WORKER_LABELS,
            },
            spec={
                "replicas": jobs.workers_min,
                "selector": {"match_labels": WORKER_LABELS},
                "template": {
                    "metadata": {"labels": WORKER_LABELS},
                    "spec": _pod_spec(
                        image, jobs, env, worker_command(jobs.concurrency), WORKER_GRACE_SECONDS
                    ),
                },
            },
            opts=pulumi.ResourceOptions.merge(
                after_account, pulumi.ResourceOptions(ignore_changes=["spec.replicas"])
            ),
        )
        beat_spec = _pod_spec(image, jobs, env, BEAT_COMMAND, 30)
        beat_spec["containers"][0]["ports"] = [  # type: ignore[index]
            {"name": "metrics", "container_port": METRICS_PORT, "protocol": "TCP"}
        ]
        self.beat = k8s.apps.v1.Deployment(
            f"{name}-jobs-beat",
            metadata={"name": "parley-jobs-beat", "namespace": namespace, "labels": BEAT_LABELS},
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # never two schedulers at once
                "selector": {"match_labels": BEAT_LABELS},
                "template": {"metadata": {"labels": BEAT_LABELS}, "spec": beat_spec},
            },
            opts=after_account,
        )
        deployment_autoscaler(
            f"{name}-jobs-autoscaler",
            deployment="parley-jobs-worker",
            namespace=namespace,
            replicas=(jobs.workers_min, jobs.workers_max),
            metric=("External", QUEUE_DEPTH_METRIC),
            average_value=jobs.target_queue_per_worker,
            scale_down={"stabilization_window_seconds": 300},
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.worker])
            ),
        )
        self.register_outputs({})


def _pod_spec(
    image: str, jobs: JobsConfig, env: list[Any], args: list[str], grace_seconds: int
) -> dict[str, Any]:
    resources = {"cpu": jobs.cpu, "memory": jobs.memory}
    return {
        "service_account_name": SERVICE_ACCOUNT,
        "termination_grace_period_seconds": grace_seconds,
        "node_selector": MEDIA_NODE_LABEL,
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": 10001,
            "run_as_group": 10001,
            "fs_group": 10001,
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "parley",
                "image": image,
                "args": args,
                "env": env,
                "resources": {"requests": resources, "limits": resources},
                "volume_mounts": [{"name": "data", "mount_path": DATA_DIR}],
                "security_context": {
                    "allow_privilege_escalation": False,
                    "read_only_root_filesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [{"name": "data", "empty_dir": {}}],
    }
