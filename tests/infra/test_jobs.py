"""The job workers on EKS: a worker Deployment scaled on the queue's depth and one beat."""

from __future__ import annotations

from parley_infra.jobs import BEAT_COMMAND, METRICS_PORT, worker_command
from parley_infra.observability import adapter_values

from functions.jobs.metrics import QUEUE_DEPTH_METRIC

from .stack_harness import Evaluation, stack_config


def _container(deployment: object) -> dict:
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]  # type: ignore[attr-defined]
    return container


def test_workers_run_parley_worker_with_what_they_need_and_no_more(stack: Evaluation) -> None:
    worker = stack.one("kubernetes:apps/v1:Deployment", "-jobs-worker")
    container = _container(worker)
    assert container["args"] == worker_command(4)
    media = stack_config(stack.stack)["parley:media"]
    assert container["image"] == media["image"]  # the image with the whole parley CLI
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PARLEY_PUBLIC_BASE_URL"].startswith("https://")  # Twilio calls back the API
    assert {"PARLEY_DATABASE_URL_SECRET_ARN", "PARLEY_REDIS_URL_SECRET_ARN"} <= env.keys()
    assert "PARLEY_TWILIO_AUTH_TOKEN_SECRET_ARN" in env
    # The post-call analysis asks the deployment's LLM; the media node's own settings stay out.
    assert "PARLEY_LLM_API_KEY_SECRET_ARN" in env and "PARLEY_LLM_BASE_URL" in env
    assert "PARLEY_MEDIA_MAX_CALLS" not in env and "PARLEY_QDRANT_URL" not in env
    pod = worker.inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "job-worker"
    assert pod["terminationGracePeriodSeconds"] >= 60  # the task in hand finishes


def test_exactly_one_beat_that_serves_the_queue_depth(stack: Evaluation) -> None:
    beat = stack.one("kubernetes:apps/v1:Deployment", "-jobs-beat")
    spec = beat.inputs["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    container = _container(beat)
    assert container["args"] == BEAT_COMMAND
    assert container["ports"] == [
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
    ]
    monitor = stack.one("kubernetes:monitoring.coreos.com/v1:PodMonitor", "jobs-scrape")
    assert monitor.inputs["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_the_worker_hpa_scales_on_the_queue_depth(stack: Evaluation) -> None:
    hpa = stack.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "-jobs-autoscaler")
    spec = hpa.inputs["spec"]
    assert spec["scaleTargetRef"]["name"] == "parley-jobs-worker"
    (metric,) = spec["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == QUEUE_DEPTH_METRIC
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "20"}
    rules = adapter_values()["rules"]
    assert [r["name"]["as"] for r in rules["external"]] == [QUEUE_DEPTH_METRIC]  # type: ignore[index]


def test_workers_write_export_files_to_the_exports_bucket_only(stack: Evaluation) -> None:
    import json

    bucket = f"parley-{stack.stack}-exports-bucket"
    worker = stack.one("kubernetes:apps/v1:Deployment", "-jobs-worker")
    env = {e["name"]: e["value"] for e in _container(worker)["env"]}
    assert env["PARLEY_EXPORT_STORE"] == f"s3://{bucket}/exports"
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "-job-worker")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    writes = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert sorted(writes["Action"]) == [
        "s3:AbortMultipartUpload",  # a failed export leaves no parts behind
        "s3:DeleteObject",  # the sweep deletes a file past its time
        "s3:PutObject",
    ]
    assert writes["Resource"] == [f"arn:aws:s3:::{bucket}/exports/*"]
    kms = next(s for s in statements if "kms:GenerateDataKey" in s["Action"])
    # The data key (the buckets'), not the secrets' key: the mocks name both parley-<stack>-key.
    assert any("data at rest" in k.inputs["description"] for k in stack.of_type("aws:kms/key:Key"))
    assert kms["Resource"] == [f"arn:aws:kms:us-east-1:123456789012:parley-{stack.stack}-key"]
    exports = stack.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "-exports"
    )
    assert exports.inputs["rules"][0]["expiration"] == {"days": 8}  # longer than any export TTL
    assert stack.outputs["exportsBucket"] == bucket
