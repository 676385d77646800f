"""The LLM layer: constrained choices, slot filling and streamed grounded answers.

Works with any OpenAI-compatible server through the ``openai`` client. Every call has a deadline;
any error or timeout raises :class:`LlmFailure` so the engine falls back to its deterministic path
and records why. Choices are constrained at the source (a forced tool call whose parameter is an
enum of the allowed options, or a JSON schema) *and* checked afterwards by :func:`guard`, because
not every server enforces the constraint: the LLM can never move a call where the flow forbids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from shared import tracing

log = logging.getLogger(__name__)

NONE_OPTION = "none"
Mode = Literal["tools", "json_schema", "json_object", "json"]
"""tools: forced tool call with an enum parameter. json_schema: OpenAI structured output.
json_object: JSON mode with the schema attached (llama-cpp-python enforces it). json: plain JSON
mode for servers with nothing better; only the guardrail keeps the choice in bounds."""


class LlmFailure(RuntimeError):
    """The LLM timed out, errored, or answered outside the allowed choices."""

    def __init__(self, kind: Literal["timeout", "error", "guardrail", "invalid"], detail: str):
        self.kind = kind
        self.detail = detail
        super().__init__(f"LLM {kind}: {detail}")


class LlmObserver(Protocol):
    """Told of every request's outcome (the media node's metrics)."""

    def llm_request(
        self, seconds: float | None, *, first_token_s: float | None, failure: str | None
    ) -> None: ...


@dataclass(frozen=True)
class Choice:
    option: str
    raw: str
    elapsed_ms: float


def guard(option: Any, allowed: Sequence[str]) -> str:
    """Accept ``option`` only if the current state allows it; else raise a guardrail failure."""
    if not isinstance(option, str) or option not in allowed:
        raise LlmFailure("guardrail", f"{option!r} is not an allowed choice ({', '.join(allowed)})")
    return option


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class LlmClient:
    """One per process: wraps an ``AsyncOpenAI`` client with deadlines and constrained output."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_s: float,
        max_tokens: int = 160,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.observer: LlmObserver | None = None
        # Retries would blow the turn's latency budget: fail fast, fall back instead.
        self.client = AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )

    async def aclose(self) -> None:
        await self.client.close()

    @contextlib.contextmanager
    def _measured(self) -> Iterator[None]:
        """Tell the observer how long a request took and why it failed, if it did. A request
        the call cancelled (the caller hung up, barged in) is neither."""
        started = time.perf_counter()
        try:
            yield
        except LlmFailure as exc:
            self._observe(time.perf_counter() - started, failure=exc.kind)
            raise
        self._observe(time.perf_counter() - started)

    def _observe(
        self,
        seconds: float | None,
        *,
        first_token_s: float | None = None,
        failure: str | None = None,
    ) -> None:
        if self.observer is not None:
            self.observer.llm_request(seconds, first_token_s=first_token_s, failure=failure)

    async def choose(
        self,
        *,
        instructions: str,
        history: Sequence[Message],
        utterance: str,
        options: Mapping[str, str],
        mode: Mode = "tools",
        timeout_s: float | None = None,
    ) -> Choice:
        """Pick one of ``options`` (name -> meaning) for ``utterance``, or ``'none'``."""
        allowed = [*options, NONE_OPTION]
        menu = "\n".join(f"- {name}: {meaning}" for name, meaning in options.items())
        system = (
            f"{instructions}\n\nYou route a phone call. Pick the option that matches what the "
            f"caller means, or '{NONE_OPTION}' if none does.\nOptions:\n{menu}"
        ).strip()
        messages = [
            {"role": "system", "content": system},
            *({"role": m.role, "content": m.content} for m in history[-6:]),
            {"role": "user", "content": utterance},
        ]
        schema = {
            "type": "object",
            "properties": {"option": {"type": "string", "enum": allowed}},
            "required": ["option"],
            "additionalProperties": False,
        }
        started = time.perf_counter()
        with self._measured():
            raw = await self._structured(messages, schema, "choose_option", mode, timeout_s)
            try:
                option = json.loads(raw).get("option")
            except (ValueError, AttributeError):
                option = raw[:200]  # not even JSON: the guardrail rejects it like any other stray
            chosen = guard(option, allowed)
        return Choice(chosen, raw, (time.perf_counter() - started) * 1000)

    async def extract_slots(
        self,
        *,
        instructions: str,
        utterance: str,
        slots: Mapping[str, dict[str, Any]],
        mode: Mode = "tools",
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The values of ``slots`` (name -> JSON schema of its value) in the caller's words,
        null for those not given, asked for in one constrained call. Only a JSON object comes
        back; the engine still checks every name and holds every value to the slot's parser."""
        wanted = "\n".join(
            f"- {name}: {spec.get('description', '')}" for name, spec in slots.items()
        )
        messages = [
            {
                "role": "system",
                "content": (
                    f"{instructions}\n\nFill in the values the caller gives in their words, "
                    f"exactly as they said them. Use null for any they did not give.\n{wanted}"
                ).strip(),
            },
            {"role": "user", "content": utterance},
        ]
        schema = {
            "type": "object",
            "properties": dict(slots),
            "required": list(slots),
            "additionalProperties": False,
        }
        with self._measured():
            # Several values, each up to a short phrase.
            raw = await self._structured(
                messages, schema, "fill_slots", mode, timeout_s, max_tokens=48 + 40 * len(slots)
            )
            try:
                values = json.loads(raw)
            except ValueError:
                values = None
            if not isinstance(values, dict):
                raise LlmFailure("invalid", f"not a JSON object: {raw[:200]!r}")
        return values

    async def summarize(
        self, *, transcript: Sequence[Message], facts: str, instructions: str = ""
    ) -> str:
        """Two plain sentences about the call, for a CRM note (not streamed); ``instructions``
        (the agent's analysis prompt) say what else to put in."""
        lines = "\n".join(f"{m.role}: {m.content}" for m in transcript[-30:])
        messages = [
            {
                "role": "system",
                "content": " ".join(
                    part
                    for part in (
                        "Summarise this phone call in at most two short sentences.",
                        instructions.strip(),
                        f"Known facts: {facts}",
                    )
                    if part
                ),
            },
            {"role": "user", "content": lines},
        ]
        with self._measured():
            response = await self._call(
                {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": 80},
                None,
            )
            text = str(response.choices[0].message.content or "").strip()
            if not text:
                raise LlmFailure("invalid", "empty summary")
        return text

    async def json_answer(
        self,
        *,
        instructions: str,
        content: str,
        schema: dict[str, Any],
        name: str,
        mode: Mode = "tools",
        max_tokens: int = 256,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One JSON object for ``content`` under ``instructions``, constrained to ``schema``
        where the server can (post-call analysis: verdicts and extracted fields). Only its being
        an object is checked here; the caller holds it to the schema."""
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": content},
        ]
        with self._measured():
            raw = await self._structured(messages, schema, name, mode, timeout_s, max_tokens)
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise LlmFailure("invalid", f"not a JSON object: {raw[:200]!r}")
        return value

    async def _structured(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        name: str,
        mode: Mode,
        timeout_s: float | None,
        max_tokens: int = 64,
    ) -> str:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if mode == "tools":
            kwargs["tools"] = [
                {"type": "function", "function": {"name": name, "parameters": schema}}
            ]
            kwargs["tool_choice"] = {"type": "function", "function": {"name": name}}
        elif mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        else:
            kwargs["response_format"] = {"type": "json_object"}
            messages[0]["content"] += f"\nReply with JSON only, matching: {json.dumps(schema)}"
        response = await self._call(kwargs, timeout_s)
        message = response.choices[0].message
        if mode == "tools":
            calls = message.tool_calls or []
            if not calls or calls[0].function.name != name:
                raise LlmFailure("invalid", "the model did not call the tool")
            return str(calls[0].function.arguments or "")
        return str(message.content or "")

    async def _call(self, kwargs: dict[str, Any], timeout_s: float | None) -> Any:
        deadline = timeout_s or self.timeout_s
        try:
            with tracing.tracer.start_as_current_span(
                "llm request", kind=tracing.SpanKind.CLIENT, attributes=_llm_attributes(kwargs)
            ) as span:
                async with asyncio.timeout(deadline):
                    answer = await self.client.chat.completions.create(**kwargs)
                usage = getattr(answer, "usage", None)
                if usage is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens or 0)
                    span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens or 0)
                return answer
        except TimeoutError:
            raise LlmFailure("timeout", f"no answer within {deadline:g}s") from None
        except LlmFailure:
            raise
        except Exception as exc:  # the openai client raises many types; all mean "fall back"
            raise LlmFailure("error", f"{type(exc).__name__}: {exc}") from None

    async def stream_answer(
        self,
        *,
        instructions: str,
        question: str,
        passages: Sequence[str],
        history: Sequence[Message] = (),
        timeout_s: float | None = None,
    ) -> AsyncIterator[str]:
        """Stream a short spoken answer grounded in ``passages``, chunk by chunk.

        The first chunk must arrive within the timeout; the whole answer within four times it.
        """
        context = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
        system = (
            f"{instructions}\n\nAnswer the caller in one to three short spoken sentences, using "
            "only the passages below. If they do not contain the answer, say you do not know.\n\n"
            f"Passages:\n{context}"
        ).strip()
        messages = [
            {"role": "system", "content": system},
            *({"role": m.role, "content": m.content} for m in history[-6:]),
            {"role": "user", "content": question},
        ]
        deadline = timeout_s or self.timeout_s
        loop = asyncio.get_running_loop()
        # Not the current span: a generator suspended at a yield must not hold a context.
        span = tracing.tracer.start_span(
            "llm request",
            kind=tracing.SpanKind.CLIENT,
            attributes=_llm_attributes({"model": self.model, "max_tokens": self.max_tokens}),
        )
        asked_at = loop.time()
        chunks = 0
        first_token_s: float | None = None
        # Deadlines wrap each await only: a timeout must never fire while the consumer (TTS)
        # holds the generator suspended at a yield.
        first_by = loop.time() + deadline
        try:
            async with asyncio.timeout_at(first_by):
                stream = cast(
                    "AsyncStream[ChatCompletionChunk]",
                    await self.client.chat.completions.create(
                        model=self.model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=0.2,
                        max_tokens=self.max_tokens,
                        stream=True,
                    ),
                )
        except TimeoutError:
            _failed(span, "timeout")
            self._observe(loop.time() - asked_at, failure="timeout")
            raise LlmFailure("timeout", f"no answer within {deadline:g}s") from None
        except Exception as exc:
            _failed(span, type(exc).__name__)
            self._observe(loop.time() - asked_at, failure="error")
            raise LlmFailure("error", f"{type(exc).__name__}: {exc}") from None
        iterator = aiter(stream)
        finish_by = loop.time() + deadline * 4
        got_text = False
        failure: str | None = None
        finished = False
        try:
            while True:
                try:
                    async with asyncio.timeout_at(finish_by if got_text else first_by):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise LlmFailure(
                        "timeout", f"answer not streamed within {deadline:g}s"
                    ) from None
                except Exception as exc:
                    raise LlmFailure("error", f"{type(exc).__name__}: {exc}") from None
                piece = _delta(chunk)
                if piece:
                    if not got_text:
                        first_token_s = loop.time() - asked_at
                        span.set_attribute(
                            "llm.time_to_first_token_ms", round(first_token_s * 1000, 1)
                        )
                    got_text = True
                    chunks += 1  # a streamed chunk carries one token
                    yield piece
            if not got_text:
                raise LlmFailure("invalid", "empty answer")
            finished = True
        except LlmFailure as exc:
            failure = exc.kind
            span.set_status(tracing.StatusCode.ERROR, exc.kind)  # ended below
            raise
        finally:
            # Stops generation on the server when the caller barges in or we give up.
            await stream.close()
            span.set_attribute("gen_ai.usage.output_tokens", chunks)
            span.end()
            # An answer the caller cut short has no total: only its first token counts.
            total = loop.time() - asked_at if finished or failure else None
            self._observe(total, first_token_s=first_token_s, failure=failure)


def _llm_attributes(kwargs: dict[str, Any]) -> dict[str, str | int]:
    return {
        "gen_ai.request.model": str(kwargs.get("model", "")),
        "gen_ai.request.max_tokens": int(kwargs.get("max_tokens") or 0),
    }


def _failed(span: tracing.Span, why: str) -> None:
    span.set_status(tracing.StatusCode.ERROR, why)
    span.end()


def _delta(chunk: Any) -> str:
    if not chunk.choices:
        return ""
    return str(chunk.choices[0].delta.content or "")
