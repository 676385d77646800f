"""Post-call analysis: a summary, success against the agent's rubric, the caller's sentiment and
fields extracted to the agent's JSON schema, stored as versions of call_analyses.

The job workers do it (functions/jobs/tasks.py), never the call's media node: ``store`` holds
the requests and versions, ``analyze`` makes one analysis (``local_model`` without an LLM),
``routes`` is the API.
"""
