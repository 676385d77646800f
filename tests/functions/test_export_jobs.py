"""Export jobs (POST /v1/exports) and the 6 MB a buffered Lambda answer can carry: the sync export
refuses more in words; a job writes the same rows (the one row writer) to S3 (moto) in parts or to
a local folder (the embedded mode, run by the API process itself), and answers a download link.
Real PostgreSQL; the deployed configuration is tests/deployed/test_deployed_export.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import psycopg
import pytest
from moto import mock_aws

from functions.analytics import export_jobs, export_store
from functions.analytics.app import handler as analytics
from functions.analytics.export import LAMBDA_BODY_LIMIT
from tests.functions.conftest import Tenant, api_event, invoke

BUCKET = "parley-test-exports"


def request(
    method: str, path: str, tenant: Tenant, query: list[tuple[str, str]] | None = None
) -> Any:
    event = api_event("analytics.get-v1-calls.json", tenant, path=path)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    event["rawQueryString"] = urlencode(query or [])
    event["queryStringParameters"] = dict(query or []) or None
    return invoke(analytics, event)


def many_calls(sql: psycopg.Connection[Any], tenant_id: str, n: int, *, summary_chars: int) -> str:
    """``n`` calls with a long summary each (and a tag in their metadata); returns the tag."""
    tag = uuid.uuid4().hex[:8]
    sql.execute(
        """INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, from_number,
               to_number, status, started_at, duration_ms, disposition, summary, metadata)
           SELECT %(tag)s || '-' || lpad(i::text, 6, '0'), %(tenant)s, 'acme-shop',
                  'CA' || md5(%(tag)s || i), '+15550001111', '+15550002222', 'completed',
                  '2026-11-01T00:00:00Z'::timestamptz + i * interval '1 minute', 60000,
                  'resolved', repeat('Caller asked about order ' || i || '. ', %(repeat)s),
                  jsonb_build_object('batch', %(tag)s, 'n', i::text)
           FROM generate_series(1, %(n)s) AS i""",
        {"tag": tag, "tenant": tenant_id, "n": n, "repeat": max(1, summary_chars // 30)},
    )
    return tag


def wait_ready(tenant: Tenant, export_id: str, run: Any, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = request("GET", f"/v1/exports/{export_id}", tenant)
        assert reply.status == 200, reply.body
        job = reply.json()
        if job["status"] not in ("pending", "running"):
            return dict(job)
        run(asyncio.sleep(0.1))  # the loop runs, and with it the background job
    raise AssertionError(f"export {export_id} still {job['status']} after {seconds} s")


@pytest.fixture
def s3(rt: Any, monkeypatch: Any) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from functions.analytics import recording

    recording._s3.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        rt._settings = rt.settings.model_copy(update={"export_store": f"s3://{BUCKET}/exports"})
        yield client
    recording._s3.cache_clear()


def test_the_sync_export_refuses_what_a_lambda_answer_cannot_carry_and_names_the_way(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    tag = many_calls(sql, tenant.tenant_id, 3500, summary_chars=2000)  # about 7 MB of CSV
    query = [("metadata", f"batch:{tag}"), ("format", "csv")]
    refused = request("GET", "/v1/calls/export", tenant, query)
    assert refused.status == 413, refused.body[:300]
    assert "POST /v1/exports" in refused.json()["error"]["message"]
    # A small one still answers directly, whole.
    small = request("GET", "/v1/calls/export", tenant, [*query, ("max_duration_ms", "1")])
    assert small.status == 200 and small.body.splitlines()[0].startswith("call_id,")
    few = many_calls(sql, tenant.tenant_id, 40, summary_chars=2000)
    whole = request(
        "GET", "/v1/calls/export", tenant, [("metadata", f"batch:{few}"), ("format", "csv")]
    )
    assert whole.status == 200 and len(whole.body.splitlines()) == 41
    assert len(json.dumps(whole.body)) < LAMBDA_BODY_LIMIT


def test_an_export_job_writes_the_same_rows_to_s3_in_parts_and_links_them(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, s3: Any, run: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(export_store, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    tag = many_calls(sql, tenant.tenant_id, 6000, summary_chars=2000)  # about 12 MB of JSON lines
    query = [("metadata", f"batch:{tag}"), ("format", "jsonl")]
    created = request("POST", "/v1/exports", tenant, query)
    assert created.status == 202, created.body
    job = created.json()
    assert job["status"] == "pending" and job["download_url"] is None
    assert job["filters"] == {"metadata": [f"batch:{tag}"]}
    assert created.headers["location"].endswith(f"/v1/exports/{job['export_id']}")

    # A job worker runs it (the route handed it to the queue: the worker's task is this call).
    assert run(export_jobs.run_export(job["export_id"])) == "ready"
    assert run(export_jobs.run_export(job["export_id"])) == "taken"  # a duplicate does nothing
    done = request("GET", f"/v1/exports/{job['export_id']}", tenant).json()
    assert done["status"] == "ready" and done["rows"] == 6000
    assert done["bytes"] > LAMBDA_BODY_LIMIT * 1.5
    link = urlsplit(done["download_url"])
    assert link.path == f"/{BUCKET}/exports/{tenant.tenant_id}/{job['export_id']}.jsonl" or (
        link.netloc.startswith(BUCKET)
    )
    assert "Signature" in link.query  # pre-signed
    stored = s3.get_object(
        Bucket=BUCKET, Key=f"exports/{tenant.tenant_id}/{job['export_id']}.jsonl"
    )
    assert stored["ContentLength"] == done["bytes"]
    assert stored["ContentType"].startswith("application/x-ndjson")
    assert "-" in stored["ETag"]  # a multipart upload: it was never held whole

    # The same bytes as the streamed export (the local server's, unbuffered) of the same query.
    body = stored["Body"].read()
    lines = body.decode().splitlines()
    assert len(lines) == 6000
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert first["metadata"] == {"batch": tag, "n": "1"} and last["metadata"]["n"] == "6000"
    redirect = request("GET", f"/v1/exports/{job['export_id']}/file", tenant)
    assert redirect.status == 307 and BUCKET in redirect.headers["location"]


def test_the_embedded_mode_runs_the_job_itself_and_serves_the_file_it_wrote(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant, run: Any
) -> None:
    rt._settings = rt.settings.model_copy(update={"redis_url": ""})  # no broker, no workers
    tag = many_calls(sql, tenant.tenant_id, 1200, summary_chars=200)
    query = [("metadata", f"batch:{tag}"), ("min_duration_ms", "1000")]
    created = request("POST", "/v1/exports", tenant, [*query, ("format", "csv")])
    assert created.status == 202, created.body
    export_id = created.json()["export_id"]
    job = wait_ready(tenant, export_id, run)
    assert job["status"] == "ready" and job["rows"] == 1200
    assert job["download_url"].endswith(f"/v1/exports/{export_id}/file")
    path = rt.settings.data_dir / "exports" / tenant.tenant_id / f"{export_id}.csv"
    assert path.is_file() and not path.with_name(path.name + ".partial").exists()

    downloaded = request("GET", f"/v1/exports/{export_id}/file", tenant)
    assert downloaded.status == 200 and downloaded.headers["content-type"].startswith("text/csv")
    direct = request("GET", "/v1/calls/export", tenant, [*query, ("format", "csv")])
    # One row writer: the job's file is the direct answer, but for the recording links' base
    # and nothing else.
    assert downloaded.raw == direct.raw
    assert request("GET", f"/v1/exports/{export_id}/file", other_tenant).status == 404
    assert request("GET", f"/v1/exports/{export_id}", other_tenant).status == 404
    listed = request("GET", "/v1/exports", tenant).json()
    assert [e["export_id"] for e in listed][:1] == [export_id]

    # Past its time the sweep deletes the file; the export says so.
    sql.execute(
        "UPDATE call_exports SET expires_at = now() - interval '1 second' WHERE export_id = %s",
        (export_id,),
    )
    swept = run(export_jobs.sweep_exports())
    assert swept["expired"] >= 1 and not path.exists()
    assert request("GET", f"/v1/exports/{export_id}", tenant).json()["status"] == "expired"
    gone = request("GET", f"/v1/exports/{export_id}/file", tenant)
    assert gone.status == 409 and "expired" in gone.body


def test_a_job_whose_worker_died_is_taken_over_and_failures_say_why(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, run: Any
) -> None:
    tag = many_calls(sql, tenant.tenant_id, 10, summary_chars=30)
    created = request("POST", "/v1/exports", tenant, [("metadata", f"batch:{tag}")]).json()
    export_id = created["export_id"]
    # A worker took it and died: its lease runs out, and the sweep sends the job again.
    sql.execute(
        "UPDATE call_exports SET status = 'running', attempts = 1, "
        "leased_until = now() - interval '1 second' WHERE export_id = %s",
        (export_id,),
    )
    assert run(export_jobs.sweep_exports())["resent"] >= 1
    assert run(export_jobs.run_export(export_id)) == "ready"
    row = sql.execute(
        "SELECT status, attempts, rows FROM call_exports WHERE export_id = %s", (export_id,)
    ).fetchone()
    assert row == {"status": "ready", "attempts": 2, "rows": 10}

    # A store it cannot write to: failed, in words, and no half file left behind.
    rt._settings = rt.settings.model_copy(update={"export_store": "/proc/parley-no-such-dir"})
    broken = request("POST", "/v1/exports", tenant, [("metadata", f"batch:{tag}")]).json()
    assert run(export_jobs.run_export(broken["export_id"])) == "failed"
    failed = request("GET", f"/v1/exports/{broken['export_id']}", tenant).json()
    assert failed["status"] == "failed" and failed["error"]


def test_bad_export_requests_are_a_clear_4xx(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    assert request("POST", "/v1/exports", tenant, [("format", "xml")]).status == 422
    assert request("POST", "/v1/exports", tenant, [("colour", "red")]).status == 422
    assert request("POST", "/v1/exports", tenant, [("metadata", "a b:c")]).status == 422
    assert request("POST", "/v1/exports", tenant, [("started_after", "soon")]).status == 422
    assert request("GET", "/v1/exports/exp_nope", tenant).status == 422
    assert request("GET", f"/v1/exports/exp_{'0' * 32}", tenant).status == 404
    for _ in range(export_jobs.MAX_IN_PROGRESS):
        assert request("POST", "/v1/exports", tenant).status == 202
    crowded = request("POST", "/v1/exports", tenant)
    assert crowded.status == 409 and "in progress" in crowded.body
    assert sql.execute(
        "SELECT count(*) AS n FROM call_exports WHERE tenant_id = %s", (tenant.tenant_id,)
    ).fetchone() == {"n": export_jobs.MAX_IN_PROGRESS}
