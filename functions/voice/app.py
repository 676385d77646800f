"""The voice Lambda: ``functions.voice.app.handler``."""

from functions.common.app import create_app, lambda_handler
from functions.voice.routes import router

app = create_app(router, title="Parley voice webhooks")
handler = lambda_handler(app)
