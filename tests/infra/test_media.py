"""The media nodes on EKS: only wss exposed, deploys and node drains never cut a call."""

from __future__ import annotations

import json

from parley_infra.media import ACTIVE_CALLS_METRIC, PRE_STOP_SECONDS, termination_grace_seconds

from .stack_harness import Evaluation, stack_config


def _container(stack: Evaluation) -> dict:
    deployment = stack.one("kubernetes:apps/v1:Deployment", "-deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    return container


def _media_config(stack: Evaluation) -> dict:
    return stack_config(stack.stack)["parley:media"]


def test_service_exposes_only_wss_on_443_through_a_tls_nlb(stack: Evaluation) -> None:
    service = stack.one("kubernetes:core/v1:Service", "-service")
    assert service.inputs["spec"]["type"] == "LoadBalancer"
    assert service.inputs["spec"]["ports"] == [
        {"name": "wss", "port": 443, "targetPort": "media", "protocol": "TCP"}
    ]
    annotations = service.inputs["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert annotations[prefix + "type"] == "nlb"
    assert annotations[prefix + "ssl-ports"] == "443"
    assert annotations[prefix + "ssl-cert"] == stack_config(stack.stack)["parley:certificateArn"]
    assert annotations[prefix + "ssl-negotiation-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert prefix + "internal" not in annotations  # Twilio must reach it
    ports = _container(stack)["ports"]
    assert [p["name"] for p in ports] == ["media"]


def test_grafana_is_internal_only(stack: Evaluation) -> None:
    grafana = stack.one("kubernetes:core/v1:Service", "-grafana")
    annotations = grafana.inputs["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert [p["port"] for p in grafana.inputs["spec"]["ports"]] == [443]


def test_drain_settings_let_every_call_finish(stack: Evaluation) -> None:
    deployment = stack.one("kubernetes:apps/v1:Deployment", "-deployment")
    spec = deployment.inputs["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    container = _container(stack)
    drain = _media_config(stack)["drainSeconds"]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": PRE_STOP_SECONDS}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PARLEY_SHUTDOWN_GRACE_S"] == str(drain)
    # The kubelet must not SIGKILL before preStop + the app's own drain are over.
    assert pod["terminationGracePeriodSeconds"] == termination_grace_seconds(drain)
    assert pod["terminationGracePeriodSeconds"] > PRE_STOP_SECONDS + drain
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pdb_lets_node_drains_take_one_pod_at_a_time(stack: Evaluation) -> None:
    pdb = stack.one("kubernetes:policy/v1:PodDisruptionBudget")
    deployment = stack.one("kubernetes:apps/v1:Deployment", "-deployment")
    assert pdb.inputs["spec"]["maxUnavailable"] == 1
    assert pdb.inputs["spec"]["selector"] == deployment.inputs["spec"]["selector"]


def test_hpa_scales_on_active_calls_and_scales_in_slowly(stack: Evaluation) -> None:
    hpa = stack.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "-hpa")
    media = _media_config(stack)
    spec = hpa.inputs["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (
        media["replicasMin"],
        media["replicasMax"],
    )
    (metric,) = spec["metrics"]
    assert metric["pods"]["metric"]["name"] == ACTIVE_CALLS_METRIC == "parley_active_calls"
    assert metric["pods"]["target"]["averageValue"] == str(media["targetActiveCalls"])
    assert media["targetActiveCalls"] < media["callsPerPod"]  # headroom while new pods start
    scale_down = spec["behavior"]["scaleDown"]
    assert scale_down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert spec["scaleTargetRef"]["name"] == "parley-media"


def test_pods_are_sized_from_config_and_locked_down(stack: Evaluation) -> None:
    media = _media_config(stack)
    container = _container(stack)
    expected = {"cpu": media["cpu"], "memory": media["memory"]}
    assert container["resources"] == {"requests": expected, "limits": expected}
    assert container["image"] == media["image"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pod = stack.one("kubernetes:apps/v1:Deployment", "-deployment").inputs["spec"]["template"][
        "spec"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "media-node"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PARLEY_MEDIA_MAX_CALLS"] == str(media["callsPerPod"])
    assert env["PARLEY_ALLOW_UNSIGNED_STREAMS"] == "false"
    assert env["PARLEY_ENV"] == "production"
    assert env["PARLEY_MEDIA_PUBLIC_URL"].startswith("wss://media.")
    assert env["PARLEY_DATABASE_URL_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert "PARLEY_DATABASE_URL" not in env  # the value is read from Secrets Manager at start


def test_pod_role_reaches_only_its_secrets_topics_and_bucket(stack: Evaluation) -> None:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "-pods")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeCluster",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:WriteData",
        "s3:PutObject",
    }
    put = next(s for s in statements if s["Action"] == ["s3:PutObject"])
    assert put["Resource"] == [f"arn:aws:s3:::parley-{stack.stack}-recordings-bucket/recordings/*"]
    association = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "-pods")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        "parley",
        "media-node",
    )


def test_eks_api_and_nodes(stack: Evaluation) -> None:
    eks = stack.one("aws:eks/cluster:Cluster")
    media = _media_config(stack)
    vpc = eks.inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is bool(media["adminCidrs"])
    assert vpc.get("publicAccessCidrs", []) == media["adminCidrs"]
    template = stack.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"  # IMDSv2
    assert template.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1  # not from pods
    group = stack.one("aws:eks/nodeGroup:NodeGroup")
    scaling = group.inputs["scalingConfig"]
    assert (scaling["minSize"], scaling["desiredSize"], scaling["maxSize"]) == (
        media["nodesMin"],
        media["nodesDesired"],
        media["nodesMax"],
    )
    assert group.inputs["capacityType"] == "ON_DEMAND"
