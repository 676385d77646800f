"""Parley's stateless AWS Lambda functions: FastAPI apps wrapped by Mangum + Powertools.

``voice`` (Twilio webhooks), ``admin`` (tenants, keys, agents, numbers, knowledge), ``analytics``
(calls, summaries) and ``transfer`` (live-call transfer, outbound calls). ``functions.local``
mounts them all for ``parley api serve``.
"""
