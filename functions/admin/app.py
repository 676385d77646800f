"""The admin Lambda: ``functions.admin.app.handler``."""

from fastapi import APIRouter, Depends

from functions.admin import agents, knowledge, numbers, tenants
from functions.common.app import create_app, lambda_handler
from functions.common.query import reject_unknown_query

router = APIRouter(dependencies=[Depends(reject_unknown_query)])
for part in (tenants.router, agents.router, numbers.router, knowledge.router):
    router.include_router(part)

app = create_app(router, title="Parley admin API")
handler = lambda_handler(app)
