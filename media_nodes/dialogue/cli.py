"""``parley agent``: validate agent definitions, run conversation tests, export the JSON Schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shared.agents.loader import AgentDefinitionError, find_agent, load_agent_file
from shared.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:  # the engine pulls in onnxruntime and qdrant: import it only to run tests
    import httpx

    from media_nodes.dialogue.engine import AgentSession
    from media_nodes.dialogue.evaluation import IntentAccuracy
    from media_nodes.dialogue.runtime import AgentRuntime
    from media_nodes.dialogue.testing import Script, ScriptResult
    from shared.agents.loader import LoadedAgent

app = typer.Typer(
    help="Agent definitions: validate them and run conversation tests.", no_args_is_help=True
)


def _settings_or_exit() -> Settings:
    """The settings, or exit 2 naming what is wrong with them."""
    try:
        return get_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _resolve_agent(agent: str, agents_dir: Path) -> Path:
    candidate = Path(agent)
    if candidate.exists():
        return candidate
    try:
        return find_agent(agents_dir, agent)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{exc} (give an agent id or a path)") from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Agent definition (YAML or JSON) or its folder.")],
) -> None:
    """Check a definition: fields, types, states, reachability, exits. Exits 1 when invalid."""
    try:
        loaded = load_agent_file(file)
    except AgentDefinitionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    definition = loaded.definition
    typer.echo(
        f"ok: agent '{definition.id}' with {len(definition.states)} states, "
        f"{len(loaded.knowledge)} knowledge documents"
    )


@app.command()
def test(
    agent: Annotated[str, typer.Argument(help="Agent id (under PARLEY_AGENTS_DIR) or path.")],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Scripts or folders of scripts (default: the agent's tests/)."),
    ] = None,
    script: Annotated[
        list[Path] | None,
        typer.Option("--script", "-s", help="Conversation script; repeatable."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print transcripts.")] = False,
    llm: Annotated[
        bool,
        typer.Option("--llm", help="Use the configured LLM (default: deterministic path only)."),
    ] = False,
) -> None:
    """Run every conversation script given (files or folders) against an agent, loading its
    models once; report every failure with a diff. Exit 1 if any failed, 2 on a bad script."""
    settings = _settings_or_exit()
    from media_nodes.dialogue.testing import ScriptError, format_transcript, load_script

    path = _resolve_agent(agent, settings.agents_dir)
    try:
        loaded = load_agent_file(path)
    except AgentDefinitionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    given = [*(paths or []), *(script or [])]
    if not given:
        given = [Path(loaded.source).parent / "tests"]
    files = _script_files(given)
    if not files:
        typer.echo("no conversation scripts found in " + ", ".join(map(str, given)), err=True)
        raise typer.Exit(2)
    scripts = []
    bad = False
    for file in files:
        try:
            scripts.append((file, load_script(file)))
        except ScriptError as exc:
            typer.echo(f"ERROR {exc}", err=True)
            bad = True
    results = asyncio.run(_run_all(loaded, scripts, use_llm=llm))
    failed = 0
    for result in results:
        if result.ok:
            typer.echo(f"PASS {result.script} ({len(result.turns)} turns)")
            if verbose:
                typer.echo(format_transcript(result))
            continue
        failed += 1
        typer.echo(f"FAIL {result.script}")
        typer.echo(format_transcript(result))
        typer.echo(str(result.mismatch))
    typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if bad:
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(1)


def _script_files(paths: list[Path]) -> list[Path]:
    """Script files, folders expanded (sorted); paraphrase files are no scripts."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            files += [f for f in found if f.name != "paraphrases.yaml"]
        else:
            files.append(path)
    return files


async def _run_all(
    loaded: LoadedAgent, scripts: list[tuple[Path, Script]], *, use_llm: bool
) -> list[ScriptResult]:
    from media_nodes.dialogue.engine import AgentSession
    from media_nodes.dialogue.factory import AgentDialogueFactory
    from media_nodes.dialogue.testing import run_script
    from shared.knowledge.store import KnowledgeBase

    settings = get_settings()
    if not use_llm:  # scripts must give the same result on every run
        settings = settings.model_copy(update={"llm_base_url": ""})
    # In-memory Qdrant: a test run never touches (or locks) a media node's knowledge folder.
    factory = AgentDialogueFactory(settings, knowledge=KnowledgeBase(":memory:"))
    compiled: dict[str, AgentRuntime] = {}  # per tenant: the models load and embed once
    results = []
    try:
        for path, parsed in scripts:
            if parsed.tenant not in compiled:
                compiled[parsed.tenant] = await factory.compile(parsed.tenant, loaded)
            runtime = compiled[parsed.tenant]

            async def new_session(
                client: httpx.AsyncClient,
                _state: Callable[[], str],
                runtime: AgentRuntime = runtime,
                parsed: Script = parsed,
                path: Path = path,
            ) -> AgentSession:
                return AgentSession(
                    replace(runtime, http=client),
                    call_id=f"test-{path.stem}",
                    variables=parsed.variables,
                    started_at=parsed.now,
                )

            results.append(await run_script(parsed, new_session, name=parsed.name or path.name))
    finally:
        await factory.aclose()
    return results


@app.command(name="eval")
def evaluate(
    agent: Annotated[str, typer.Argument(help="Agent id (under PARLEY_AGENTS_DIR) or path.")],
    paraphrases: Annotated[
        Path,
        typer.Option("--paraphrases", "-p", help="YAML: state -> intent -> utterances."),
    ],
    minimum: Annotated[
        float | None,
        typer.Option("--min-accuracy", help="Exit 1 below this accuracy (0-1)."),
    ] = None,
) -> None:
    """Intent accuracy on held-out paraphrases: accuracy, confusions, confident misroutes."""
    settings = _settings_or_exit()
    from media_nodes.dialogue.evaluation import intent_accuracy, load_paraphrases

    path = _resolve_agent(agent, settings.agents_dir)
    try:
        loaded = load_agent_file(path)
        cases = load_paraphrases(paraphrases)
    except (AgentDefinitionError, ValueError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def measure() -> IntentAccuracy:
        from media_nodes.dialogue.factory import AgentDialogueFactory
        from shared.knowledge.store import KnowledgeBase

        factory = AgentDialogueFactory(
            settings.model_copy(update={"llm_base_url": ""}), knowledge=KnowledgeBase(":memory:")
        )
        try:
            runtime = await factory.compile("eval", loaded)
            result = await intent_accuracy(runtime, cases)
        finally:
            await factory.aclose()
        return result

    try:
        result = asyncio.run(measure())
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(result.report())
    if minimum is not None and result.accuracy < minimum:
        raise typer.Exit(1)


@app.command()
def schema(
    folder: Annotated[Path, typer.Option(help="Where to write agent.schema.json.")] = Path(
        "events/schemas"
    ),
    docs: Annotated[
        Path | None, typer.Option(help="Markdown file whose field reference block to update.")
    ] = None,
) -> None:
    """Write the JSON Schema of agent definitions (for editors and CI), and with --docs the
    field reference in a Markdown file."""
    from shared.agents.schema import update_field_reference, write_agent_schema

    typer.echo(str(write_agent_schema(folder)))
    if docs is not None:
        typer.echo(str(update_field_reference(docs)))
