"""Merchant staff alerts: who gets them (bindings) and the alert outbox (one item per payment x openid)."""
from __future__ import annotations

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.store.base import meta
from chalicelib.store.events import save_if_unchanged  # noqa: F401  (versioned save, as for webhooks)

DUE_SHARD = "due"


class AlertBindingModel(Model):
    """A merchant's staff member (WeChat Official Account openid) who wants payment alerts."""
    Meta = meta("alert_bindings")
    merchant_id = UnicodeAttribute(hash_key=True)
    binding_id = UnicodeAttribute(range_key=True)
    openid = UnicodeAttribute()
    store_name = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    staff_email = UnicodeAttribute(null=True)       # who made the portal code it was bound with (if any)


class BindCodeModel(Model):
    """A portal-made "scan to get alerts" code: one use, short-lived; only its token's SHA-256 is kept."""
    Meta = meta("alert_bind_codes")
    token_hash = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    store_name = UnicodeAttribute()
    staff_email = UnicodeAttribute()                # the staff member who showed it
    status = UnicodeAttribute()                     # pending | used
    expires_at = UTCDateTimeAttribute()
    expires = TTLAttribute()                        # removed a day after it lapsed


class _AlertsDue(GlobalSecondaryIndex):
    """Sparse: only alerts still to be sent carry `due_shard`."""
    class Meta:
        index_name = "due"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    next_attempt_at = NumberAttribute(range_key=True)


class AlertModel(Model):
    """The alert outbox: written in the same transaction as the payment's success."""
    Meta = meta("alerts")
    alert_id = UnicodeAttribute(hash_key=True)     # alt_<hash(payment_id, openid)>: one per payment and person
    merchant_id = UnicodeAttribute()
    payment_id = UnicodeAttribute()
    binding_id = UnicodeAttribute()
    openid = UnicodeAttribute()
    data = JSONAttribute()                          # the template values, fixed when the payment succeeded
    status = UnicodeAttribute()                     # pending | delivered | failed | cancelled
    attempts = NumberAttribute(default=0)
    next_attempt_at = NumberAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    msgid = NumberAttribute(null=True)              # WeChat's message id once sent
    last_error = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    version = VersionAttribute()
    due = _AlertsDue()


# ---- bindings ----------------------------------------------------------------------------------

def bindings(merchant_id: str, limit: int = 100) -> list[AlertBindingModel]:
    return list(AlertBindingModel.query(merchant_id, consistent_read=True, limit=limit))


def binding(merchant_id: str, binding_id: str) -> AlertBindingModel | None:
    try:
        return AlertBindingModel.get(merchant_id, binding_id, consistent_read=True)
    except DoesNotExist:
        return None


def bind_code(token_hash: str) -> BindCodeModel | None:
    try:
        return BindCodeModel.get(token_hash, consistent_read=True)
    except DoesNotExist:
        return None


# ---- the outbox --------------------------------------------------------------------------------

def due(now_epoch: int, limit: int = 100) -> list[AlertModel]:
    return list(AlertModel.due.query(DUE_SHARD, AlertModel.next_attempt_at <= now_epoch, limit=limit))


def get(alert_id: str) -> AlertModel | None:
    try:
        return AlertModel.get(alert_id, consistent_read=True)
    except DoesNotExist:
        return None

