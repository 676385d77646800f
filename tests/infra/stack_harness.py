"""Evaluate the Pulumi program offline with ``pulumi.runtime.set_mocks`` and record every resource.

The stack's real ``Pulumi.<stack>.yaml`` is the configuration (plus test secrets), so the tests
check what a platform team would deploy. The mocks only echo inputs back and add the few outputs
AWS would compute (ARNs, endpoints); every assertion is on the inputs the program declared.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PULUMI_DIR = REPO_ROOT / "infra" / "pulumi"
if str(PULUMI_DIR) not in sys.path:
    sys.path.insert(0, str(PULUMI_DIR))

TEST_SECRETS = {
    "parley:databasePassword": "db pass/with:odd@chars",
    "parley:redisAuthToken": "redis-auth-token-0123456789",
    "parley:grafanaAdminPassword": "grafana-admin-password",
    "parley:twilioAuthToken": "twilio-token-for-tests",
}
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Evaluation:
    stack: str
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Resource:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, got {found}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Resource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs)))
        outputs = {"name": args.name, **args.inputs, **_computed(args.typ, args.name, args.inputs)}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "zoneIds": ZONES}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": "us-east-1", "name": "us-east-1"}
        raise AssertionError(f"unexpected invoke {args.token}")


def _computed(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs AWS computes that the program reads."""
    service = type_.split(":")[1].split("/")[0]
    out: dict[str, Any] = {"arn": f"arn:aws:{service}:us-east-1:123456789012:{name}"}
    if type_ == "aws:msk/cluster:Cluster":
        out["arn"] = f"arn:aws:kafka:us-east-1:123456789012:cluster/{name}/uuid-1"
        out["bootstrapBrokersSaslIam"] = "b-1.msk:9098,b-2.msk:9098"
    elif type_ == "aws:eks/cluster:Cluster":
        out["endpoint"] = "https://eks.example"
        out["certificateAuthority"] = {"data": "Y2VydA=="}
        out["vpcConfig"] = {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": "sg-cluster"}
    elif type_ == "aws:rds/instance:Instance":
        out["address"] = f"{name}.rds.example"
    elif type_ == "aws:elasticache/replicationGroup:ReplicationGroup":
        out["primaryEndpointAddress"] = f"{name}.cache.example"
    elif type_ == "aws:apigatewayv2/api:Api":
        out["apiEndpoint"] = "https://abc123.execute-api.us-east-1.amazonaws.com"
        out["executionArn"] = "arn:aws:execute-api:us-east-1:123456789012:abc123"
    elif type_ == "aws:s3/bucket:Bucket":
        out["bucket"] = f"{name}-bucket"
        out["arn"] = f"arn:aws:s3:::{name}-bucket"
    elif type_ == "aws:msk/configuration:Configuration":
        out["latestRevision"] = 1
    elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        out["latestVersion"] = 1
    elif type_ == "aws:opensearch/domain:Domain":
        out["endpoint"] = f"vpc-{name}-abc.us-east-1.es.amazonaws.com"
    elif type_ == "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream":
        out["arn"] = f"arn:aws:firehose:us-east-1:123456789012:deliverystream/{inputs['name']}"
    return out


def stack_config(stack: str) -> dict[str, Any]:
    """The ``config:`` map of ``infra/pulumi/Pulumi.<stack>.yaml``."""
    loaded = yaml.safe_load((PULUMI_DIR / f"Pulumi.{stack}.yaml").read_text())
    return dict(loaded["config"])


def _as_cli_value(value: Any) -> str:
    """Config values as the Pulumi CLI hands them to a program: strings, objects as JSON."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(
    stack: str,
    overrides: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    mocks: RecordingMocks | None = None,
) -> Evaluation:
    """Run the program for one stack under mocks and return what it declared."""
    config = stack_config(stack)
    config.update(overrides or {})
    secret_values = TEST_SECRETS if secrets is None else secrets
    flat = {key: _as_cli_value(value) for key, value in {**config, **secret_values}.items()}

    mocks = mocks or RecordingMocks()
    # Pulumi's mocks run on the thread's current loop; an earlier async test may have left none.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="parley", stack=stack, preview=False)
    pulumi.runtime.set_all_config(flat, list(secret_values))
    from parley_infra.program import build  # after the mocks, as Pulumi requires

    evaluation = Evaluation(stack)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        outputs = build()
        return pulumi.Output.all(
            **{k: pulumi.Output.from_input(v) for k, v in outputs.items()}
        ).apply(evaluation.outputs.update)

    with warnings.catch_warnings():  # pulumi_aws flags its own deprecated modules as they load
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\.")
        run()
    evaluation.resources = list(mocks.resources)
    return evaluation


def unwrap_secret(value: Any) -> Any:
    """A secret input arrives as {<sig>: ..., "value": v}; return v (or the value itself)."""
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value
