"""Searchable logs: JSON documents in OpenSearch, one daily index each, found by call id.

Every process writes its log records as JSON lines (:class:`JsonLogFormatter`) carrying the call
id, the tenant, and the trace and span ids of the current OpenTelemetry span, with the message
redacted like events are (shared/privacy) before it leaves the process. A shipper (Fluent Bit
on EKS, a CloudWatch subscription for the Lambdas; infra/pulumi) bulk-loads those lines into
``parley-logs-YYYY.MM.DD``; :class:`LogSearch` answers ``parley logs search``. Retention is the
``prune`` job: daily indices older than the retention are deleted (the ISM plugin is not on
Maven Central, so the node in tests has none; Amazon OpenSearch Service has ISM, and the
shipped policy does the same there).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace

from shared import tracing
from shared.privacy import redact_text

INDEX_PREFIX = "parley-logs-"
TEMPLATE_NAME = "parley-logs"
OPENSEARCH_DIR = Path(__file__).resolve().parents[1] / "infra" / "observability" / "opensearch"
INDEX_TEMPLATE = OPENSEARCH_DIR / "index-template.json"
TRACES_STREAMS = "ss4o_traces-parley-*"  # the collector's data streams (infra/pulumi traces.py)
TRACES_TEMPLATE = OPENSEARCH_DIR / "traces-template.json"
# ISM policies by id, for a cluster that has the index-management plugin.
RETENTION_POLICIES = {
    "parley-logs": OPENSEARCH_DIR / "retention-policy.json",
    "parley-traces": OPENSEARCH_DIR / "traces-retention-policy.json",
}
SAVED_SEARCHES = OPENSEARCH_DIR / "saved-searches.json"
_DAILY = re.compile(rf"^{re.escape(INDEX_PREFIX)}(\d{{4}})\.(\d{{2}})\.(\d{{2}})$")
# Fields a log call may pass in ``extra=`` and that become searchable keywords.
CONTEXT_FIELDS = ("call_id", "tenant_id", "agent_id", "node_id")


class LogSearchError(RuntimeError):
    """OpenSearch refused or could not be reached; the message says which."""


def document(record: logging.LogRecord) -> dict[str, Any]:
    """The JSON document of one log record, PII redacted, with the current trace context."""
    message = record.getMessage()
    fields: dict[str, Any] = {}
    if message.startswith("{"):  # a structured line (json.dumps of a dict) keeps its fields
        try:
            parsed = json.loads(message)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fields = {k: v for k, v in parsed.items() if k in CONTEXT_FIELDS}
            message = str(parsed.get("msg", message))
    for name, known in tracing.call_fields().items():  # the call this line was logged in
        fields.setdefault(name, known)
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = str(value)
    doc: dict[str, Any] = {
        "@timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname,
        "logger": record.name,
        "message": redact_text(message).text,
        **fields,
    }
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        doc["trace_id"] = format(span.trace_id, "032x")
        doc["span_id"] = format(span.span_id, "016x")
    if record.exc_info:
        doc["error"] = redact_text(logging.Formatter().formatException(record.exc_info)).text
    return doc


class JsonLogFormatter(logging.Formatter):
    """One JSON document a line: what the shipper reads."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(document(record), ensure_ascii=False)


def configure_logging(level: str, text_format: str, *, as_json: bool) -> None:
    """The process's root logging: JSON documents for the shipper (deployed processes), plain
    lines on a developer's terminal."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if as_json else logging.Formatter(text_format))
    logging.basicConfig(level=level, handlers=[handler])


def index_for(timestamp: str) -> str:
    """The daily index of a document's ``@timestamp``."""
    return INDEX_PREFIX + timestamp[:10].replace("-", ".")


