"""``parley campaign run``: a campaign from a CSV on this machine's database, and its progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from functions.campaigns import routes, store
from functions.common.auth import Principal
from functions.common.db import db
from functions.common.errors import ApiError
from functions.common.runtime import runtime


class CampaignError(RuntimeError):
    """The CSV or the campaign was refused; the message says why."""


RETRY_FORMAT = "OUTCOME=ATTEMPTS/BACKOFF_S, e.g. busy=3/600 (outcomes: {})"


def parse_retry(specs: list[str]) -> dict[str, routes.RetryRule]:
    """``--retry busy=3/600``: at most 3 attempts in all for busy, the second 600 s later;
    outcomes not named keep the API's defaults."""
    rules = routes.default_retry()
    known = tuple(rules)
    for spec in specs:
        outcome, _, rest = spec.partition("=")
        attempts, _, backoff = rest.partition("/")
        try:
            if outcome not in known:
                raise ValueError
            rules[outcome] = routes.RetryRule(
                max_attempts=int(attempts), backoff_s=float(backoff or 0)
            )
        except ValueError:
            raise CampaignError(
                f"--retry {spec!r}: expected " + RETRY_FORMAT.format(", ".join(known))
            ) from None
    return rules


async def run(
    tenant_id: str,
    agent_id: str,
    csv_text: str,
    *,
    name: str,
    concurrency: int,
    cps: float,
    timezone: str,
    say: Callable[[str], None],
    interval_s: float,
    retry: dict[str, routes.RetryRule] | None = None,
) -> str:
    """Create and start the campaign, then report its progress until it is over; returns its
    final status."""
    principal = Principal(tenant_id, "cli", frozenset({"admin"}))
    try:
        contacts = routes.parse_contacts_csv(csv_text)
        body = routes.CampaignCreate(
            name=name,
            agent_id=agent_id,
            max_concurrency=concurrency,
            calls_per_second=cps,
            default_timezone=timezone or None,
            contacts=contacts,
            retry=retry if retry is not None else routes.default_retry(),
        )
        campaign = await routes.create_campaign(body, principal)
        await routes.move_campaign(principal, campaign.campaign_id, "start")
    except ApiError as exc:
        raise CampaignError(exc.message) from None
    say(f"campaign {campaign.campaign_id}: {campaign.contacts} contacts, started")
    try:
        while True:
            async with db() as conn:
                current = await routes.read_campaign(conn, tenant_id, campaign.campaign_id)
                counts = await store.progress(conn, campaign.campaign_id)
            say(render(current.status, counts))
            if current.status in ("completed", "canceled"):
                for reason, count in counts["failures"].items():
                    say(f"  {count} failed: {reason}")
                return current.status
            await asyncio.sleep(interval_s)
    finally:
        await runtime().close()


def render(status: str, counts: dict[str, dict[str, int]]) -> str:
    def part(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "-"

    return (
        f"{status}: contacts [{part(counts['contacts'])}] outcomes [{part(counts['outcomes'])}] "
        f"dispositions [{part(counts['dispositions'])}]"
    )
