"""PII redaction of transcripts: cards (Luhn-checked), US SSNs, emails, phone numbers — written or
spoken — applied per tenant (``tenants.settings.redact_pii``) before text is stored or sent."""

from shared.privacy.events import redact_event
from shared.privacy.redact import Redacted, redact_text
from shared.privacy.tenants import TenantPrivacy

__all__ = ["Redacted", "TenantPrivacy", "redact_event", "redact_text"]
