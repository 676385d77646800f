"""Outcome webhooks: a tenant subscribes a URL to events (call.started, call.ended,
call.analyzed, transfer.*, campaign.*); each matching event becomes a delivery row, which job
workers POST, signed, with retries and a dead-letter list (see docs/api.md)."""
