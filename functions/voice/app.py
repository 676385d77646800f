"""The voice Lambda: ``functions.voice.app.handler``."""

from functions.common.app import create_app, lambda_handler
from functions.voice.routes import router
from shared.settings import EVERY_PROCESS, REDIS, TRACING, Needs

# The media-node registry (Redis) picks the node; the auth token checks Twilio's signatures; the
# public base URL is the one Twilio signed.
NEEDS = (
    EVERY_PROCESS
    | REDIS
    | TRACING
    | Needs.of(secrets=["PARLEY_TWILIO_AUTH_TOKEN"], settings=["PARLEY_PUBLIC_BASE_URL"])
)

app = create_app(router, title="Parley voice webhooks")
handler = lambda_handler(app)
