"""Which tenants want PII redacted: ``tenants.settings`` jsonb, e.g. ``{"redact_pii": true}``,
read once a minute per tenant. If the setting cannot be read, events are redacted (fail closed)."""

from __future__ import annotations

import logging
import time
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shared.events import Event
from shared.privacy.events import redact_event

log = logging.getLogger(__name__)

SETTING = "redact_pii"


class TenantPrivacy:
    def __init__(
        self, pool: AsyncConnectionPool[Any] | None, *, ttl_s: float = 60.0, default: bool = False
    ) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.default = default
        self._cache: dict[str, tuple[bool, float]] = {}

    async def redacts(self, tenant_id: str) -> bool:
        cached = self._cache.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.ttl_s:
            return cached[0]
        on = await self._load(tenant_id)
        self._cache[tenant_id] = (on, now)
        return on

    async def _load(self, tenant_id: str) -> bool:
        if self.pool is None:
            return self.default
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT settings FROM tenants WHERE tenant_id = %s", (tenant_id,)
                )
                row = await cur.fetchone()
        except Exception as exc:
            log.warning("cannot read privacy settings of tenant %s (%s): redacting", tenant_id, exc)
            return True
        if row is None:
            return self.default
        settings = row["settings"] if isinstance(row, dict) else row[0]
        return bool((settings or {}).get(SETTING, self.default))

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop cached settings (after a tenant's settings change)."""
        if tenant_id is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant_id, None)

    async def apply(self, event: Event) -> Event:
        """The event, redacted if its tenant asks for it."""
        if await self.redacts(event.tenant_id):
            return redact_event(event)
        return event
