"""Powertools Logger / Metrics / Tracer for the functions (JSON logs carry the request id)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Parley")

logger = Logger(service="parley-functions")
metrics = Metrics(namespace=NAMESPACE, service="parley-functions")
tracer = Tracer(service="parley-functions")
