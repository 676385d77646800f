"""The Lambdas: packaged from the repo, routed by API Gateway, triggered by MSK and a schedule."""

from __future__ import annotations

import importlib.util
import json

import pytest
from parley_infra.config import FunctionsConfig
from parley_infra.lambdas import CONSUMER_GROUP, DEFAULT_ROUTE, LAMBDAS, workload

from .stack_harness import REPO_ROOT, Evaluation, stack_config

SPECS = {spec.name: spec for spec in LAMBDAS}


@pytest.mark.parametrize("spec", LAMBDAS, ids=lambda s: s.name)
def test_each_handler_exists_in_the_repo(spec: object) -> None:
    """A renamed module in functions/ must be renamed in parley_infra/lambdas.py too."""
    module, _, attribute = spec.handler.rpartition(".")  # type: ignore[attr-defined]
    assert importlib.util.find_spec(module) is not None, f"{module} not found under {REPO_ROOT}"
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, attribute, None)), f"{spec.handler} is not callable"  # type: ignore[attr-defined]


def test_every_function_runs_its_handler_from_the_functions_image(stack: Evaluation) -> None:
    image = stack_config(stack.stack)["parley:functions"]["image"]
    functions = stack.of_type("aws:lambda/function:Function")
    assert sorted(fn.name.rsplit("-", 1)[-1] for fn in functions) == sorted(SPECS)
    for fn in functions:
        spec = SPECS[fn.name.rsplit("-", 1)[-1]]
        assert fn.inputs["packageType"] == "Image"
        assert fn.inputs["imageUri"] == image
        assert fn.inputs["imageConfig"] == {"commands": [spec.handler]}
        assert fn.inputs["architectures"] == ["arm64"]
        assert fn.inputs["tracingConfig"] == {"mode": "Active"}
        assert fn.inputs["loggingConfig"]["logFormat"] == "JSON"
        assert fn.inputs["vpcConfig"]["securityGroupIds"] == [f"parley-{stack.stack}-lambdas-id"]


def test_api_routes_reach_the_right_function(stack: Evaluation) -> None:
    integrations = {
        i.name: i.inputs for i in stack.of_type("aws:apigatewayv2/integration:Integration")
    }
    for integration in integrations.values():
        assert integration["integrationType"] == "AWS_PROXY"
        assert integration["payloadFormatVersion"] == "2.0"
    routes = {
        r.inputs["routeKey"]: r.inputs["target"]
        for r in stack.of_type("aws:apigatewayv2/route:Route")
    }
    expected = {
        route: f"integrations/parley-{stack.stack}-{spec.name}-id"
        for spec in LAMBDAS
        for route in workload(spec.handler).routes
    }
    expected[DEFAULT_ROUTE] = f"integrations/parley-{stack.stack}-admin-id"
    assert routes == expected
    assert routes["GET /openapi.json"].endswith("-admin-id")
    assert routes["POST /twilio/voice"].endswith("-voice-id")
    assert routes["GET /v1/calls"].endswith("-analytics-id")
    stage = stack.one("aws:apigatewayv2/stage:Stage")
    assert (
        stage.inputs["defaultRouteSettings"]["throttlingRateLimit"]
        == (stack_config(stack.stack)["parley:functions"]["throttleRate"])
    )
    assert stage.inputs["accessLogSettings"]["destinationArn"]


def test_invoke_permissions_are_scoped_to_their_source(stack: Evaluation) -> None:
    permissions = stack.of_type("aws:lambda/permission:Permission")
    assert {p.inputs["principal"] for p in permissions} == {
        "apigateway.amazonaws.com",
        "events.amazonaws.com",
    }
    for permission in permissions:
        assert permission.inputs["sourceArn"], permission.name
        if permission.inputs["principal"] == "apigateway.amazonaws.com":
            assert permission.inputs["sourceArn"].startswith("arn:aws:execute-api:")


def test_consumer_reads_msk_through_an_event_source_mapping(stack: Evaluation) -> None:
    kafka = stack_config(stack.stack)["parley:kafka"]
    mappings = stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert [m.inputs["topics"] for m in mappings] == [[t] for t in kafka["consumerTopics"]]
    for mapping in mappings:
        assert mapping.inputs["eventSourceArn"].startswith("arn:aws:kafka:")
        assert mapping.inputs["functionName"].endswith("-consumer")
        assert mapping.inputs["amazonManagedKafkaEventSourceConfig"] == {
            "consumerGroupId": CONSUMER_GROUP
        }
        assert mapping.inputs["batchSize"] == kafka.get("consumerBatchSize", 500)
        assert mapping.inputs["startingPosition"] == "TRIM_HORIZON"  # nothing skipped on create


def test_topics_are_the_ones_the_event_bus_uses(stack: Evaluation) -> None:
    from shared.bus.topics import call_events_topic, dead_letter_topic

    prefix = "parley"  # PARLEY_KAFKA_TOPIC_PREFIX default; the program does not override it
    topics = {t.inputs["name"] for t in stack.of_type("aws:msk/topic:Topic")}
    assert topics == {call_events_topic(prefix), dead_letter_topic(prefix)}
    mappings = stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert [m.inputs["topics"] for m in mappings] == [[call_events_topic(prefix)]]


def test_rollups_and_the_lost_call_sweep_run_on_the_configured_schedule(
    stack: Evaluation,
) -> None:
    default = FunctionsConfig.model_fields["rollup_schedule"].default
    schedule = stack_config(stack.stack)["parley:functions"].get("rollupSchedule", default)
    rules = stack.of_type("aws:cloudwatch/eventRule:EventRule")
    assert [r.inputs["scheduleExpression"] for r in rules] == [schedule, schedule]
    targets = stack.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert sorted(t.inputs["arn"].rsplit("-", 1)[-1] for t in targets) == ["lostcalls", "rollups"]


