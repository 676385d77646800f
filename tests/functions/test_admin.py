"""The admin Lambda: tenants, API keys, agents and versions, numbers, knowledge, settings."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from functions.admin.app import handler
from functions.cli import tenant_app
from functions.samples import load_sample
from tests.functions.conftest import Tenant, add_key, api_event, invoke, make_tenant, phone

AGENT_YAML = """
id: support-bot
name: Support bot
greeting: Hi, this is support.
start: done
escalation:
  target: "+15550002222"
states:
  done:
    say: Goodbye.
    action: {type: end, disposition: resolved}
"""


def _call(sample: str, tenant: Tenant | None, **kwargs: Any) -> Any:
    return invoke(handler, api_event(sample, tenant, **kwargs))


def test_a_platform_key_creates_tenants_whose_first_key_works_and_is_stored_hashed(
    rt: Any, sql: psycopg.Connection[Any]
) -> None:
    platform = make_tenant(sql, ["platform"])
    reply = _call("admin.post-v1-tenants.json", platform)
    assert reply.status == 201, reply.body
    created = reply.json()
    key = created["api_key"]["key"]
    assert created["api_key"]["scopes"] == ["admin"]
    stored = sql.execute(
        "SELECT key_hash FROM api_keys WHERE key_id = %s", (created["api_key"]["key_id"],)
    ).fetchone()
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest() != key
    new = Tenant(created["tenant"]["tenant_id"], key, created["api_key"]["key_id"])
    me = _call("admin.get-v1-tenant.json", new)
    assert me.status == 200 and me.json()["tenant_id"] == new.tenant_id
    # A tenant's admin key cannot create tenants.
    assert _call("admin.post-v1-tenants.json", new).status == 403


def test_missing_unknown_and_revoked_keys_get_401(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    missing = _call("admin.get-v1-tenant.json", None)
    assert missing.status == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    forged = Tenant(tenant.tenant_id, tenant.key[:-4] + "AAAA", tenant.key_id)
    assert _call("admin.get-v1-tenant.json", forged).status == 401
    assert (
        _call("admin.get-v1-tenant.json", None, headers={"authorization": "Basic abc"}).status
        == 401
    )

    created = _call("admin.post-v1-api-keys.json", tenant).json()
    reader = Tenant(tenant.tenant_id, created["key"], created["key_id"])
    assert _call("admin.get-v1-tenant.json", reader).status == 200
    listed = _call("admin.get-v1-api-keys.json", tenant).json()
    assert created["key_id"] in [k["key_id"] for k in listed]
    assert all("key" not in k for k in listed)
    revoke = _call(
        "admin.delete-v1-api-keys-key_id.json", tenant, path=f"/v1/api-keys/{reader.key_id}"
    )
    assert revoke.status == 204
    refused = _call("admin.get-v1-tenant.json", reader)
    assert refused.status == 401 and "revoked" in refused.json()["error"]["message"]


def test_scopes_are_enforced(rt: Any, sql: psycopg.Connection[Any], tenant: Tenant) -> None:
    reader = add_key(sql, tenant.tenant_id, ["read"])
    writer = add_key(sql, tenant.tenant_id, ["write"])
    assert _call("admin.get-v1-agents.json", reader).status == 200
    denied = _call("admin.post-v1-agents.json", reader)
    assert denied.status == 403 and "'write'" in denied.json()["error"]["message"]
    assert _call("admin.post-v1-agents.json", writer).status == 201
    assert _call("admin.get-v1-api-keys.json", writer).status == 403
    platform_key = {"name": "x", "scopes": ["platform"]}
    assert _call("admin.post-v1-api-keys.json", tenant, body=platform_key).status == 403


def test_agents_are_validated_versioned_activated_and_rolled_back(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    first = _call("admin.post-v1-agents.json", tenant)
    assert first.status == 201 and first.json()["version"] == 1 and first.json()["active"]
    second = _call(
        "admin.post-v1-agents.json",
        tenant,
        body={"yaml": AGENT_YAML.replace("support-bot", "acme-shop")},
    )
    assert second.json()["version"] == 2
    staged = _call(
        "admin.post-v1-agents.json",
        tenant,
        body={"yaml": AGENT_YAML.replace("support-bot", "acme-shop"), "activate": False},
    )
    assert staged.json() | {"definition": None} == staged.json() | {
        "definition": None,
        "version": 3,
        "active": False,
    }

    detail = _call("admin.get-v1-agents-agent_id.json", tenant).json()
    assert detail["active_version"] == 2 and detail["latest_version"] == 3
    assert [v["version"] for v in detail["versions"]] == [1, 2, 3]
    activated = _call("admin.post-v1-agents-agent_id-activate.json", tenant, body={"version": 3})
    assert activated.json()["active_version"] == 3
    rolled = _call("admin.post-v1-agents-agent_id-rollback.json", tenant)
    assert rolled.status == 200 and rolled.json()["active_version"] == 2
    _call("admin.post-v1-agents-agent_id-rollback.json", tenant)
    stuck = _call("admin.post-v1-agents-agent_id-rollback.json", tenant)
    assert stuck.status == 409
    version = _call("admin.get-v1-agents-agent_id-versions-version.json", tenant)
    assert version.json()["definition"]["id"] == "acme-shop" and version.json()["active"]
    missing = _call("admin.post-v1-agents-agent_id-activate.json", tenant, body={"version": 99})
    assert missing.status == 404
    recording = _call("admin.put-v1-agents-agent_id-recording.json", tenant)
    assert recording.json()["recording"] is True


def test_invalid_definitions_get_located_problems(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    broken = AGENT_YAML.replace("start: done", "start: nowhere")
    reply = _call("admin.post-v1-agents.json", tenant, body={"yaml": broken})
    assert reply.status == 422
    error = reply.json()["error"]
    assert error["code"] == "invalid_agent" and any(
        "nowhere" in d["message"] for d in error["details"]
    )
    check = _call("admin.post-v1-agents-validate.json", tenant, body={"yaml": broken}).json()
    assert check["valid"] is False and check["problems"][0]["line"] is not None
    ok = _call("admin.post-v1-agents-validate.json", tenant).json()
    assert ok == {"valid": True, "agent_id": "acme-shop", "problems": []}
    assert (
        sql.execute(
            "SELECT count(*) AS n FROM agents WHERE tenant_id = %s", (tenant.tenant_id,)
        ).fetchone()["n"]
        == 0
    )
    both = _call("admin.post-v1-agents.json", tenant, body={"yaml": AGENT_YAML, "definition": {}})
    assert both.status == 422
    unknown = _call("admin.post-v1-agents.json", tenant, body={"yaml": AGENT_YAML, "colour": "red"})
    assert unknown.status == 422 and "colour" in unknown.body
    not_json = _call("admin.post-v1-agents.json", tenant, body="{not json")
    assert not_json.status == 422


def test_numbers_route_to_agents_and_belong_to_one_tenant(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    platform = make_tenant(sql, ["platform"])
    number = phone()
    path = f"/v1/phone-numbers/{number}"
    give = f"/v1/tenants/{tenant.tenant_id}/phone-numbers/{number}"
    give_event = "admin.put-v1-tenants-tenant_id-phone-numbers-number.json"
    assert _call(give_event, platform, path=give).status == 404  # the tenant has no such agent
    _call("admin.post-v1-agents.json", tenant)
    _call("admin.post-v1-agents.json", other_tenant)
    given = _call(give_event, platform, path=give)
    assert given.status == 200 and given.json()["number"] == number
    routed = _call("admin.put-v1-phone-numbers-number.json", tenant, path=path)
    assert routed.status == 200 and routed.json()["agent_id"] == "acme-shop"
    assert _call(give_event, tenant, path=give).status == 403  # a tenant key cannot give numbers
    taken = _call(
        give_event, platform, path=f"/v1/tenants/{other_tenant.tenant_id}/phone-numbers/{number}"
    )
    assert taken.status == 409 and tenant.tenant_id not in taken.body
    assert _call("admin.delete-v1-phone-numbers-number.json", other_tenant, path=path).status == 404
    listed = _call("admin.get-v1-phone-numbers.json", tenant).json()
    assert [n["number"] for n in listed] == [number]
    bad = _call("admin.put-v1-phone-numbers-number.json", tenant, path="/v1/phone-numbers/12345")
    assert bad.status == 422
    assert _call("admin.delete-v1-phone-numbers-number.json", tenant, path=path).status == 204
    assert _call("admin.get-v1-phone-numbers.json", tenant).json() == []


def test_a_tenant_cannot_claim_a_number_and_learns_nothing_about_other_tenants(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    _call("admin.post-v1-agents.json", tenant)
    _call("admin.post-v1-agents.json", other_tenant)
    free, owned = phone(), phone()
    sql.execute(
        "INSERT INTO phone_numbers (number, tenant_id, agent_id) VALUES (%s, %s, 'acme-shop')",
        (owned, other_tenant.tenant_id),
    )
    answers = []
    for number in (free, owned):
        reply = _call(
            "admin.put-v1-phone-numbers-number.json", tenant, path=f"/v1/phone-numbers/{number}"
        )
        assert reply.status == 404, reply.body
        error = reply.json()["error"]
        answers.append((error["code"], error["message"].replace(number, "N")))
        assert other_tenant.tenant_id not in reply.body
    assert answers[0] == answers[1]  # a free number and another tenant's look the same
    rows = sql.execute(
        "SELECT number, tenant_id FROM phone_numbers WHERE number IN (%s, %s)", (free, owned)
    ).fetchall()
    assert rows == [{"number": owned, "tenant_id": other_tenant.tenant_id}]


def test_a_tenant_cannot_revoke_its_last_admin_key(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    def revoke(caller: Tenant, key_id: str) -> Any:
        return _call("admin.delete-v1-api-keys-key_id.json", caller, path=f"/v1/api-keys/{key_id}")

    reader = add_key(sql, tenant.tenant_id, ["read"])
    last = revoke(tenant, tenant.key_id)
    assert last.status == 409 and last.json()["error"]["code"] == "last_admin_key"
    assert _call("admin.get-v1-tenant.json", tenant).status == 200  # still works
    assert revoke(tenant, reader.key_id).status == 204  # other keys go as before
    second = add_key(sql, tenant.tenant_id, ["admin"])
    assert revoke(second, tenant.key_id).status == 204
    assert revoke(second, second.key_id).status == 409  # now it is the last one
    assert _call("admin.get-v1-tenant.json", second).status == 200


def test_settings_patch_changes_only_what_is_sent_and_put_replaces_everything(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    assert _call("admin.put-v1-tenant-settings.json", tenant).status == 200
    patched = _call(
        "admin.patch-v1-tenant-settings.json", tenant, body={"recording_retention_days": 90}
    )
    assert patched.status == 200, patched.body
    assert patched.json()["settings"] == {
        "recording_enabled": True,
        "recording_retention_days": 90,
        "redact_pii": True,
        "overflow_number": "+15550001111",
        "timezone": "UTC",
        "call_retention_days": None,
        "prices": {
            "currency": "USD",
            "per_minute": 0.0,
            "per_asr_minute": 0.0,
            "per_1k_tts_chars": 0.0,
            "per_1k_llm_tokens": 0.0,
        },
    }
    partial_put = _call("admin.put-v1-tenant-settings.json", tenant, body={"redact_pii": True})
    assert partial_put.status == 422
    missing = {d["field"] for d in partial_put.json()["error"]["details"]}
    assert {"body.recording_enabled", "body.overflow_number"} <= missing
    stored = _call("admin.get-v1-tenant.json", tenant).json()["settings"]
    assert stored["recording_retention_days"] == 90 and stored["overflow_number"]


@pytest.mark.parametrize("value", ["no", 0, "false", "", None, 1, "off"])
@pytest.mark.parametrize("method", ["put", "patch"])
def test_redaction_is_a_strict_boolean(rt: Any, tenant: Tenant, value: Any, method: str) -> None:
    sample = f"admin.{method}-v1-tenant-settings.json"
    body = json.loads(load_sample(sample)["body"]) | {"redact_pii": value}
    reply = _call(sample, tenant, body=body)
    assert reply.status == 422, reply.body
    assert reply.json()["error"]["details"][0]["field"].startswith("body.redact_pii")
    assert _call("admin.get-v1-tenant.json", tenant).json()["settings"]["redact_pii"] is True


def test_turning_redaction_off_must_be_confirmed_and_is_audited(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    sample = "admin.patch-v1-tenant-settings.json"
    unconfirmed = _call(sample, tenant, body={"redact_pii": False})
    assert unconfirmed.status == 422
    assert unconfirmed.json()["error"]["details"][0]["field"] == "body.confirm_redaction_off"
    assert _call("admin.get-v1-tenant.json", tenant).json()["settings"]["redact_pii"] is True
    confirmed = _call(sample, tenant, body={"redact_pii": False, "confirm_redaction_off": True})
    assert confirmed.status == 200 and confirmed.json()["settings"]["redact_pii"] is False
    assert _call(sample, tenant, body={"recording_enabled": True}).status == 200
    audit = sql.execute(
        "SELECT key_id, action, detail FROM tenant_audit_log WHERE tenant_id = %s "
        "ORDER BY entry_id",
        (tenant.tenant_id,),
    ).fetchall()
    assert audit == [
        {
            "key_id": tenant.key_id,
            "action": "redaction_disabled",
            "detail": {"redact_pii": {"from": True, "to": False}},
        },
        {
            "key_id": tenant.key_id,
            "action": "settings_changed",
            "detail": {"recording_enabled": {"from": False, "to": True}},
        },
    ]


def test_knowledge_documents_are_indexed_searchable_and_deleted(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    _call("admin.post-v1-agents.json", tenant)
    uploaded = _call("admin.post-v1-agents-agent_id-documents.json", tenant)
    assert uploaded.status == 201, uploaded.body
    document = uploaded.json()
    assert document["chunk_count"] == 1 and document["content_type"] == "text/markdown"
    passages = rt.knowledge().search(tenant.tenant_id, "acme-shop", "can I send an item back?")
    assert passages and "30 days" in passages[0].text
    assert rt.knowledge().search(other_tenant.tenant_id, "acme-shop", "send an item back") == []
    listed = _call("admin.get-v1-agents-agent_id-documents.json", tenant).json()
    assert [d["document_id"] for d in listed] == [document["document_id"]]
    assert _call("admin.get-v1-agents-agent_id-documents.json", other_tenant).status == 404
    path = f"/v1/agents/acme-shop/documents/{document['document_id']}"
    assert (
        _call(
            "admin.delete-v1-agents-agent_id-documents-document_id.json", other_tenant, path=path
        ).status
        == 404
    )
    assert (
        _call(
            "admin.delete-v1-agents-agent_id-documents-document_id.json", tenant, path=path
        ).status
        == 204
    )
    assert rt.knowledge().search(tenant.tenant_id, "acme-shop", "send an item back") == []
    empty = _call(
        "admin.post-v1-agents-agent_id-documents.json",
        tenant,
        body={"title": "x", "text": "   \n  "},
    )
    assert empty.status == 422


def test_tenant_settings_hold_recording_and_overflow(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    reply = _call("admin.put-v1-tenant-settings.json", tenant)
    assert reply.status == 200
    assert reply.json()["settings"]["overflow_number"] == "+15550001111"
    assert reply.json()["settings"]["recording_enabled"] is True
    bad = _call("admin.patch-v1-tenant-settings.json", tenant, body={"overflow_number": "call me"})
    assert (
        bad.status == 422 and bad.json()["error"]["details"][0]["field"] == "body.overflow_number"
    )
    unknown_query = _call("admin.get-v1-tenant.json", tenant, query={"debug": "1"})
    assert unknown_query.status == 422 and "debug" in unknown_query.json()["error"]["message"]


def test_cli_tenant_create_prints_a_working_first_key(
    rt: Any, sql: psycopg.Connection[Any], database_url: str, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PARLEY_DATABASE_URL", database_url)
    cli = typer.Typer()
    cli.add_typer(tenant_app, name="tenant")
    result = CliRunner().invoke(cli, ["tenant", "create", "Acme CLI", "--scope", "read"])
    assert result.exit_code == 0, result.output
    key = next(
        line.split()[-1] for line in result.output.splitlines() if line.startswith("api key")
    )
    tenant_id = result.output.split()[1]
    me = _call("admin.get-v1-tenant.json", Tenant(tenant_id, key, ""))
    assert me.status == 200 and me.json()["name"] == "Acme CLI"
    again = CliRunner().invoke(cli, ["tenant", "create", "Acme CLI", "--id", tenant_id])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = CliRunner().invoke(cli, ["tenant", "create", "X", "--scope", "root"])
    assert bad.exit_code == 2 and "unknown scope" in bad.output


def test_an_active_agent_versions_own_documents_are_indexed(rt: Any, tenant: Tenant) -> None:
    sample = json.loads(load_sample("admin.post-v1-agents.json")["body"])
    definition = sample["definition"]
    definition["knowledge"] = {
        "documents": [{"title": "Returns", "text": "You can send an item back within 30 days."}]
    }
    uploaded = _call("admin.post-v1-agents.json", tenant, body={"definition": definition})
    assert uploaded.status == 201, uploaded.body
    passages = rt.knowledge().search(tenant.tenant_id, "acme-shop", "can I send an item back?")
    assert passages and "30 days" in passages[0].text
    # A new active version without the document takes it out of the search.
    definition["knowledge"] = {"documents": []}
    assert _call("admin.post-v1-agents.json", tenant, body={"definition": definition}).status == 201
    assert rt.knowledge().search(tenant.tenant_id, "acme-shop", "send an item back") == []
    # Rolling back brings the first version's document back.
    back = _call(
        "admin.post-v1-agents-agent_id-rollback.json", tenant, path="/v1/agents/acme-shop/rollback"
    )
    assert back.status == 200, back.body
    assert rt.knowledge().search(tenant.tenant_id, "acme-shop", "send an item back")