class LogSearch:
    """Parley's logs in one OpenSearch (a local node, or an Amazon OpenSearch Service domain)."""

    def __init__(self, url: str, *, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = client or httpx.Client(timeout=10)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            reply = self.http.request(method, f"{self.url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise LogSearchError(f"OpenSearch at {self.url} is unreachable: {exc}") from None
        if reply.status_code >= 400:
            raise LogSearchError(
                f"OpenSearch {method} {path}: {reply.status_code} {reply.text[:300]}"
            )
        return reply.json()

    def install(self) -> list[str]:
        """The index templates (every daily log index; the traces' data streams) and, where the
        cluster has the index-management plugin, the retention policies. Returns what was put;
        without the plugin, ``prune`` is the retention."""
        template = json.loads(INDEX_TEMPLATE.read_text())
        self._request("PUT", f"/_index_template/{TEMPLATE_NAME}", json=template)
        traces = json.loads(TRACES_TEMPLATE.read_text())
        self._request("PUT", "/_index_template/parley-traces", json=traces)
        installed = ["template parley-logs", "template parley-traces"]
        for policy_id, path in RETENTION_POLICIES.items():
            if self._put_policy(policy_id, json.loads(path.read_text())):
                installed.append(f"policy {policy_id}")
        return installed

    def _put_policy(self, policy_id: str, policy: dict[str, Any]) -> bool:
        path = f"/_plugins/_ism/policies/{policy_id}"
        try:
            reply = self.http.get(f"{self.url}{path}")
        except httpx.HTTPError as exc:
            raise LogSearchError(f"OpenSearch at {self.url} is unreachable: {exc}") from None
        if reply.status_code == 400 and "no handler" in reply.text:
            return False  # no index-management plugin here
        if reply.status_code == 200:  # replace it: ISM asks for the version being replaced
            current = reply.json()
            path += f"?if_seq_no={current['_seq_no']}&if_primary_term={current['_primary_term']}"
        elif reply.status_code != 404:
            raise LogSearchError(f"OpenSearch GET {path}: {reply.status_code} {reply.text[:300]}")
        self._request("PUT", path, json=policy)
        return True

    def bulk(self, documents: Iterable[dict[str, Any]], *, refresh: bool = False) -> int:
        """Index documents as the shipper does (the ``_bulk`` API); returns how many."""
        lines: list[str] = []
        for doc in documents:
            lines.append(json.dumps({"index": {"_index": index_for(doc["@timestamp"])}}))
            lines.append(json.dumps(doc, ensure_ascii=False))
        if not lines:
            return 0
        answer = self._request(
            "POST",
            "/_bulk" + ("?refresh=true" if refresh else ""),
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        if answer.get("errors"):
            failed = [i for i in answer["items"] if i["index"].get("error")]
            raise LogSearchError(f"{len(failed)} documents refused: {failed[0]['index']['error']}")
        return len(lines) // 2

    def search(
        self, *, call_id: str | None = None, query: str | None = None, size: int = 200
    ) -> list[dict[str, Any]]:
        """Documents of a call and/or matching a query string, oldest first."""
        must: list[dict[str, Any]] = []
        if call_id:
            must.append({"term": {"call_id": call_id}})
        if query:
            must.append({"query_string": {"query": query, "default_field": "message"}})
        body = {
            "size": size,
            "sort": [{"@timestamp": "asc"}],
            "query": {"bool": {"must": must or [{"match_all": {}}]}},
        }
        answer = self._request(
            "POST", f"/{INDEX_PREFIX}*/_search?ignore_unavailable=true", json=body
        )
        return [hit["_source"] for hit in answer["hits"]["hits"]]

    def prune(self, retention_days: int, *, today: dt.date | None = None) -> list[str]:
        """Delete daily log indices and trace backing indices older than the retention; the
        names deleted."""
        today = today or dt.datetime.now(dt.UTC).date()
        names = self._request("GET", f"/_cat/indices/{INDEX_PREFIX}*?format=json")
        old = []
        for row in names:
            match = _DAILY.match(row["index"])
            if match and (today - dt.date(*map(int, match.groups()))).days > retention_days:
                old.append(row["index"])
        for name in old:
            self._request("DELETE", f"/{name}")
        return old + self._prune_traces(retention_days, today)

    def _prune_traces(self, retention_days: int, today: dt.date) -> list[str]:
        """The traces' data streams: roll the write index over once it is a day old, and delete
        backing indices created more than the retention ago (never the write index)."""
        answer = self._request("GET", f"/_data_stream/{TRACES_STREAMS}")
        deleted = []
        for stream in answer.get("data_streams", []):
            backing = [i["index_name"] for i in stream["indices"]]
            if self._created(backing[-1]) < today:
                self._request("POST", f"/{stream['name']}/_rollover")
            for name in backing:
                if (today - self._created(name)).days > retention_days:
                    self._request("DELETE", f"/{name}")
                    deleted.append(name)
        return deleted

    def _created(self, index: str) -> dt.date:
        settings = self._request("GET", f"/{index}/_settings/index.creation_date")
        millis = int(settings[index]["settings"]["index"]["creation_date"])
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).date()


def saved_searches() -> dict[str, str]:
    """The query strings shipped with the project, by name."""
    return {s["name"]: s["query"] for s in json.loads(SAVED_SEARCHES.read_text())["searches"]}


def format_hits(hits: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"{h['@timestamp']} {h['level']:<7} {h.get('call_id', '-')} {h.get('trace_id', '-')[:16]} "
        f"{h['logger']}: {h['message']}"
        for h in hits
    )
