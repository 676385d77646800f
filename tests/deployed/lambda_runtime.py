"""A Lambda container for one handler: ``python -m tests.deployed.lambda_runtime module.function``.

Like the Lambda runtime it imports the handler named by the function's image command once, then
answers invocations one at a time for the container's life: one JSON event per line on stdin,
one JSON line on stdout (``{"result": ...}`` or ``{"error": "<traceback>"}``). Everything else the
handler prints goes to stderr, so stdout carries only the replies.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def main(handler_name: str) -> None:
    replies = sys.stdout
    sys.stdout = sys.stderr  # the handler's own output must not mix with the replies
    try:
        module, _, attribute = handler_name.rpartition(".")
        handler = getattr(importlib.import_module(module), attribute)
    except BaseException:
        # The runtime's Init phase failed: every invocation reports it.
        init_error: str | None = traceback.format_exc()
    else:
        init_error = None
    name = handler_name.split(".")[1]
    for line in sys.stdin:
        if init_error is not None:
            reply: dict[str, Any] = {"error": init_error}
        else:
            try:
                event = json.loads(line)
                reply = {"result": handler(event, LambdaContext(function_name=name))}
            except BaseException:
                reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply, default=str) + "\n")
        replies.flush()


if __name__ == "__main__":
    main(sys.argv[1])
