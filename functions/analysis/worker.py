"""One analysis request, as a job worker runs it: read the call, analyse it, store the version.

The local model is loaded once per worker process (on its first analysis); an LLM client is
made per run from the deployment's LLM settings, with the analysis' own, longer deadline (a
turn's would cut a summary short, and nobody is waiting on the line).
"""

from __future__ import annotations

import logging
import threading

from functions.analysis import store
from functions.analysis.analyze import CallTranscript, analyze
from functions.analysis.local_model import LocalJudge
from functions.common.config import FunctionSettings
from functions.common.db import db
from media_nodes.dialogue.llm import LlmClient
from shared.agents.models import Analysis
from shared.agents.store import AgentNotFound, load_agent_version
from shared.knowledge.embedder import get_embedder

log = logging.getLogger("parley.analysis")

_lock = threading.Lock()
_judge: LocalJudge | None = None


def local_judge() -> LocalJudge:
    global _judge
    with _lock:
        if _judge is None:
            _judge = LocalJudge(get_embedder())
        return _judge


def llm_for(settings: FunctionSettings) -> LlmClient | None:
    if not settings.llm_base_url:
        return None
    return LlmClient(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        model=settings.llm_model,
        timeout_s=settings.analysis_llm_timeout_s,
    )


async def run(settings: FunctionSettings, leased: store.Leased) -> str:
    """Analyse the leased request's call once; returns what became of it."""
    async with db() as conn:
        call = await store.pending_call(conn, leased)
        if call is None:
            return "stale"  # done meanwhile, or leased again by a later sweep
        # The version of the agent that took the call says what to look for; a call without
        # one (or whose agent is gone) gets the default analysis.
        options, name, llm_enabled = Analysis(), call.agent_id or "the agent", True
        if call.agent_id:
            try:
                agent = await load_agent_version(
                    conn, call.tenant_id, call.agent_id, call.agent_version
                )
                options, name = agent.definition.analysis, agent.definition.name
                llm_enabled = agent.definition.llm.enabled
            except AgentNotFound:
                log.info("call %s: agent %s not found; default analysis", call.call_id, name)
    transcript = CallTranscript(
        agent_name=name,
        turns=call.turns,
        slots=call.slots,
        template_summary=call.summary or "",
        disposition=call.disposition,
        options=options,
    )
    llm = llm_for(settings) if llm_enabled else None
    try:
        result = await analyze(transcript, local_judge(), llm)
    except Exception as exc:  # a bug or a broken model: kept on the request, tried again later
        log.exception("analysis of call %s failed", call.call_id)
        async with db() as conn:
            await store.failed(conn, leased, f"{type(exc).__name__}: {exc}")
            await conn.commit()
        return "failed"
    finally:
        if llm is not None:
            await llm.aclose()
    async with db() as conn:
        async with conn.transaction():
            version = await store.store(conn, call, result)
    return "stored" if version is not None else "stale"


async def sweep(settings: FunctionSettings) -> list[store.Leased]:
    async with db() as conn:
        leased = await store.lease_due(conn, settings)
    return leased
