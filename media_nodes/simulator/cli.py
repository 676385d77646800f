"""``parley call``: place a simulated Twilio call against a media node and report latency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from media_nodes.simulator.caller import CallResult, Step


def _print_result(result: CallResult) -> None:
    if result.greeting_ms is not None:
        typer.echo(f"greeting: first audio {result.greeting_ms:.0f} ms after start")
    for index, turn in enumerate(result.turns, start=1):
        latency = f"{turn.latency_ms:.0f} ms" if turn.latency_ms is not None else "no answer"
        line = f"turn {index} ({turn.label}): voice-to-voice {latency}"
        if turn.barge_in_clear_ms is not None:
            line += f", clear {turn.barge_in_clear_ms:.0f} ms after speech start"
        typer.echo(line)
    ender = "agent" if result.closed_by_agent else "caller"
    typer.echo(
        f"call {result.call_sid}: {len(result.marks_echoed)} marks, {result.clears} clear(s), "
        f"hung up by the {ender}"
    )


def call_command(
    url: str = typer.Option(
        "ws://127.0.0.1:8765/twilio/stream", "--url", help="Media node stream URL."
    ),
    say: list[Path] = typer.Option(
        ..., "--say", help="WAV file the caller says (repeat for each turn, in order)."
    ),
    barge_in_after: int | None = typer.Option(
        None,
        "--barge-in-after",
        help="Say every turn after the first this many ms after the agent starts answering.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Save the agent's audio to this WAV."),
    parameter: list[str] = typer.Option(
        [], "--parameter", "-p", help="Stream <Parameter> as name=value (token, agent_id, ...)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON."),
    webhook: str | None = typer.Option(
        None,
        "--webhook",
        help="Ring this voice webhook first (as Twilio does) and stream where its TwiML says.",
    ),
    from_number: str = typer.Option("+15555550100", "--from", help="Caller number (webhook)."),
    to_number: str = typer.Option("+15555550199", "--to", help="Dialled number (webhook)."),
) -> None:
    """Call a media node like Twilio does: real-time audio, marks, clear; prints latency."""
    import httpx  # heavy imports here: `parley --help` stays fast

    from media_nodes.simulator.caller import Say, call, load_wav, save_wav

    params: dict[str, str] = {}
    for item in parameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            typer.secho(f"error: --parameter needs name=value, got {item!r}", fg="red", err=True)
            raise typer.Exit(2)
        params[name] = value
    steps: list[Step] = []
    for index, path in enumerate(say):
        try:
            audio = load_wav(path)
        except (OSError, ValueError, EOFError) as exc:
            typer.secho(f"error: cannot read {path}: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        barge = barge_in_after if index > 0 else None
        steps.append(Say(audio, label=path.stem, barge_in_after_ms=barge))
    call_sid: str | None = None
    if webhook is not None:
        from media_nodes.simulator.webhook import WebhookError, dial
        from shared.settings import get_settings

        token = get_settings().twilio_auth_token
        try:
            stream = asyncio.run(
                dial(
                    webhook,
                    from_number=from_number,
                    to_number=to_number,
                    auth_token=token.get_secret_value() if token else None,
                )
            )
        except (WebhookError, OSError, httpx.HTTPError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        url, params, call_sid = stream.url, {**stream.parameters, **params}, stream.call_sid
        typer.echo(f"webhook connected the call to {url}")
    try:
        result = asyncio.run(call(url, steps, parameters=params, call_sid=call_sid))
    except (OSError, TimeoutError) as exc:
        typer.secho(f"error: cannot reach {url}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # websockets handshake refusals and friends
        typer.secho(f"error: call failed: {type(exc).__name__}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    _print_result(result)
    if out is not None:
        save_wav(out, result.agent_audio)
        typer.echo(f"agent audio: {out}")
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))
