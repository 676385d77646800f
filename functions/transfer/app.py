"""The transfer/outbound Lambda: ``functions.transfer.app.handler``."""

from fastapi import APIRouter, Depends

from functions.common.app import create_app, lambda_handler
from functions.common.query import reject_unknown_query
from functions.transfer.routes import router as calls_router
from shared.settings import EVERY_PROCESS, Needs

# Twilio's REST API places and redirects calls; they call back to the public base URL.
NEEDS = EVERY_PROCESS | Needs.of(
    secrets=["PARLEY_TWILIO_AUTH_TOKEN"],
    settings=["PARLEY_TWILIO_ACCOUNT_SID", "PARLEY_PUBLIC_BASE_URL"],
)

router = APIRouter(dependencies=[Depends(reject_unknown_query)])
router.include_router(calls_router)

app = create_app(router, title="Parley calls API (transfer, outbound)")
handler = lambda_handler(app)
