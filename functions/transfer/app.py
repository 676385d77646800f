"""The calls Lambda (transfer, outbound calls, campaigns): ``functions.transfer.app.handler``."""

from fastapi import APIRouter, Depends

from functions.campaigns.routes import router as campaigns_router
from functions.common.app import create_app, lambda_handler
from functions.common.query import reject_unknown_query
from functions.transfer.routes import router as calls_router
from shared.settings import EVERY_PROCESS, REDIS, TRACING, Needs

# Twilio's REST API places and redirects calls; they call back to the public base URL. A
# campaign started or resumed is handed to the job workers through Redis (the broker). Every
# request is a span (functions/common/app.py), exported to the trace collector.
NEEDS = (
    EVERY_PROCESS
    | REDIS
    | TRACING
    | Needs.of(
        secrets=["PARLEY_TWILIO_AUTH_TOKEN"],
        settings=["PARLEY_TWILIO_ACCOUNT_SID", "PARLEY_PUBLIC_BASE_URL"],
    )
)

router = APIRouter(dependencies=[Depends(reject_unknown_query)])
router.include_router(calls_router)
router.include_router(campaigns_router)

app = create_app(router, title="Parley calls API (transfer, outbound, campaigns)")
handler = lambda_handler(app)
