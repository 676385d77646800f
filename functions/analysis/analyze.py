"""One call's analysis from its transcript: summary, success, sentiment and extracted fields.

With an LLM (the deployment's, and the agent's ``llm.enabled``) every part is asked of it: the
summary under the agent's ``analysis.summary_prompt``, success against its rubric and criteria,
the caller's sentiment, and the fields of its extraction schema. Without one, the template
summary stays, sentiment and success come from the local model (functions/analysis/
local_model.py) and the fields are taken from the call's slots. A part the LLM fails (timeout,
error, an answer that is not what was asked) falls back to the local way and is recorded in
``failures``; extracted fields that break the schema are a recorded failure too, never stored
as fields. Nothing here raises for a bad answer: an analysis is always stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from functions.analysis.local_model import MODEL_NAME, LocalJudge, Sentiment, Success
from functions.analysis.result import AnalysisResult
from media_nodes.dialogue.llm import LlmClient, LlmFailure, Message
from shared.agents.extraction import extraction_errors
from shared.agents.models import Analysis

SENTIMENTS = ("positive", "neutral", "negative")
MAX_TRANSCRIPT_TURNS = 60
MAX_FAILED_VALUE_CHARS = 2000

_VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 500},
        "sentiment": {"type": "string", "enum": list(SENTIMENTS)},
        "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1},
    },
    "required": ["success", "reason", "sentiment", "sentiment_score"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class CallTranscript:
    """What the analysis reads of a call."""

    agent_name: str
    turns: Sequence[tuple[str, str]]  # (speaker: caller or agent, text), in order
    slots: dict[str, Any]
    template_summary: str
    disposition: str | None
    options: Analysis

    @property
    def caller_turns(self) -> list[str]:
        return [text for speaker, text in self.turns if speaker == "caller"]


async def analyze(call: CallTranscript, local: LocalJudge, llm: LlmClient | None) -> AnalysisResult:
    """The analysis of ``call``: by ``llm`` when given, else (and for what it fails) locally."""
    # The model runs in a thread (onnxruntime releases the GIL): the loop stays free.
    sentiment, success = await asyncio.to_thread(local.judge, call.caller_turns)
    if llm is None:
        result = AnalysisResult(
            method="local",
            model=MODEL_NAME,
            summary=call.template_summary,
            success=success.success,
            success_reason=success.reason,
            sentiment=sentiment.label,
            sentiment_score=sentiment.score,
        )
        _extract_from_slots(call, result)
        return result
    return await _by_llm(call, llm, sentiment, success)


async def _by_llm(
    call: CallTranscript, llm: LlmClient, sentiment: Sentiment, success: Success
) -> AnalysisResult:
    result = AnalysisResult(
        method="llm",
        model=llm.model,
        summary=call.template_summary,
        success=success.success,
        success_reason=success.reason,
        sentiment=sentiment.label,
        sentiment_score=sentiment.score,
    )
    transcript = _transcript(call)
    options = call.options
    try:
        result.summary = await llm.summarize(
            transcript=[
                Message("user" if s == "caller" else "assistant", t)
                for s, t in call.turns[-MAX_TRANSCRIPT_TURNS:]
            ],
            facts=call.template_summary,
            instructions=options.summary_prompt,
        )
    except LlmFailure as failure:
        result.failures.append(_failure("summary", failure, "template summary"))

    rubric = options.rubric.strip() or "The caller got what they called for."
    criteria = "".join(f"\n- {c}" for c in options.success_criteria)
    try:
        verdict = await llm.json_answer(
            instructions=(
                "You review a finished phone call between a caller and an AI agent. Decide "
                "whether the call succeeded against the rubric (every criterion met), give a "
                "one-sentence reason, and rate the caller's sentiment (positive, neutral or "
                "negative, with a score from -1 to 1). Sarcasm is negative."
                f"\nRubric: {rubric}{criteria}"
            ),
            content=transcript,
            schema=_VERDICT_SCHEMA,
            name="judge_call",
        )
        problems = extraction_errors(_VERDICT_SCHEMA, verdict)
        if problems:
            raise LlmFailure("invalid", "; ".join(problems))
        result.success = bool(verdict["success"])
        result.success_reason = str(verdict["reason"])
        result.sentiment = str(verdict["sentiment"])
        result.sentiment_score = round(float(verdict["sentiment_score"]), 4)
    except LlmFailure as failure:
        result.failures.append(_failure("verdict", failure, "local model"))

    schema = options.extraction_schema
    if schema is not None:
        try:
            fields = await llm.json_answer(
                instructions=(
                    "Extract these fields from the phone call below, as a JSON object matching "
                    "the schema. Use only what was said; leave out a field nobody mentioned."
                    f"\nSchema: {json.dumps(schema)}"
                ),
                content=transcript,
                schema=schema,
                name="extract_fields",
                max_tokens=512,
            )
        except LlmFailure as failure:
            result.failures.append(_failure("extraction", failure, "slots"))
            _extract_from_slots(call, result)
        else:
            _hold_to_schema(schema, fields, result, source="llm")
    return result


def _transcript(call: CallTranscript) -> str:
    header = f"A call to {call.agent_name}; outcome recorded: {call.disposition or 'none'}."
    lines = (f"{s}: {t}" for s, t in call.turns[-MAX_TRANSCRIPT_TURNS:])
    return "\n".join([header, *lines])


def _failure(part: str, failure: LlmFailure, fallback: str) -> dict[str, Any]:
    return {"part": part, "kind": failure.kind, "detail": failure.detail[:500], "used": fallback}


def _extract_from_slots(call: CallTranscript, result: AnalysisResult) -> None:
    """The schema's fields that are slots of the call, each turned into the schema's type where
    the slot's text reads as one (a slot is text: '4572' for an integer field)."""
    schema = call.options.extraction_schema
    if schema is None:
        return
    properties: dict[str, Any] = schema.get("properties", {})
    fields = {
        name: _as_type(call.slots[name], spec)
        for name, spec in properties.items()
        if name in call.slots and call.slots[name] is not None
    }
    _hold_to_schema(schema, fields, result, source="slots")


def _as_type(value: Any, spec: Any) -> Any:
    wanted = spec.get("type") if isinstance(spec, dict) else None
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if wanted == "integer" and text.lstrip("-").isdigit():
            return int(text)
        if wanted == "number":
            return float(text)
    except ValueError:
        return value
    if wanted == "boolean" and text.lower() in ("yes", "no", "true", "false"):
        return text.lower() in ("yes", "true")
    return value


def _hold_to_schema(
    schema: dict[str, Any], fields: dict[str, Any], result: AnalysisResult, *, source: str
) -> None:
    problems = extraction_errors(schema, fields)
    if problems:
        result.extracted = {}
        result.extraction_valid = False
        result.extraction_errors = problems
        shown = json.dumps(fields, default=str)[:MAX_FAILED_VALUE_CHARS]
        result.failures.append(
            {
                "part": "extraction",
                "kind": "schema",
                "detail": "; ".join(problems)[:500],
                "used": "nothing (fields not stored)",
                "source": source,
                "value": shown,
            }
        )
        return
    result.extracted = fields
    result.extraction_valid = True
    result.extraction_errors = []
