"""A merchant's secret keys from the portal: list (hints only), create, roll with a grace period, revoke.

Each change and its audit entry are one transaction; a key is shown once, when it is made.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib import clock
from chalicelib.services import errors, merchants
from chalicelib.store.models import ApiKeyModel
from chalicelib.store.unit import Conflict, Unit

ROLL_GRACE = timedelta(hours=24)     # the old key keeps working this long after a roll
REF_LENGTH = 20


@dataclass(frozen=True)
class KeyInfo:
    ref: str                   # key_<first 20 hex of its hash>: names it in the portal, opens nothing
    livemode: bool
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if clock.now() >= self.expires_at else "rolling"
        return "active"


def _info(item: ApiKeyModel) -> KeyInfo:
    return KeyInfo("key_" + item.key_hash[:REF_LENGTH], bool(item.livemode), item.hint, item.created_at,
                   item.expires_at, bool(item.revoked))


def list_for(merchant_id: str) -> list[KeyInfo]:
    return [_info(i) for i in ApiKeyModel.by_merchant.query(merchant_id, scan_index_forward=False, limit=100)]


def _own(merchant_id: str, ref: str) -> ApiKeyModel:
    """The key `ref` names, read consistently, only if it is this merchant's."""
    prefix = ref[4:] if ref.startswith("key_") and len(ref) == 4 + REF_LENGTH else None
    for hit in ApiKeyModel.by_merchant.query(merchant_id, limit=200) if prefix else []:
        if hit.key_hash.startswith(prefix):
            item = ApiKeyModel.get(hit.key_hash, consistent_read=True)
            if item.merchant_id == merchant_id:
                return item
    raise errors.not_found("key", "key")


def create(merchant_id: str, livemode: bool, actor: str) -> str:
    key, key_hash, hint = merchants.new_key(merchant_id, livemode)
    item = ApiKeyModel(key_hash, merchant_id=merchant_id, livemode=livemode, hint=hint, created_at=clock.now())
    Unit().put_new(item).audit(merchant_id, actor, "key.created", {"key": _info(item).ref,
                                                                    "livemode": livemode}).commit()
    return key


def roll(merchant_id: str, ref: str, actor: str) -> str:
    """A new key of the same mode; the old one keeps working for ROLL_GRACE, then stops."""
    old = _own(merchant_id, ref)
    if old.revoked or old.expires_at is not None:
        raise errors.conflict("key_not_active", "only an active key can be rolled")
    key, key_hash, hint = merchants.new_key(merchant_id, bool(old.livemode))
    item = ApiKeyModel(key_hash, merchant_id=merchant_id, livemode=bool(old.livemode), hint=hint,
                       created_at=clock.now())
    until = clock.now() + ROLL_GRACE
    unit = Unit().put_new(item).update(
        ApiKeyModel(old.key_hash), [ApiKeyModel.expires_at.set(until)],
        ApiKeyModel.expires_at.does_not_exist() & (ApiKeyModel.revoked == False))  # noqa: E712
    unit.audit(merchant_id, actor, "key.rolled", {"key": ref, "new_key": _info(item).ref,
                                                  "old_key_until": clock.iso(until)})
    try:
        unit.commit()
    except Conflict:
        raise errors.conflict("key_not_active", "the key changed meanwhile; reload") from None
    merchants.forget_keys(merchant_id)  # the old key's grace starts now in this container too
    return key


def revoke(merchant_id: str, ref: str, actor: str) -> None:
    old = _own(merchant_id, ref)
    if old.revoked:
        return
    Unit().update(ApiKeyModel(old.key_hash), [ApiKeyModel.revoked.set(True)], ApiKeyModel.key_hash.exists()) \
        .audit(merchant_id, actor, "key.revoked", {"key": ref}).commit()
    merchants.forget_keys(merchant_id)  # refused at once here; other containers within KEY_CACHE_SECONDS
