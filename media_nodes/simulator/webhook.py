"""Twilio's first step of a call: POST the voice webhook, read the TwiML, find the stream.

Lets the simulator place a call end to end (webhook -> TwiML -> media node) exactly as Twilio
does: form parameters, ``X-Twilio-Signature`` when an auth token is known, then
``<Connect><Stream url=...>`` with its ``<Parameter>`` values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from xml.etree import ElementTree

import httpx
from twilio.request_validator import RequestValidator


class WebhookError(RuntimeError):
    """The webhook failed or did not answer with a stream; the message says what it did."""


@dataclass(frozen=True)
class StreamInstruction:
    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    call_sid: str = ""


def parse_twiml(xml: str) -> tuple[str, dict[str, str]] | None:
    """The ``<Connect><Stream>`` URL and parameters, or None when the TwiML does something else."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise WebhookError(f"the webhook's answer is not TwiML: {exc}") from None
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        return None
    parameters = {
        p.get("name", ""): p.get("value", "")
        for p in stream.findall("./Parameter")
        if p.get("name")
    }
    return str(stream.get("url")), parameters


async def dial(
    webhook_url: str,
    *,
    from_number: str = "+15555550100",
    to_number: str = "+15555550199",
    auth_token: str | None = None,
    timeout_s: float = 15.0,
) -> StreamInstruction:
    """Ring the voice webhook as Twilio would and return where to stream the call's audio."""
    call_sid = "CA" + uuid.uuid4().hex
    form = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": from_number,
        "To": to_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    headers = {}
    if auth_token:
        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(
            webhook_url, form
        )
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        response = await http.post(webhook_url, data=form, headers=headers)
    if response.status_code != 200:
        raise WebhookError(f"webhook answered {response.status_code}: {response.text[:200]}")
    found = parse_twiml(response.text)
    if found is None:
        raise WebhookError(f"the webhook did not connect a stream: {response.text[:300]}")
    url, parameters = found
    return StreamInstruction(url=url, parameters=parameters, call_sid=call_sid)
