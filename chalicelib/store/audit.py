"""The audit trail: who changed what for a merchant, and when. Written in the same transaction as the
change (store.unit.Unit.audit), never edited; the owner reads it newest first."""
from __future__ import annotations

from datetime import datetime, timezone

from pynamodb.attributes import JSONAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from chalicelib import clock, ids
from chalicelib.store.base import meta


class AuditModel(Model):
    Meta = meta("audit_trail")
    merchant_id = UnicodeAttribute(hash_key=True)
    entry_key = UnicodeAttribute(range_key=True)     # <iso time, µs>#<entry id>: time order within a merchant
    actor = UnicodeAttribute()                       # "staff:<email>" or "ops:<request_id>"
    action = UnicodeAttribute()                      # e.g. merchant.suspended, refund.created, staff.invited
    details = JSONAttribute(default=dict)            # what changed (never a secret)
    at = UTCDateTimeAttribute()


def new_entry(merchant_id: str, actor: str, action: str, details: dict | None = None,
              at: datetime | None = None) -> AuditModel:
    when = at or clock.now()
    stamp = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return AuditModel(merchant_id, f"{stamp}#{ids.new('aud', 12)}", actor=actor, action=action,
                      details=details or {}, at=when)


def recent(merchant_id: str, limit: int = 100) -> list[AuditModel]:
    return list(AuditModel.query(merchant_id, scan_index_forward=False, limit=limit, consistent_read=True))
