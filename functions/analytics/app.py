"""The analytics Lambda: ``functions.analytics.app.handler``."""

from fastapi import APIRouter, Depends

from functions.analysis import routes as analysis
from functions.analytics import aggregate, calls, export, export_jobs, recording, summaries
from functions.common.app import create_app, lambda_handler
from functions.common.query import reject_unknown_query
from shared.settings import EVERY_PROCESS, REDIS, TRACING, Needs

# Recording and export links are pre-signed with the function's own role; export jobs are
# handed to the job workers through Redis (the broker); every request is a span.
NEEDS = EVERY_PROCESS | REDIS | TRACING | Needs.of(settings=["PARLEY_EXPORT_STORE"])

router = APIRouter(dependencies=[Depends(reject_unknown_query)])
router.include_router(aggregate.router)  # before calls: /v1/calls/aggregate is no call id
router.include_router(export.router)  # and neither is /v1/calls/export
router.include_router(calls.router)
router.include_router(analysis.router)
router.include_router(recording.router)
router.include_router(summaries.router)
router.include_router(export_jobs.router)

app = create_app(router, title="Parley analytics API")
handler = lambda_handler(app)
