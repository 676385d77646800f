"""``parley webrtc``: place a WebRTC call from the command line, or mint a softphone token.

Heavy imports (aiortc, models) happen inside the commands so ``parley --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="WebRTC calls: the browser softphone's protocol, from the terminal.")


@app.command("call")
def call_command(
    url: Annotated[str, typer.Option(help="The node's signalling URL.")] = (
        "ws://127.0.0.1:8765/webrtc/signal"
    ),
    say: Annotated[list[Path] | None, typer.Option(help="Caller WAV, in order (repeat).")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent id (unsigned dev calls).")] = None,
) -> None:
    """Call over WebRTC (Opus, loopback ICE), speak each WAV after the agent, print the call."""
    from media_nodes.simulator.webrtc_caller import call as webrtc_call

    for path in say or []:
        if not path.is_file():
            raise typer.BadParameter(f"{path} does not exist", param_hint="--say")
    result = asyncio.run(webrtc_call(url, list(say or []), agent_id=agent))
    for message in result.messages:
        kind = message.get("type")
        if kind == "turn.user":
            typer.echo(f"caller [{message['turn_index']}]: {message['text']}")
        elif kind == "turn.agent":
            cut = " (interrupted)" if message.get("interrupted") else ""
            typer.echo(f"agent  [{message['turn_index']}]: {message['text']}{cut}")
        elif kind == "error":
            typer.echo(f"error: {message['message']} [{message['code']}]", err=True)
    for turn in result.turns:
        typer.echo(f"turn {turn.label}: voice-to-voice at the caller {turn.latency_ms} ms")
    if result.ended:
        typer.echo(f"ended: {result.ended['reason']}, disposition {result.ended['disposition']}")
    else:
        raise typer.Exit(1)


@app.command("token")
def token_command(
    agent: Annotated[str, typer.Option(help="Agent the call may reach.")],
    tenant: Annotated[str, typer.Option(help="Tenant id.")] = "default",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 0,
) -> None:
    """Print a short-lived session token for /phone?token=... (signed with this node's secret)."""
    from shared.settings import get_settings
    from shared.tokens import sign

    settings = get_settings()
    call_id = f"web-{uuid.uuid4().hex[:16]}"
    typer.echo(
        sign(
            call_id,
            tenant,
            agent,
            ttl or settings.session_token_ttl_s,
            secret=settings.session_token_secret,
        )
    )
