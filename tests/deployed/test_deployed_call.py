"""The configuration ``pulumi up`` gives, run for real: one whole call through every workload.

The Pulumi program is evaluated under mocks whose Secrets Manager entries and recordings bucket
are created in moto. Each Lambda then runs as its own process (a Lambda container: the handler the
program names in ``image_config.commands``, exactly the environment the program gives it, plus
what the Lambda runtime provides); the media node runs as the Deployment's ``parley media serve``
with the Deployment's environment. Secrets are read through Secrets Manager (moto behind
``AWS_ENDPOINT_URL``), as in AWS.

What differs from AWS is only where the servers are (:data:`LOCAL_ENDPOINTS` and the secret values
of the database and Redis URLs), and is asserted to be no more than that.

The call: the signed voice webhook (voice Lambda) answers TwiML with a session token -> the
simulated Twilio caller streams the example audio to the media node -> call events on Kafka -> the
consumer Lambda, fed the MSK event shape -> PostgreSQL -> the analytics Lambda returns the call
with its transcript and disposition.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from moto import mock_aws
from psycopg.conninfo import make_conninfo

from functions.common.app import route_keys
from functions.samples import twilio_event
from media_nodes.simulator.caller import Say, SimulatedCaller, load_wav
from shared.agents.loader import load_agent_file
from tests.conftest import KAFKA_BOOTSTRAP, PG_URL, REDIS_URL, require_server
from tests.functions.conftest import inbound_form, make_tenant, phone
from tests.infra.stack_harness import RecordingMocks, evaluate, stack_config, unwrap_secret
from tests.jaeger import OTLP_HTTP, read_trace, service_of

from .aws_endpoint import aws_endpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = "dev"
REGION = "us-east-1"  # aws:region of Pulumi.dev.yaml
AGENT = REPO_ROOT / "examples" / "agents" / "acme-shop"
CALLER_AUDIO = REPO_ROOT / "examples" / "audio" / "goodbye.wav"

# Where the servers are, and nothing else. The local broker is plaintext without IAM: MSK's IAM
# auth (SASL_SSL + AWS_MSK_IAM) signs with AWS credentials against a TLS listener that cannot run
# offline. The program's values are asserted to be MSK's before they are replaced.
LOCAL_ENDPOINTS = {
    "PARLEY_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
    "PARLEY_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "PARLEY_KAFKA_SASL_MECHANISM": "",
}
PROGRAM_KAFKA_AUTH = {
    "PARLEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "PARLEY_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
}
# Secrets the dev stack leaves for the platform team to fill (docs/deploy.md).
FILLED_BY_THE_PLATFORM_TEAM = {
    "session-token-secret": secrets.token_urlsafe(48),
    "openai-api-key": "sk-unused-without-an-llm-url",
    "qdrant-api-key": "unused-without-a-qdrant-url",
}


class MotoBackedMocks(RecordingMocks):
    """The program's Secrets Manager entries and recordings bucket are created in moto."""

    def __init__(self) -> None:
        super().__init__()
        self.secretsmanager = boto3.client("secretsmanager", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.secret_arns: dict[str, str] = {}  # resource id -> ARN
        self.secrets_by_name: dict[str, str] = {}  # parley/<stack>/<key> -> ARN

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "aws:secretsmanager/secret:Secret":
            arn = self.secretsmanager.create_secret(
                Name=args.inputs["name"], Description=args.inputs.get("description", "")
            )["ARN"]
            outputs["arn"] = arn
            self.secret_arns[resource_id] = arn
            self.secrets_by_name[args.inputs["name"]] = arn
        elif args.typ == "aws:secretsmanager/secretVersion:SecretVersion":
            self.secretsmanager.put_secret_value(
                SecretId=self.secret_arns[args.inputs["secretId"]],
                SecretString=unwrap_secret(args.inputs["secretString"]),
            )
        elif args.typ == "aws:s3/bucket:Bucket":
            self.s3.create_bucket(Bucket=outputs["bucket"])
        return resource_id, outputs


@dataclass
class LambdaFunction:
    name: str
    handler: str
    environment: dict[str, str]


class LambdaContainer:
    """One warm container of a function: ``tests/deployed/lambda_runtime.py`` in a process."""

    def __init__(self, fn: LambdaFunction, runtime_env: dict[str, str], log: IO[str]) -> None:
        self.fn = fn
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.deployed.lambda_runtime", fn.handler],
            cwd=REPO_ROOT,  # LAMBDA_TASK_ROOT: functions/ and shared/ at the top
            env={**fn.environment, **runtime_env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the {self.fn.name} function's process died (see its log)"
        reply = json.loads(line)
        assert "error" not in reply, f"{self.fn.name} failed:\n{reply['error']}"
        return reply["result"]

    def http(self, event: dict[str, Any]) -> tuple[int, str]:
        response = self.invoke(event)
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return int(response["statusCode"]), body

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def http_event(
    method: str, path: str, *, key: str | None = None, body: Any = None
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for the program's $default stage."""
    from functions.samples import http_event as sample_event

    headers = {"authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["content-type"] = "application/json"
    return sample_event(
        method,
        path,
        body=None if body is None else json.dumps(body),
        stage="$default",
        host=API_HOST,
        headers=headers,
    )


API_HOST = "abc123.execute-api.us-east-1.amazonaws.com"  # the harness's API Gateway endpoint
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """moto for the whole module, reachable over HTTP by the workloads' processes."""
    saved = {k: os.environ.get(k) for k in ("AWS_DEFAULT_REGION",)}
    os.environ["AWS_DEFAULT_REGION"] = REGION
    with mock_aws(), aws_endpoint() as url:
        yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def local_database() -> Iterator[str]:
    require_server("postgres", "127.0.0.1", 54329)
    from shared.db import migrate

    name = f"parley_deployed_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(PG_URL, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env_of(container: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """A container's literal variables, and those Kubernetes fills itself (valueFrom)."""
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    from_pod = {e["name"] for e in container["env"] if "valueFrom" in e}
    return plain, from_pod


def _program_collector() -> set[str]:
    """The collector's addresses in the stack: its Service (pods), its load balancer (Lambdas)."""
    from parley_infra import traces  # importable once the harness put infra/pulumi on the path

    return {
        traces.IN_CLUSTER_ENDPOINT,
        traces.lambda_endpoint(stack_config(STACK)["parley:domain"]),
    }


def _with_local_servers(workload: str, env: dict[str, str]) -> dict[str, str]:
    """The program's environment with only the server addresses of :data:`LOCAL_ENDPOINTS`,
    and the trace collector's: a local Jaeger (it receives OTLP/HTTP as the collector does)."""
    env = dict(env)
    if "PARLEY_OTLP_ENDPOINT" in env:
        assert env["PARLEY_OTLP_ENDPOINT"] in _program_collector(), (workload, env)
        env["PARLEY_OTLP_ENDPOINT"] = OTLP_HTTP
    if "PARLEY_KAFKA_BOOTSTRAP" not in env:
        return env
    for name, value in PROGRAM_KAFKA_AUTH.items():
        assert env[name] == value, f"{workload}: {name} is {env[name]!r}, MSK needs {value!r}"
    return {**env, **LOCAL_ENDPOINTS}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240  # the node loads its speech models first
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the media node exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the media node was not ready in time:\n{log.read_text()[-3000:]}")


async def _call_through_kafka(
    topic: str, partition_count: int, caller: SimulatedCaller, call_id: str
) -> list[Any]:
    """Place the call; return its records on ``topic``, through its call.ended event."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA_BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # from here on: this call's records only

        result = await caller.run([Say(load_wav(CALLER_AUDIO), label="goodbye")])
        assert result.greeting_ms is not None, "the agent never greeted the caller"

        found: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                found += [r for r in records if r.key == call_id.encode()]
            if any(json.loads(r.value)["type"] == "call.ended" for r in found):
                return found
        raise AssertionError(f"no call.ended event for {call_id} on Kafka within 60 s")
    finally:
        await consumer.stop()


async def _create_topics(program: Any) -> None:
    """The program's MSK topics, on the local broker (one broker: replication factor 1)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        for topic in program.of_type("aws:msk/topic:Topic"):
            wanted = NewTopic(topic.inputs["name"], int(topic.inputs["partitionCount"]), 1)
            try:
                await admin.create_topics([wanted])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def msk_event(records: list[Any], cluster_arn: str, bootstrap: str) -> dict[str, Any]:
    """The batch an MSK event source mapping hands the consumer Lambda."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        grouped.setdefault(f"{r.topic}-{r.partition}", []).append(
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(r.key).decode(),
                "value": base64.b64encode(r.value).decode(),
                # MSK's shape: one object per header, its value as a list of byte values.
                "headers": [{name: list(value)} for name, value in r.headers],
            }
        )
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": cluster_arn,
        "bootstrapServers": bootstrap,
        "records": grouped,
    }


def test_the_deployed_configuration_takes_a_whole_call(
    aws: str, local_database: str, jaeger_server: str, tmp_path: Path
) -> None:
    require_server("redis", "127.0.0.1", int(REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    host, _, port = KAFKA_BOOTSTRAP.split(",")[0].rpartition(":")
    require_server("kafka", host, int(port))

    mocks = MotoBackedMocks()
    program = evaluate(STACK, mocks=mocks)
    sm = mocks.secretsmanager

    # --- what the program gives each workload --------------------------------------------
    functions = {
        fn.name.rsplit("-", 1)[-1]: LambdaFunction(
            fn.name.rsplit("-", 1)[-1],
            fn.inputs["imageConfig"]["commands"][0],
            dict(fn.inputs["environment"]["variables"]),
        )
        for fn in program.of_type("aws:lambda/function:Function")
    }
    deployment = program.one("kubernetes:apps/v1:Deployment", "-deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    media_env, filled_by_kubernetes = _env_of(container)
    assert filled_by_kubernetes == {"PARLEY_NODE_ID"}

    # The route table is the FastAPI apps' routes, both ways: each route a function's app
    # answers is routed to that function, and nothing else is routed.
    integrations = {
        f"{i.name}-id": i.name.rsplit("-", 1)[-1]
        for i in program.of_type("aws:apigatewayv2/integration:Integration")
    }
    gateway = {
        r.inputs["routeKey"]: integrations[r.inputs["target"].removeprefix("integrations/")]
        for r in program.of_type("aws:apigatewayv2/route:Route")
    }
    answered: dict[str, str] = {}
    for fn in functions.values():
        module = __import__(fn.handler.rpartition(".")[0], fromlist=["_"])
        if hasattr(module, "app"):
            answered |= {route: fn.name for route in route_keys(module.app)}
    assert gateway.pop("$default") == "admin"
    assert set(answered) - set(gateway) == set(), "FastAPI routes API Gateway does not route"
    assert set(gateway) - set(answered) == set(), "API Gateway routes no FastAPI app answers"
    assert gateway == answered

    # --- the secrets: values for the local servers, the rest as the platform team fills them --
    redis_url = REDIS_URL.rsplit("/", 1)[0] + "/13"  # a database of its own: the node registry
    local_values = {"database-url": local_database, "redis-url": redis_url}
    for name, arn in mocks.secrets_by_name.items():
        key = name.rsplit("/", 1)[-1]
        if key in local_values:
            sm.put_secret_value(SecretId=arn, SecretString=local_values[key])
        elif key in FILLED_BY_THE_PLATFORM_TEAM:
            with pytest.raises(sm.exceptions.ResourceNotFoundException):
                sm.get_secret_value(SecretId=arn)  # the program leaves it empty
            sm.put_secret_value(SecretId=arn, SecretString=FILLED_BY_THE_PLATFORM_TEAM[key])
    twilio_token = sm.get_secret_value(
        SecretId=mocks.secrets_by_name[f"parley/{STACK}/twilio-auth-token"]
    )["SecretString"]

    # What the Lambda runtime and the pod's service account provide, never the program.
    provided = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",  # the images' ENV
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": aws,  # moto instead of the regional endpoints
    }
    logs = tmp_path / "logs"
    logs.mkdir()

    # --- the media node: the Deployment's command and environment --------------------------
    node_port = _free_port()
    args = list(container["args"])
    assert args[:2] == ["media", "serve"]
    args[args.index("--host") + 1] = "127.0.0.1"  # the pod's address and port, here local ones
    args[args.index("--port") + 1] = str(node_port)
    assert media_env["PARLEY_DATA_DIR"] in {m["mountPath"] for m in container["volumeMounts"]}
    node_env = {
        **_with_local_servers("media node", media_env),
        "PARLEY_DATA_DIR": str(tmp_path / "pod-volume"),  # the pod's emptyDir volume
        "PARLEY_NODE_ID": f"parley-media-{uuid.uuid4().hex[:5]}",  # metadata.name
        **{k: v for k, v in provided.items() if k not in media_env},
    }
    node_log = logs / "media-node.log"
    with node_log.open("w") as log:
        node = subprocess.Popen(
            [str(Path(sys.executable).with_name("parley")), *args],
            cwd=REPO_ROOT,
            env=node_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    containers: dict[str, LambdaContainer] = {}
    lambda_logs: list[IO[str]] = []
    try:
        for fn in functions.values():
            overlap = set(provided) & set(fn.environment)
            assert not overlap, f"{fn.name}: the program sets what the runtime provides: {overlap}"
            log_file = (logs / f"{fn.name}.log").open("w")
            lambda_logs.append(log_file)
            env = _with_local_servers(fn.name, fn.environment)
            containers[fn.name] = LambdaContainer(
                LambdaFunction(fn.name, fn.handler, env), provided, log_file
            )
        _wait_ready(f"http://127.0.0.1:{node_port}", node, node_log)
        traceparent = _place_the_call(
            containers, program, media_env, node_port, local_database, twilio_token
        )
    except BaseException:
        for path in sorted(logs.iterdir()):
            print(f"==> {path.name}\n{path.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        for running in containers.values():
            running.close()
        for log_file in lambda_logs:
            log_file.close()
        node.terminate()
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()

    # The call is one trace across the deployed processes: the voice Lambda's request, the
    # media node's call, the consumer Lambda's writes, each exporting where the stack told it.
    trace_id = traceparent.split("-")[1]
    wanted = {"parley-functions", "parley-media-node", "parley-consumer"}

    def every_process(trace: dict[str, Any]) -> bool:
        return wanted <= {service_of(trace, span) for span in trace["spans"]}

    found = read_trace(jaeger_server, trace_id, every_process)
    services = {service_of(found, span) for span in found["spans"]}
    assert wanted <= services, services
    names = {span["operationName"] for span in found["spans"]}
    assert {"POST /twilio/voice", "call", "consume call.ended", "postgres write"} <= names, names


def _place_the_call(
    fn: dict[str, LambdaContainer],
    program: Any,
    media_env: dict[str, str],
    node_port: int,
    database_url: str,
    twilio_token: str,
) -> str:
    """The call, start to end; its trace context (the voice webhook's, in the stream)."""
    # A tenant and its key, as `parley tenant create` makes them; the agent and number through
    # the admin API.
    with psycopg.connect(database_url, autocommit=True) as sql:
        tenant = make_tenant(sql)
        operator = make_tenant(sql, ["platform"])
    definition = load_agent_file(AGENT).definition.model_dump(mode="json", exclude_none=True)
    definition.pop("knowledge", None)  # one short call: no documents to embed
    status, body = fn["admin"].http(
        http_event(
            "POST", "/v1/agents", key=tenant.key, body={"definition": definition, "activate": True}
        )
    )
    assert status == 201, body
    number = phone()
    status, body = fn["admin"].http(
        http_event(
            "PUT",
            f"/v1/tenants/{tenant.tenant_id}/phone-numbers/{number}",
            key=operator.key,
            body={"agent_id": "acme-shop"},
        )
    )
    assert status in (200, 201), body

    # The whole API's document, served where API Gateway routes /openapi.json and /docs.
    status, body = fn["admin"].http(http_event("GET", "/openapi.json"))
    assert status == 200, body
    documented = {f"{m.upper()} {p}" for p, ops in json.loads(body)["paths"].items() for m in ops}
    routed = {r.inputs["routeKey"] for r in program.of_type("aws:apigatewayv2/route:Route")}
    assert documented == routed - {"$default", "GET /docs", "GET /openapi.json"}
    assert fn["admin"].http(http_event("GET", "/docs"))[0] == 200
    # An unknown path reaches the admin function through $default: the API's own error shape.
    status, body = fn["admin"].http(http_event("GET", "/v1/nothing-here", key=tenant.key))
    assert status == 404 and "error" in json.loads(body), body

    # Functions this call does not go through still start and answer from PostgreSQL.
    status, body = fn["transfer"].http(
        http_event(
            "POST",
            "/v1/calls/outbound",
            key=tenant.key,
            body={"agent_id": "nobody", "to": "+15555550111"},
        )
    )
    assert status == 404 and "nobody" in body, body
    assert "compacted" in fn["rollups"].invoke(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    )
    assert fn["lostcalls"].invoke(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    ) == {"closed": []}

    # Twilio rings the voice webhook it was given (the stack output), signed with the auth token.
    webhook = program.outputs["twilioVoiceWebhookUrl"]
    assert webhook == f"https://{API_HOST}/twilio/voice"
    sid = "CA" + uuid.uuid4().hex
    status, twiml = fn["voice"].http(
        twilio_event(
            "/twilio/voice",
            inbound_form(sid, number),
            token=twilio_token,
            stage="$default",
            host=API_HOST,
        )
    )
    assert status == 200, twiml
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None, f"no <Connect><Stream> in {twiml}"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters.get("token"), "the stream carries no session token"
    url = str(stream.get("url"))
    public = media_env["PARLEY_MEDIA_PUBLIC_URL"]
    assert url.startswith(public), (url, public)
    call_id = str(parameters["call_id"])

    mapping = program.one("aws:lambda/eventSourceMapping:EventSourceMapping")
    (topic,) = mapping.inputs["topics"]
    asyncio.run(_create_topics(program))

    # The NLB terminates TLS for media.<domain> and forwards to the pod: here, the local node.
    local = url.replace(public, f"ws://127.0.0.1:{node_port}", 1)
    caller = SimulatedCaller(local, parameters=parameters, call_sid=sid, turn_timeout_s=60)
    (declared,) = [t for t in program.of_type("aws:msk/topic:Topic") if t.inputs["name"] == topic]
    partitions = int(declared.inputs["partitionCount"])
    records = asyncio.run(_call_through_kafka(topic, partitions, caller, call_id))

    cluster_arn = mapping.inputs["eventSourceArn"]
    summary = fn["consumer"].invoke(msk_event(records, cluster_arn, "b-1.msk:9098"))
    assert summary["applied"] == len(records) and summary["dead_lettered"] == 0, summary

    status_form = inbound_form(sid, number, CallStatus="completed", CallDuration="12")
    status, body = fn["voice"].http(
        twilio_event(
            "/twilio/status", status_form, token=twilio_token, stage="$default", host=API_HOST
        )
    )
    assert status in (200, 204), body

    status, body = fn["analytics"].http(http_event("GET", f"/v1/calls/{call_id}", key=tenant.key))
    assert status == 200, body
    call = json.loads(body)
    caller_said = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "caller").lower()
    agent_said = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "agent")
    assert "bye" in caller_said, call["turns"]
    assert "Acme Shop" in agent_said, call["turns"]
    assert call["disposition"], call
    assert call["ended_at"], call
    return str(parameters["traceparent"])
