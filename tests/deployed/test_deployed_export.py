"""A large export in the configuration ``pulumi up`` gives: behind API Gateway a Lambda answers at
most 6 MB, so the analytics Lambda's direct export refuses a larger one in words, and an export
job does it instead: the analytics Lambda (its own process, the program's environment and role
settings, secrets from Secrets Manager) hands the job to a real ``parley worker`` (the worker
Deployment's command and environment) through Redis; the worker writes the file to the program's
exports bucket (moto, behind ``AWS_ENDPOINT_URL``) and the Lambda answers a pre-signed URL, which
is downloaded over HTTP.

What differs from AWS is only where the servers are (the database and Redis URLs in the secrets,
moto for AWS) and that traces go nowhere (no collector runs for this test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from functions.samples import http_event as sample_event
from tests.conftest import REDIS_URL, require_server
from tests.deployed.test_deployed_call import (
    API_HOST,
    REGION,
    STACK,
    LambdaContainer,
    LambdaFunction,
    MotoBackedMocks,
    aws,
    local_database,
)
from tests.functions.conftest import make_tenant
from tests.functions.test_export_jobs import many_calls
from tests.infra.stack_harness import evaluate

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
__all__ = ["aws", "local_database"]  # module fixtures of the deployed call, used here too


def _event(method: str, path: str, key: str, query: dict[str, str] | None = None) -> Any:
    return sample_event(
        method,
        path,
        query=query,
        stage="$default",
        host=API_HOST,
        headers={"authorization": f"Bearer {key}"},
    )


@pytest.fixture
def program_env(aws: str, local_database: str) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The analytics Lambda's and the job worker's environments, as the program gives them."""
    mocks = MotoBackedMocks()
    program = evaluate(STACK, mocks=mocks)
    (analytics,) = [
        fn
        for fn in program.of_type("aws:lambda/function:Function")
        if fn.name.endswith("-analytics")
    ]
    worker = program.one("kubernetes:apps/v1:Deployment", "-jobs-worker")
    (container,) = worker.inputs["spec"]["template"]["spec"]["containers"]
    redis_url = REDIS_URL.rsplit("/", 1)[0] + "/11"  # a database of its own: the job queue
    for name, arn in mocks.secrets_by_name.items():
        key = name.rsplit("/", 1)[-1]
        value = {"database-url": local_database, "redis-url": redis_url}.get(key)
        if value is not None:
            mocks.secretsmanager.put_secret_value(SecretId=arn, SecretString=value)
        elif key in ("session-token-secret", "twilio-auth-token"):
            mocks.secretsmanager.put_secret_value(SecretId=arn, SecretString=uuid.uuid4().hex * 2)
    lambda_env = dict(analytics.inputs["environment"]["variables"])
    worker_env = {e["name"]: e["value"] for e in container["env"]}
    assert container["args"][0] == "worker"
    for env in (lambda_env, worker_env):
        env["PARLEY_OTLP_ENDPOINT"] = ""  # no trace collector here
    yield lambda_env, worker_env | {"_ARGS": " ".join(container["args"])}


def test_a_large_export_in_the_deployed_configuration(
    aws: str, local_database: str, program_env: Any, tmp_path: Path
) -> None:
    require_server("redis", "127.0.0.1", int(REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    lambda_env, worker_env = program_env
    args = worker_env.pop("_ARGS").split()
    # One worker process rather than the pod's four: this machine is shared.
    args = [a if not a.startswith("--concurrency=") else "--concurrency=1" for a in args]
    store = lambda_env["PARLEY_EXPORT_STORE"]
    assert store == worker_env["PARLEY_EXPORT_STORE"] and store.startswith("s3://")
    provided = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": aws,
    }
    with psycopg.connect(local_database, autocommit=True) as sql:
        tenant = make_tenant(sql, ["read"])
        tag = many_calls(sql, tenant.tenant_id, 4000, summary_chars=2000)  # about 8.5 MB
    query = {"metadata": f"batch:{tag}", "format": "csv"}

    logs: list[IO[str]] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    container = worker = None
    try:
        logs.append((log_dir / "analytics.log").open("w"))
        container = LambdaContainer(
            LambdaFunction("analytics", "functions.analytics.app.handler", lambda_env),
            provided,
            logs[-1],
        )
        worker_log = (log_dir / "worker.log").open("w")
        logs.append(worker_log)
        worker = subprocess.Popen(
            [sys.executable, "-m", "parley", *args],
            cwd=REPO_ROOT,
            env={
                **{k: v for k, v in worker_env.items() if not k.startswith("AWS_")},
                **provided,
                "PARLEY_DATA_DIR": str(tmp_path / "pod-volume"),
            },
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )

        # The direct export cannot be answered by a Lambda: a 413 that names the way.
        status, body = container.http(_event("GET", "/v1/calls/export", tenant.key, query))
        assert status == 413, body[:300]
        assert "POST /v1/exports" in json.loads(body)["error"]["message"]

        status, body = container.http(_event("POST", "/v1/exports", tenant.key, query))
        assert status == 202, body
        export_id = json.loads(body)["export_id"]
        deadline = time.monotonic() + 120
        while True:
            status, body = container.http(_event("GET", f"/v1/exports/{export_id}", tenant.key))
            assert status == 200, body
            job = json.loads(body)
            if job["status"] not in ("pending", "running"):
                break
            assert time.monotonic() < deadline, f"the export is still {job['status']}"
            time.sleep(0.5)
        assert job["status"] == "ready", job
        assert job["rows"] == 4000 and job["bytes"] > 6 * 1024 * 1024

        link = job["download_url"]
        bucket = store.removeprefix("s3://").split("/")[0]
        assert bucket in link and f"exports/{tenant.tenant_id}/{export_id}.csv" in link
        assert urlsplit(link).query  # pre-signed: it needs no API key
        downloaded = httpx.get(link, timeout=60)
        assert downloaded.status_code == 200, downloaded.text[:300]
        lines = downloaded.text.splitlines()
        assert lines[0].startswith("call_id,twilio_call_sid,")
        assert len(downloaded.content) == job["bytes"]
        assert sum(1 for line in lines if line.startswith(f"{tag}-")) == 4000
    except BaseException:
        for path in sorted(log_dir.iterdir()):
            print(f"==> {path.name}\n{path.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        if container is not None:
            container.close()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
