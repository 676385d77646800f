"""``parley worker``, ``parley beat`` and ``parley campaign run``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import typer

from functions.common.config import FunctionSettings

campaign_app = typer.Typer(help="Outbound campaigns from the command line.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings() -> FunctionSettings:
    from functions.common.runtime import runtime
    from shared.settings import SettingsError

    try:
        settings = runtime().settings
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    if not settings.redis_url:
        raise _fail("the job scheduler needs Redis: set PARLEY_REDIS_URL", 2)
    return settings


def worker(
    concurrency: int = typer.Option(4, min=1, help="Worker processes (prefork)."),
    loglevel: str = typer.Option("info", help="Celery log level."),
) -> None:
    """Run a job worker: dials campaign calls, settles retries, runs the periodic jobs."""
    import logging

    from functions.jobs.app import celery_app
    from functions.jobs.tasks import register

    # The twilio client logs every request's headers at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    app = celery_app(_settings())
    register(app)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--pool=prefork",
        ]
    )


def beat(
    schedule_file: Path = typer.Option(
        None, help="Where beat keeps its last run times (default: data_dir/celerybeat-schedule)."
    ),
    loglevel: str = typer.Option("info", help="Celery log level."),
    metrics_port: int = typer.Option(
        0, min=0, max=65535, help="Serve parley_jobs_queue_depth on /metrics here (0: off)."
    ),
) -> None:
    """Run the scheduler of the periodic jobs (exactly one per deployment)."""
    from functions.jobs.app import beat_schedule, celery_app
    from functions.jobs.metrics import serve_queue_depth

    settings = _settings()
    if metrics_port:
        serve_queue_depth(settings, metrics_port)
    app = celery_app(settings)
    app.conf.beat_schedule = beat_schedule(settings)
    path = schedule_file or settings.data_dir / "celerybeat-schedule"
    path.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={path}"])


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("beat")(beat)
    app.add_typer(campaign_app, name="campaign")


@campaign_app.command("run")
def run_campaign(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: number, variables."),
    agent: str = typer.Option(..., "--agent", help="The agent that talks to each contact."),
    tenant: str = typer.Option("default", help="The tenant the agent belongs to."),
    name: str = typer.Option("", help="Campaign name (default: the file's name)."),
    concurrency: int = typer.Option(5, min=1, help="Calls at once."),
    cps: float = typer.Option(1.0, min=0.01, help="Calls per second."),
    timezone: str = typer.Option("", help="Default timezone for numbers that have several."),
    start_worker: bool = typer.Option(
        True, help="Start a worker and beat for the run (off: use the ones already running)."
    ),
    interval: float = typer.Option(2.0, min=0.1, help="Seconds between progress lines."),
    retry: list[str] = typer.Option(
        [],
        "--retry",
        help="Retry rule, repeatable: OUTCOME=ATTEMPTS/BACKOFF_S (busy=3/600: three attempts "
        "in all, 600 s apart, doubling); others keep the API's defaults.",
    ),
) -> None:
    """Create a campaign from a CSV, start it, and print its progress until it is over."""
    from functions.campaigns import local

    settings = _settings()
    if not settings.public_base_url:
        raise _fail("set PARLEY_PUBLIC_BASE_URL: Twilio calls the API back there", 2)
    try:
        rules = local.parse_retry(retry)
    except local.CampaignError as exc:
        raise _fail(str(exc), 2) from None
    helpers = []
    if start_worker:
        for command in ("worker", "beat"):
            helpers.append(subprocess.Popen([sys.executable, "-m", "parley", command]))
    try:
        asyncio.run(
            local.run(
                tenant,
                agent,
                file.read_text(),
                name=name or file.stem,
                concurrency=concurrency,
                cps=cps,
                timezone=timezone,
                say=typer.echo,
                interval_s=interval,
                retry=rules,
            )
        )
    except local.CampaignError as exc:
        raise _fail(str(exc)) from None
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.wait(timeout=30)
