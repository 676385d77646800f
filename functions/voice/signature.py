"""Reads a Twilio webhook's form body and checks its X-Twilio-Signature (403 if it fails)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from twilio.request_validator import RequestValidator

from functions.common.errors import ApiError
from functions.common.observability import logger
from functions.common.public_url import public_request_url
from functions.common.runtime import runtime

MAX_FORM_BYTES = 64_000


async def verified_form(request: Request) -> dict[str, str]:
    """The webhook's parameters, once the signature over URL + parameters is valid."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "Twilio webhooks are application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, f"form body larger than {MAX_FORM_BYTES} bytes")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, "form body is not valid UTF-8 form data") from None
    settings = runtime().settings
    token = settings.twilio_auth_token
    if token is None:
        if settings.production:
            raise ApiError(503, "PARLEY_TWILIO_AUTH_TOKEN is not configured")
        logger.warning("no PARLEY_TWILIO_AUTH_TOKEN: accepting an unsigned webhook (development)")
        return form
    signature = request.headers.get("x-twilio-signature", "")
    url = public_request_url(request)
    if not signature or not RequestValidator(token.get_secret_value()).validate(
        url, form, signature
    ):
        logger.warning("rejected a webhook with an invalid Twilio signature", url=url)
        raise ApiError(403, "invalid X-Twilio-Signature")
    return form