def _actions(stack: Evaluation, function: str) -> set[str]:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", f"-{function}")
    return {a for s in json.loads(policy.inputs["policy"])["Statement"] for a in s["Action"]}


def test_each_function_gets_only_what_its_spec_declares(stack: Evaluation) -> None:
    read_secret = {"secretsmanager:GetSecretValue", "kms:Decrypt"}
    assert _actions(stack, "analytics") == read_secret | {"s3:GetObject"}
    assert _actions(stack, "admin") == read_secret
    assert _actions(stack, "rollups") == read_secret
    assert _actions(stack, "lostcalls") == read_secret
    assert _actions(stack, "voice") == read_secret
    assert _actions(stack, "transfer") == read_secret
    consumer = _actions(stack, "consumer")
    assert {
        "kafka-cluster:ReadData",
        "kafka-cluster:AlterGroup",
        "kafka-cluster:WriteData",
    } <= consumer


def test_analytics_links_export_files_it_may_read_and_hands_jobs_to_the_workers(
    stack: Evaluation,
) -> None:
    fn = stack.one("aws:lambda/function:Function", "-analytics")
    variables = fn.inputs["environment"]["variables"]
    bucket = f"parley-{stack.stack}-exports-bucket"
    assert variables["PARLEY_EXPORT_STORE"] == f"s3://{bucket}/exports"
    assert "PARLEY_REDIS_URL_SECRET_ARN" in variables  # the job queue's broker
    policy = json.loads(stack.one("aws:iam/rolePolicy:RolePolicy", "-analytics").inputs["policy"])
    reads = {
        r for s in policy["Statement"] if s["Action"] == ["s3:GetObject"] for r in s["Resource"]
    }
    assert f"arn:aws:s3:::{bucket}/exports/*" in reads
    writes = {a for s in policy["Statement"] for a in s["Action"] if a != "s3:GetObject"}
    assert not {a for a in writes if a.startswith("s3:")}  # the workers write, not the API


def test_functions_know_the_public_url_twilio_signs(stack: Evaluation) -> None:
    for name in ("voice", "transfer"):
        fn = stack.one("aws:lambda/function:Function", f"-{name}")
        assert (
            fn.inputs["environment"]["variables"]["PARLEY_PUBLIC_BASE_URL"]
            == (stack.outputs["apiUrl"])
        )
    for fn in stack.of_type("aws:lambda/function:Function"):
        assert fn.inputs["environment"]["variables"]["PARLEY_ENV"] == "production"
    consumer = stack.one("aws:lambda/function:Function", "-consumer")
    assert consumer.inputs["environment"]["variables"]["PARLEY_KAFKA_SECURITY_PROTOCOL"] == (
        "SASL_SSL"
    )


def test_each_function_gets_exactly_the_settings_its_code_declares(stack: Evaluation) -> None:
    for spec in LAMBDAS:
        needs = workload(spec.handler).needs
        fn = stack.one("aws:lambda/function:Function", f"-{spec.name}")
        variables = set(fn.inputs["environment"]["variables"])
        assert variables == {
            *needs.settings,
            *(f"{s}_SECRET_ARN" for s in needs.secrets),
            "POWERTOOLS_SERVICE_NAME",
        }, spec.name


def test_functions_read_only_their_own_secrets(stack: Evaluation) -> None:
    for spec in LAMBDAS:
        fn = stack.one("aws:lambda/function:Function", f"-{spec.name}")
        variables = fn.inputs["environment"]["variables"]
        arns = {k for k in variables if k.endswith("_SECRET_ARN")}
        assert arns == {f"{s}_SECRET_ARN" for s in workload(spec.handler).needs.secrets}, spec.name
        policy = stack.one("aws:iam/rolePolicy:RolePolicy", f"-{spec.name}")
        statements = json.loads(policy.inputs["policy"])["Statement"]
        granted = next(s for s in statements if s["Action"] == ["secretsmanager:GetSecretValue"])
        assert sorted(granted["Resource"]) == sorted(variables[a] for a in arns)


def test_kafka_grants_name_exact_topics_and_group(stack: Evaluation) -> None:
    policy = json.loads(stack.one("aws:iam/rolePolicy:RolePolicy", "-consumer").inputs["policy"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    cluster = f"parley-{stack.stack}-kafka/uuid-1"
    assert f"arn:aws:kafka:us-east-1:123456789012:topic/{cluster}/parley.call-events" in resources
    assert f"arn:aws:kafka:us-east-1:123456789012:group/{cluster}/{CONSUMER_GROUP}" in resources


def test_lambda_logs_are_retained_as_configured(stack: Evaluation) -> None:
    retention = stack_config(stack.stack)["parley:functions"]["logRetentionDays"]
    groups = [
        g
        for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")
        if str(g.inputs.get("name", "")).startswith("/aws/lambda/")
    ]
    assert len(groups) == len(SPECS)
    assert {g.inputs["retentionInDays"] for g in groups} == {retention}


def test_every_declared_need_is_a_setting() -> None:
    """A typo in a component's NEEDS would hand it a variable nothing reads."""
    from functions.common.config import FunctionSettings
    from media_nodes.needs import MEDIA_NODE_NEEDS

    fields = {f"PARLEY_{name.upper()}" for name in FunctionSettings.model_fields}
    for needs in [workload(spec.handler).needs for spec in LAMBDAS] + [MEDIA_NODE_NEEDS]:
        assert needs.secrets | needs.settings <= fields, (needs.secrets | needs.settings) - fields
