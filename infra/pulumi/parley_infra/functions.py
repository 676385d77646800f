"""Functions: the Lambdas of ``functions/`` behind an API Gateway HTTP API, plus their triggers.

All functions run one container image built from the repo (``infra/docker/functions.Dockerfile``:
``functions/`` and ``shared/`` plus their locked dependencies; onnxruntime and the embedding model
make a zip + layer exceed Lambda's 250 MB). Each function starts its own handler from that image
and has its own role granting exactly what its :class:`~parley_infra.lambdas.LambdaSpec` declares
and the secrets its module's ``NEEDS`` names; its environment holds exactly those ``NEEDS``. The API
Gateway routes are the FastAPI apps' own. The consumer reads MSK through an event source mapping;
rollups run on a schedule.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from . import iam
from .config import StackConfig
from .data import EXPORTS_PREFIX, Data
from .environment import secret_arns, workload_environment
from .lambdas import CONSUMER_GROUP, LAMBDAS, LambdaSpec, route_table, workload
from .network import Network
from .secrets import Secrets

ARCHITECTURE = "arm64"  # the image is built for linux/arm64 (Graviton)


class Functions(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        network: Network,
        data: Data,
        secrets: Secrets,
        environment: dict[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("parley:infra:Functions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.api = aws.apigatewayv2.Api(
            f"{name}-api",
            protocol_type="HTTP",
            description="Parley webhooks, admin and analytics APIs",
            opts=child,
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-api-access",
            retention_in_days=cfg.functions.log_retention_days,
            opts=child,
        )
        aws.apigatewayv2.Stage(
            f"{name}-api",
            api_id=self.api.id,
            name="$default",
            auto_deploy=True,
            default_route_settings={
                "throttling_rate_limit": cfg.functions.throttle_rate,
                "throttling_burst_limit": cfg.functions.throttle_burst,
            },
            access_log_settings={
                "destination_arn": access_logs.arn,
                "format": (
                    '{"requestId":"$context.requestId","route":"$context.routeKey",'
                    '"status":"$context.status","latencyMs":"$context.responseLatency",'
                    '"integrationError":"$context.integrationErrorMessage"}'
                ),
            },
            opts=child,
        )
        self.functions: dict[str, aws.lambda_.Function] = {}
        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        routes = route_table()
        for spec in LAMBDAS:
            fn = self._function(name, spec, cfg, network, data, secrets, environment, child)
            self.functions[spec.name] = fn
            own_routes = sorted(route for route, owner in routes.items() if owner == spec.name)
            self._triggers(name, spec, own_routes, cfg, fn, data)
        self.api_url = self.api.api_endpoint
        self.register_outputs({"api_url": self.api_url})

    def _function(
        self,
        name: str,
        spec: LambdaSpec,
        cfg: StackConfig,
        network: Network,
        data: Data,
        secrets: Secrets,
        environment: dict[str, pulumi.Input[str]],
        child: pulumi.ResourceOptions,
    ) -> aws.lambda_.Function:
        needs = workload(spec.handler).needs
        statements = iam.read_secrets(secret_arns(needs, secrets), secrets.key.arn)
        topics = [topic.name for topic in cfg.kafka.topics]
        if spec.produces:
            statements += iam.kafka_producer(data.kafka.arn, topics)
        if spec.consumes:
            statements += iam.kafka_consumer(
                data.kafka.arn, cfg.kafka.consumer_topics, CONSUMER_GROUP
            )
        if spec.reads_recordings:
            statements.append(
                iam.allow(["s3:GetObject"], [data.recordings.arn.apply(lambda a: f"{a}/*")])
            )
        if spec.reads_exports:
            statements.append(
                iam.allow(
                    ["s3:GetObject"],
                    [data.exports.arn.apply(lambda a: f"{a}/{EXPORTS_PREFIX}/*")],
                )
            )
        if spec.reads_recordings or spec.reads_exports:
            statements.append(iam.allow(["kms:Decrypt"], [data.key.arn]))
        role = iam.role(
            f"{name}-{spec.name}",
            "lambda.amazonaws.com",
            ["lambda-vpc", "xray"],
            statements,
            parent=self,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-{spec.name}",
            name=f"/aws/lambda/parley-{pulumi.get_stack()}-{spec.name}",
            retention_in_days=cfg.functions.log_retention_days,
            opts=child,
        )
        self.log_groups[spec.name] = logs
        return aws.lambda_.Function(
            f"{name}-{spec.name}",
            name=f"parley-{pulumi.get_stack()}-{spec.name}",
            package_type="Image",
            image_uri=cfg.functions.image,
            image_config={"commands": [spec.handler]},
            architectures=[ARCHITECTURE],
            role=role.arn,
            memory_size=spec.memory_mb or cfg.functions.memory_mb,
            timeout=cfg.functions.timeout_s,
            vpc_config={
                "subnet_ids": network.private_subnet_ids,
                "security_group_ids": [network.lambda_sg.id],
            },
            environment={
                "variables": {
                    **workload_environment(
                        spec.name,
                        needs,
                        {
                            **environment,
                            "PARLEY_DATA_DIR": "/tmp/parley",  # the only writable path in Lambda
                            # The URL Twilio signs webhooks with and outbound calls call back to.
                            "PARLEY_PUBLIC_BASE_URL": self.api.api_endpoint,
                        },
                        secrets,
                    ),
                    "POWERTOOLS_SERVICE_NAME": f"parley-{spec.name}",
                }
            },
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "JSON", "log_group": logs.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
        )

    def _triggers(
        self,
        name: str,
        spec: LambdaSpec,
        routes: list[str],
        cfg: StackConfig,
        fn: aws.lambda_.Function,
        data: Data,
    ) -> None:
        fn_opts = pulumi.ResourceOptions(parent=fn)
        if routes:
            integration = aws.apigatewayv2.Integration(
                f"{name}-{spec.name}",
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_uri=fn.arn,
                payload_format_version="2.0",
                opts=fn_opts,
            )
            for route in routes:
                aws.apigatewayv2.Route(
                    f"{name}-{spec.name}-{route}",
                    api_id=self.api.id,
                    route_key=route,
                    target=integration.id.apply(lambda i: f"integrations/{i}"),
                    opts=fn_opts,
                )
            aws.lambda_.Permission(
                f"{name}-{spec.name}-api",
                action="lambda:InvokeFunction",
                function=fn.name,
                principal="apigateway.amazonaws.com",
                source_arn=self.api.execution_arn.apply(lambda arn: f"{arn}/*/*"),
                opts=fn_opts,
            )
        if spec.consumes:
            for topic in cfg.kafka.consumer_topics:
                aws.lambda_.EventSourceMapping(
                    f"{name}-{spec.name}-{topic}",
                    event_source_arn=data.kafka.arn,
                    function_name=fn.arn,
                    topics=[topic],
                    starting_position="TRIM_HORIZON",
                    batch_size=cfg.kafka.consumer_batch_size,
                    maximum_batching_window_in_seconds=1,
                    amazon_managed_kafka_event_source_config={"consumer_group_id": CONSUMER_GROUP},
                    opts=pulumi.ResourceOptions(parent=fn, depends_on=[data.kafka_topics[topic]]),
                )
        if spec.scheduled:
            rule = aws.cloudwatch.EventRule(
                f"{name}-{spec.name}",
                schedule_expression=cfg.functions.rollup_schedule,
                description=f"Parley {spec.name}, on a schedule",
                opts=fn_opts,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{spec.name}", rule=rule.name, arn=fn.arn, opts=fn_opts
            )
            aws.lambda_.Permission(
                f"{name}-{spec.name}-schedule",
                action="lambda:InvokeFunction",
                function=fn.name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=fn_opts,
            )
