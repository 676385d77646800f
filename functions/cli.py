"""``parley api ...`` and ``parley tenant ...``: the functions' commands (typer sub-apps).

Wire them with ``app.add_typer(api_app, name="api")`` and ``app.add_typer(tenant_app,
name="tenant")``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from functions.common.config import FunctionSettings

api_app = typer.Typer(help="The HTTP API (Lambda functions) run locally.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings() -> FunctionSettings:
    from functions.common.runtime import runtime
    from shared.settings import SettingsError

    try:
        return runtime().settings
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None


@api_app.command("serve")
def serve(
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
) -> None:
    """Serve every function (voice, admin, analytics, transfer) on one port, with /docs."""
    import uvicorn

    _settings()
    # Forwarded headers are judged by PARLEY_TRUSTED_PROXIES (functions/common/public_url.py),
    # not by uvicorn, which would believe any client on the loopback address.
    uvicorn.run("functions.local:app", host=host, port=port, log_level="info", proxy_headers=False)


@api_app.command("openapi")
def openapi(
    out: Path = typer.Option(None, help="Where to write it (default functions/openapi.json)."),
    check: bool = typer.Option(False, help="Only check the committed file is current."),
) -> None:
    """Write the OpenAPI document of the API (or check it for drift)."""
    from functions import openapi as doc

    path = out or doc.OPENAPI_FILE
    if check:
        if not path.exists() or path.read_text() != doc.render():
            raise _fail(f"{path} is out of date (run: parley api openapi)")
        typer.echo(f"{path} is up to date")
        return
    typer.echo(f"wrote {doc.write(path)}")


@api_app.command("samples")
def samples(
    out: Path = typer.Option(None, help="Folder (default events/samples/apigw)."),
) -> None:
    """Write the API Gateway sample events, one per route."""
    from functions.samples import SAMPLES_DIR, write_samples

    for path in write_samples(out or SAMPLES_DIR):
        typer.echo(f"wrote {path}")


@api_app.command("compact-rollups")
def compact_rollups() -> None:
    """Fold pending analytics deltas into the daily rollups (schedule it, e.g. every minute)."""
    from functions.analytics.compaction import compact
    from functions.common.runtime import runtime
    from shared.db import DatabaseUnavailable

    _settings()

    async def run() -> bool:
        try:
            return await compact()
        finally:
            await runtime().close()

    try:
        done = asyncio.run(run())
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    typer.echo("compacted" if done else "another compaction is running")


@tenant_app.command("create")
def tenant_create(
    name: str = typer.Argument(..., help="The tenant's display name."),
    tenant_id: str = typer.Option(None, "--id", help="Chosen tenant id (default: from the name)."),
    scope: list[str] = typer.Option(
        None, "--scope", help="Scopes of the first key (repeatable; default admin)."
    ),
) -> None:
    """Create a tenant and print its first API key (shown once)."""
    from functions.admin.models import TenantCreate, TenantCreated
    from functions.admin.tenants import create_tenant
    from functions.common.auth import SCOPES
    from functions.common.errors import ApiError
    from shared.db import DatabaseUnavailable, connect

    settings = _settings()
    scopes = scope or ["admin"]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise _fail(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}", 2)
    try:
        TenantCreate(name=name, tenant_id=tenant_id)
    except ValueError as exc:
        raise _fail(f"invalid tenant: {str(exc).splitlines()[0]}", 2) from None

    async def run() -> TenantCreated:
        conn = await connect(settings.database_url)
        try:
            created = await create_tenant(conn, name, tenant_id=tenant_id, scopes=scopes)
            await conn.commit()
            return created
        finally:
            await conn.close()

    try:
        created = asyncio.run(run())
    except DatabaseUnavailable as exc:
        raise _fail(f"{exc}\n  start it with: scripts/services start postgres") from None
    except ApiError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"tenant   {created.tenant.tenant_id}  ({created.tenant.name})")
    typer.echo(f"scopes   {', '.join(created.api_key.scopes)}")
    typer.echo(f"api key  {created.api_key.key}")
    typer.echo("Store the key now: it is not shown again.")
