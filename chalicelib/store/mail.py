"""Kauri's own mail (staff invitations): an outbox item per message, written in the same transaction as
what it tells of, sent by the send_mail job (services.mail) with the webhook/alert retry life."""
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


class _MailDue(GlobalSecondaryIndex):
    """Sparse: only mail still to be sent carries `due_shard`."""
    class Meta:
        index_name = "due"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    next_attempt_at = NumberAttribute(range_key=True)


class _MailByMerchant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class MailModel(Model):
    Meta = meta("mail_outbox")
    mail_id = UnicodeAttribute(hash_key=True)        # mail_<random>
    merchant_id = UnicodeAttribute()
    kind = UnicodeAttribute()                        # staff_invitation
    to = UnicodeAttribute()
    data = JSONAttribute()                           # the message's values that are not secret
    sealed = JSONAttribute(null=True)                # the link, under the KMS envelope; dropped once sent
    status = UnicodeAttribute()                      # pending | delivered | failed | cancelled
    attempts = NumberAttribute(default=0)
    next_attempt_at = NumberAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)         # SES's, once sent
    last_error = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires = TTLAttribute(null=True)                # removed some days after its invitation lapsed
    version = VersionAttribute()
    due = _MailDue()
    by_merchant = _MailByMerchant()


def due(now_epoch: int, limit: int = 100) -> list[MailModel]:
    return list(MailModel.due.query(DUE_SHARD, MailModel.next_attempt_at <= now_epoch, limit=limit))


def get(mail_id: str) -> MailModel | None:
    try:
        return MailModel.get(mail_id, consistent_read=True)
    except DoesNotExist:
        return None


def recent(merchant_id: str, limit: int = 20) -> list[MailModel]:
    """The merchant's latest mail, newest first (an index read: what the Staff page shows)."""
    return list(MailModel.by_merchant.query(merchant_id, scan_index_forward=False, limit=limit))
