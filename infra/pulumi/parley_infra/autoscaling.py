"""The one shape of a Deployment's HorizontalPodAutoscaler: scale on the average of one metric,
out at once, in only after a stabilization window (media nodes and job workers both)."""

from __future__ import annotations

from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s


def deployment_autoscaler(
    resource_name: str,
    *,
    deployment: str,
    namespace: pulumi.Input[str],
    replicas: tuple[int, int],
    metric: tuple[Literal["Pods", "External"], str],
    average_value: float,
    scale_down: dict[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    """An HPA for the Deployment named ``deployment``: ``metric`` is (kind, name), a per-pod
    metric ("Pods") or one from outside the pods ("External", averaged over them)."""
    kind, name = metric
    source = {
        "metric": {"name": name},
        "target": {"type": "AverageValue", "average_value": str(average_value)},
    }
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        resource_name,
        metadata={"name": deployment, "namespace": namespace},
        spec={
            "scale_target_ref": {
                "api_version": "apps/v1",
                "kind": "Deployment",
                "name": deployment,
            },
            "min_replicas": replicas[0],
            "max_replicas": replicas[1],
            "metrics": [{"type": kind, kind.lower(): source}],
            "behavior": {"scale_up": {"stabilization_window_seconds": 0}, "scale_down": scale_down},
        },
        opts=opts,
    )
