"""Static QR codes (one printed code per store, any wallet) and the counters that throttle them."""
from __future__ import annotations

from datetime import datetime, timezone

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.domain.qr_code import QrCode
from chalicelib.store.base import is_conditional_failure, meta


class _CodesByMerchant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class QrCodeModel(Model):
    Meta = meta("qr_codes")
    code_id = UnicodeAttribute(hash_key=True)       # qr_<24 random>: the printed URL, unguessable
    merchant_id = UnicodeAttribute()
    livemode = NumberAttribute(default=0)
    store_name = UnicodeAttribute()
    currency = UnicodeAttribute()
    fixed_amount = NumberAttribute(null=True)       # minor units; the shopper cannot change it
    max_amount = NumberAttribute(null=True)         # minor units; per payment
    status = UnicodeAttribute(default="active")     # active | disabled
    created_at = UTCDateTimeAttribute()
    disabled_at = UTCDateTimeAttribute(null=True)
    replaced_by = UnicodeAttribute(null=True)       # set when the code was rotated
    by_merchant = _CodesByMerchant()


class ThrottleModel(Model):
    """One counter per key and time window; DynamoDB's TTL removes old windows."""
    Meta = meta("throttle")
    key = UnicodeAttribute(hash_key=True)           # <scope>#<subject>#<window start, epoch s>
    hits = NumberAttribute(default=0)
    expires = TTLAttribute()


def to_item(c: QrCode) -> QrCodeModel:
    return QrCodeModel(c.id, merchant_id=c.merchant_id, livemode=1 if c.livemode else 0, store_name=c.store_name,
                       currency=c.currency, fixed_amount=c.fixed_amount, max_amount=c.max_amount, status=c.status,
                       created_at=c.created_at, disabled_at=c.disabled_at, replaced_by=c.replaced_by)


def _from_item(m: QrCodeModel) -> QrCode:
    return QrCode(id=m.code_id, merchant_id=m.merchant_id, livemode=bool(m.livemode), store_name=m.store_name,
                  currency=m.currency, fixed_amount=None if m.fixed_amount is None else int(m.fixed_amount),
                  max_amount=None if m.max_amount is None else int(m.max_amount), status=m.status,
                  created_at=m.created_at, disabled_at=m.disabled_at, replaced_by=m.replaced_by)


def get(code_id: str) -> QrCode | None:
    try:
        return _from_item(QrCodeModel.get(code_id, consistent_read=True))
    except DoesNotExist:
        return None


def for_merchant(merchant_id: str, limit: int = 200) -> list[QrCode]:
    return [_from_item(m) for m in QrCodeModel.by_merchant.query(merchant_id, scan_index_forward=False, limit=limit)]


def disable(unit, code_id: str, at, replaced_by: str | None = None):
    """Add "active -> disabled, once" to `unit` (the transaction fails if the code was not active)."""
    actions = [QrCodeModel.status.set("disabled"), QrCodeModel.disabled_at.set(at)]
    if replaced_by:
        actions.append(QrCodeModel.replaced_by.set(replaced_by))
    return unit.update(QrCodeModel(code_id), actions, QrCodeModel.status == "active")


def claim(key: str, n: int, limit: int, expires_epoch: int) -> int:
    """Charge `n` hits to the counter `key` in one conditional UpdateItem (ADD n while fewer than `limit`
    are in) and say how many of them fit under `limit`: n, fewer when the counter crosses it with this
    call (it then holds more than `limit`, by less than n), 0 once it is full (nothing counted)."""
    item = ThrottleModel(key)
    expires = datetime.fromtimestamp(expires_epoch, tz=timezone.utc)
    try:
        item.update(actions=[ThrottleModel.hits.add(n), ThrottleModel.expires.set(expires)],
                    condition=ThrottleModel.hits.does_not_exist() | (ThrottleModel.hits < limit))
    except UpdateError as exc:
        if is_conditional_failure(exc):
            return 0
        raise
    before = int(item.hits) - n               # the update answers with the item as written (ALL_NEW)
    return max(0, min(n, limit - before))


def hit(key: str, limit: int, expires_epoch: int) -> bool:
    """Count one hit on `key`; False (and nothing counted) once `limit` hits are in."""
    return claim(key, 1, limit, expires_epoch) == 1
