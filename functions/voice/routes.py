"""POST /twilio/voice and POST /twilio/status."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Request, Response

from functions.campaigns import store as campaigns
from functions.common.db import db
from functions.common.errors import ERROR_RESPONSES, ErrorResponse, invalid
from functions.common.observability import logger, metrics
from functions.common.runtime import runtime
from functions.voice import amd, calls, twiml
from functions.voice.signature import verified_form
from shared import tracing
from shared.agents.dispositions import ESCALATED, FAILED
from shared.cache import CacheUnavailable, NodeInfo, StreamClaims
from shared.cache.verdicts import MEDIA_NODE, TWILIO, MachineVerdicts, decided_by, verdict
from shared.db.projection import STATUS_RANK
from shared.tokens import sign

router = APIRouter(tags=["twilio"])

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
PHONE = re.compile(r"^(\+[1-9][0-9]{1,14}|client:[\w.-]{1,64}|sip:[^\s]{1,200}|anonymous|)$")


def _form_schema(required: list[str], fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "X-Twilio-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "HMAC-SHA1 of the URL and parameters, keyed by the auth token.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "required": required, "properties": fields}
                }
            },
        },
    }


_VOICE_FIELDS: dict[str, dict[str, Any]] = {
    "CallSid": {"type": "string", "pattern": CALL_SID.pattern},
    "AccountSid": {"type": "string"},
    "From": {"type": "string"},
    "To": {"type": "string"},
    "CallStatus": {"type": "string", "enum": list(STATUS_RANK)},
    "Direction": {"type": "string"},
}
_STATUS_FIELDS = _VOICE_FIELDS | {
    "CallDuration": {"type": "string", "pattern": "^[0-9]{1,7}$"},
    "Timestamp": {"type": "string"},
    "SequenceNumber": {"type": "string", "pattern": "^[0-9]{1,9}$"},
}


_TWIML = {"schema": {"type": "string"}}
_UNSUPPORTED_MEDIA = {415: {"model": ErrorResponse, "description": "not form data"}}


def _responses(extra: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """What a webhook answers besides success: errors are JSON in the one shape, even where
    success is TwiML (Twilio reads only the status of a failed webhook)."""
    errors = {k: v for k, v in ERROR_RESPONSES.items() if k in (400, 403, 413, 422)}
    return extra | errors | _UNSUPPORTED_MEDIA


def _xml(body: str) -> Response:
    return twiml.TwiMLResponse(content=body)


def _required(form: dict[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = form.get(name, "")
    if not pattern.match(value):
        raise invalid(f"form.{name}", "missing or malformed")
    return value


@router.post(
    "/twilio/voice",
    summary="Twilio voice webhook: answer a call with a media stream",
    # A plain Response class, so the error responses are documented as the JSON they are.
    response_class=Response,
    responses=_responses({200: {"content": {"application/xml": _TWIML}, "description": "TwiML"}}),
    openapi_extra=_form_schema(["CallSid", "From", "To"], _VOICE_FIELDS),
)
async def voice_webhook(request: Request) -> Response:
    form = await verified_form(request)
    call_sid = _required(form, "CallSid", CALL_SID)
    caller = _required(form, "From", PHONE)
    dialled = _required(form, "To", PHONE)
    status = form.get("CallStatus") or "ringing"
    if status not in STATUS_RANK:
        raise invalid("form.CallStatus", f"unknown call status '{status[:40]}'")
    direction = form.get("Direction") or "inbound"
    outbound = direction.startswith("outbound")
    settings = runtime().settings
    our_number = caller if outbound else dialled
    call = calls.NewCall(
        call_sid=call_sid,
        from_number=caller,
        to_number=dialled,
        direction=direction,
        status=status,
    )
    attempt_id = _attempt(request)
    async with db() as conn:
        if attempt_id:
            await campaigns.link_call(conn, attempt_id, call_sid)
        # The route (database) and a media node (Redis) are looked up at the same time.
        route, node = await asyncio.gather(
            calls.lookup_route(conn, call_sid, our_number), _pick_node()
        )
        if route is None:
            recorded = await calls.record_call(conn, call, None, end=(FAILED, "unknown_number"))
            if recorded.settled:
                return _already_connected(recorded)
            logger.warning("call to an unknown number", number=dialled, call_sid=call_sid)
            metrics.add_metric(name="UnknownNumber", unit=MetricUnit.Count, value=1)
            return _xml(twiml.say_and_hang_up(twiml.NOT_IN_SERVICE_MESSAGE))
        if route.active_version is None:
            recorded = await calls.record_call(conn, call, route, end=(FAILED, "agent_inactive"))
            if recorded.settled:
                return _already_connected(recorded)
            return _xml(twiml.say_and_hang_up(twiml.UNAVAILABLE_MESSAGE))
        if node is None:
            metrics.add_metric(name="NoCapacity", unit=MetricUnit.Count, value=1)
            overflow = str(route.tenant_settings.get("overflow_number") or "")
            if overflow:
                recorded = await calls.record_call(conn, call, route, end=(ESCALATED, "overflow"))
                if recorded.settled:
                    return _already_connected(recorded)
                logger.warning("no media node capacity: overflow", call_id=recorded.call_id)
                return _xml(twiml.dial(overflow, caller_id=our_number))
            recorded = await calls.record_call(conn, call, route, end=(FAILED, "no_capacity"))
            if recorded.settled:
                return _already_connected(recorded)
            logger.warning("no media node capacity", call_id=recorded.call_id)
            return _xml(twiml.say_and_hang_up(twiml.BUSY_MESSAGE))
        recorded = await calls.record_call(conn, call, route, node_id=node.node_id)
        if attempt_id:
            variables = await campaigns.variables_for_call(conn, call_sid)
        elif outbound:
            variables = await calls.agent_variables(conn, call_sid)  # POST /v1/calls/outbound
        else:
            variables = {}
    if recorded.settled or (recorded.known and await _stream_started(recorded.call_id)):
        return _already_connected(recorded)
    call_id = recorded.call_id

    token = sign(
        call_id,
        route.tenant_id,
        route.agent_id,
        settings.session_token_ttl_s,
        secret=settings.session_token_secret,
        call_sid=call_sid,
    )
    record = route.recording or bool(route.tenant_settings.get("recording_enabled"))
    # The media node reads these names (media_nodes/transports/twilio_identity.py); it trusts
    # only the token's claims.
    # A campaign contact's variables, or those the API client gave an outbound call, reach the
    # agent as {{ vars.NAME }}; they never replace the parameters that identify the call.
    parameters = {k: v for k, v in variables.items() if k not in RESERVED_PARAMETERS}
    parameters |= {
        "call_id": call_id,
        "tenant_id": route.tenant_id,
        "agent_id": route.agent_id,
        "token": token,
        "record": "true" if record else "false",
        "from": caller,
        "to": dialled,
        # Outbound calls are judged for answering machines by the media node too.
        "direction": "outbound" if outbound else "inbound",
        **tracing.carrier(),  # the media node's call span continues this request's trace
    }
    logger.info("call routed", call_id=call_id, node_id=node.node_id, agent=route.agent_id)
    return _xml(twiml.stream(node.url, parameters))


RESERVED_PARAMETERS = frozenset(
    {"call_id", "tenant_id", "agent_id", "token", "record", "from", "to", "direction"}
)


def _attempt(request: Request) -> str | None:
    """The campaign attempt a callback URL names (see functions/jobs/tasks.py)."""
    value = request.query_params.get("attempt", "")
    return value if re.match(r"^att_[0-9a-f]{32}$", value) else None


def _already_connected(recorded: calls.RecordedCall) -> Response:
    """A webhook for a call that already had its stream, or is over (a replay, or Twilio asking
    again): no new session token, nothing about the call changes; the line is hung up."""
    logger.warning("voice webhook for a call already connected", call_id=recorded.call_id)
    metrics.add_metric(name="WebhookForConnectedCall", unit=MetricUnit.Count, value=1)
    return _xml(twiml.say_and_hang_up(twiml.ALREADY_CONNECTED_MESSAGE))


async def _stream_started(call_id: str) -> bool:
    """Has a media node already taken a stream for this call? (Its row may not say so yet: the
    events that record the stream can still be on their way.) Unknown counts as started: a
    token is never issued when we cannot tell."""
    try:
        return await StreamClaims(runtime().cache()).claimed(call_id)
    except CacheUnavailable as exc:
        logger.error("stream registry unavailable", error=str(exc))
        return True


async def _pick_node() -> NodeInfo | None:
    """The least-loaded node with capacity; with the registry unreachable, none (the caller
    hears the polite busy message rather than Twilio's application-error voice)."""
    try:
        return await runtime().registry().pick()
    except CacheUnavailable as exc:
        logger.error("media-node registry unavailable", error=str(exc))
        return None


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@router.post(
    "/twilio/status",
    status_code=204,
    summary="Twilio call status callback (idempotent, never moves a call backwards)",
    response_class=Response,
    responses=_responses({}),
    openapi_extra=_form_schema(["CallSid", "CallStatus"], _STATUS_FIELDS),
)
async def status_callback(request: Request) -> Response:
    form = await verified_form(request)
    call_sid = _required(form, "CallSid", CALL_SID)
    status = form.get("CallStatus", "")
    if status not in STATUS_RANK:
        raise invalid("form.CallStatus", f"unknown call status '{status[:40]}'")
    duration = form.get("CallDuration", "")
    sequence = form.get("SequenceNumber", "")
    if (duration and not duration.isdigit()) or len(duration) > 7:
        raise invalid("form.CallDuration", "must be whole seconds")
    if (sequence and not sequence.isdigit()) or len(sequence) > 9:
        raise invalid("form.SequenceNumber", "must be a whole number")
    attempt_id = _attempt(request)
    async with db() as conn:
        if attempt_id:
            await _link_campaign_call(conn, attempt_id, call_sid, status)
        applied = await calls.apply_status(
            conn,
            call_sid=call_sid,
            status=status,
            sequence_number=int(sequence) if sequence else None,
            at=_timestamp(form.get("Timestamp", "")),
            duration_ms=int(duration) * 1000 if duration else None,
        )
        if applied.known and STATUS_RANK[status] == 3:
            await campaigns.settle(
                conn,
                call_sid=call_sid,
                attempt_id=None,
                status=status,
                media_node_verdict=await _media_node_verdict(call_sid),
                now=datetime.now(UTC),
            )
    if not applied.known:
        # Not a call we know (a callback URL set on a number we never routed, a stale retry):
        # acknowledged, so Twilio does not retry, counted, and nothing is stored for it.
        logger.warning("status callback for an unknown call", call_sid=call_sid, status=status)
        metrics.add_metric(name="UnknownCallSid", unit=MetricUnit.Count, value=1)
        return Response(status_code=204)
    logger.info(
        "call status",
        call_sid=call_sid,
        status=status,
        changed=applied.changed,
        in_history=applied.in_history,
    )
    return Response(status_code=204)


async def _link_campaign_call(conn: Any, attempt_id: str, call_sid: str, status: str) -> None:
    """A callback of a campaign call whose dialing worker died before it stored the Call SID:
    the attempt is linked and the call recorded now, so the callback is not lost."""
    linked = await campaigns.link_call(conn, attempt_id, call_sid)
    if linked is None:
        return
    route = await calls.agent_route(conn, linked["tenant_id"], linked["agent_id"])
    await calls.record_call(
        conn,
        calls.NewCall(
            call_sid=call_sid,
            from_number=linked["from_number"],
            to_number=linked["number"],
            direction="outbound-api",
            status="queued",
        ),
        route,
    )


_AMD_FIELDS: dict[str, dict[str, Any]] = {
    "CallSid": {"type": "string", "pattern": CALL_SID.pattern},
    "AccountSid": {"type": "string"},
    "AnsweredBy": {"type": "string", "enum": list(amd.ANSWERS)},
    "MachineDetectionDuration": {"type": "string", "pattern": "^[0-9]{1,7}$"},
}


@router.post(
    "/twilio/amd",
    status_code=204,
    summary="Twilio answering-machine detection callback (async AMD)",
    response_class=Response,
    responses=_responses({}),
    openapi_extra=_form_schema(["CallSid", "AnsweredBy"], _AMD_FIELDS),
)
async def amd_callback(request: Request) -> Response:
    form = await verified_form(request)
    call_sid = _required(form, "CallSid", CALL_SID)
    answer = form.get("AnsweredBy", "")
    if answer not in amd.ANSWERS:
        raise invalid("form.AnsweredBy", f"unknown answer '{answer[:40]}'")
    attempt_id = _attempt(request)
    decides = answer not in amd.MACHINE or await _claim_machine(call_sid, answer)
    async with db() as conn:
        if attempt_id:
            await _link_campaign_call(conn, attempt_id, call_sid, "in-progress")
        action = await amd.record_answer(conn, call_sid, answer, decides=decides)
    if action is None:
        logger.warning("AMD callback for an unknown call", call_sid=call_sid)
        metrics.add_metric(name="UnknownCallSid", unit=MetricUnit.Count, value=1)
        return Response(status_code=204)
    if action.twiml is not None or action.hang_up:
        try:
            await asyncio.to_thread(amd.act, runtime().settings, call_sid, action)
        except amd.TwilioFailed as exc:
            # The call goes on with the agent; Twilio's answer is in the log.
            logger.error("voicemail action failed", call_sid=call_sid, error=str(exc))
    logger.info(
        "answering machine detection", call_sid=call_sid, answered_by=answer, decides=decides
    )
    return Response(status_code=204)


async def _claim_machine(call_sid: str, answer: str) -> bool:
    """Does Twilio's machine verdict decide the call (the media node did not claim it first)?
    With the claims unreachable it does: Twilio's AMD is the verdict a call always has."""
    try:
        decided = await MachineVerdicts(runtime().cache()).claim(call_sid, verdict(TWILIO, answer))
    except CacheUnavailable as exc:
        logger.error("machine verdicts unavailable", error=str(exc))
        return True
    if decided_by(decided) != TWILIO:
        logger.info("the media node decided first", call_sid=call_sid, verdict=decided)
        return False
    return True


async def _media_node_verdict(call_sid: str) -> str | None:
    """The media node's machine verdict on a call, if it claimed one (for the campaign)."""
    try:
        found = await MachineVerdicts(runtime().cache()).get(call_sid)
    except CacheUnavailable as exc:
        logger.error("machine verdicts unavailable", error=str(exc))
        return None
    return found if found is not None and decided_by(found) == MEDIA_NODE else None
