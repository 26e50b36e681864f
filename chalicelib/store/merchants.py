"""Merchants, their API keys and webhook endpoints."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.transactions import TransactGet

from chalicelib import clock
from chalicelib.domain.merchant import Merchant
from chalicelib.store.connection import connection
from chalicelib.store.models import ENDPOINT_COUNTER, ApiKeyModel, MerchantModel, WebhookEndpointModel


def to_item(m: Merchant) -> MerchantModel:
    return MerchantModel(
        m.id, name=m.name, settlement_currency=m.settlement_currency, fee_bps=m.fee_bps,
        channels=m.channels, status=m.status, fx_markup_bps=m.fx_markup_bps,
        allow_negative_balance=m.allow_negative_balance, holding_days=m.holding_days,
        min_payout=m.min_payout, bank_account=m.bank_account, legal_name=m.legal_name, created_at=clock.now(),
        alert_bindings=[list(b) for b in m.alert_bindings] if m.alert_bindings is not None else None,
    )


def from_item(i: MerchantModel) -> Merchant:
    return Merchant(
        id=i.merchant_id, name=i.name, settlement_currency=i.settlement_currency, fee_bps=int(i.fee_bps),
        channels=dict(i.channels or {}), status=i.status, fx_markup_bps=int(i.fx_markup_bps or 0),
        allow_negative_balance=bool(i.allow_negative_balance), holding_days=int(i.holding_days or 0),
        min_payout=int(i.min_payout or 0), bank_account=i.bank_account, legal_name=i.legal_name,
        alert_bindings=tuple(tuple(b) for b in i.alert_bindings) if i.alert_bindings is not None else None,
    )


def create(m: Merchant) -> None:
    to_item(m).save(condition=MerchantModel.merchant_id.does_not_exist())


def save(m: Merchant) -> None:
    to_item(m).save()


def get(merchant_id: str) -> Merchant | None:
    try:
        return from_item(MerchantModel.get(merchant_id))
    except DoesNotExist:
        return None


def set_alert_bindings(merchant_id: str, bindings: list[tuple[str, str, str]]) -> None:
    """Copy the merchant's staff alert bindings onto its item (see Merchant.alert_bindings)."""
    MerchantModel(merchant_id).update(actions=[MerchantModel.alert_bindings.set([list(b) for b in bindings])],
                                      condition=MerchantModel.merchant_id.exists())


def add_key(key_hash: str, merchant_id: str, livemode: bool, hint: str) -> None:
    ApiKeyModel(key_hash, merchant_id=merchant_id, livemode=livemode, hint=hint,
                created_at=clock.now()).save(condition=ApiKeyModel.key_hash.does_not_exist())


def key_and_merchant(key_hash: str, merchant_id: str) -> tuple[ApiKeyModel | None, Merchant | None]:
    """Both in one round trip (TransactGetItems)."""
    with TransactGet(connection=connection()) as tg:
        k = tg.get(ApiKeyModel, key_hash)
        m = tg.get(MerchantModel, merchant_id)
    return _found(k), (from_item(m.get()) if _found(m) is not None else None)


def _found(future):
    try:
        return future.get()
    except DoesNotExist:
        return None


def new_endpoint(merchant_id: str, endpoint_id: str, url: str, secret: str, livemode: bool) -> WebhookEndpointModel:
    """A new endpoint item; its signing secret is stored only sealed (chalicelib.secrets.seal)."""
    from chalicelib import secrets

    return WebhookEndpointModel(merchant_id, endpoint_id, url=url, secret=None, secret_sealed=secrets.seal(secret),
                                enabled=True, created_at=clock.now(), livemode=livemode)


def mode_of(e: WebhookEndpointModel) -> bool:
    """The endpoint's mode (absent on old items: live)."""
    return True if e.livemode is None else bool(e.livemode)


def all_endpoints(merchant_id: str) -> list[WebhookEndpointModel]:
    """Every endpoint of the merchant, of both modes, enabled or not (the counter item is not one)."""
    return list(WebhookEndpointModel.query(merchant_id, WebhookEndpointModel.endpoint_id.startswith("we_"),
                                           consistent_read=True))


def seal_legacy(item: WebhookEndpointModel) -> dict | None:
    """The sealed form of an endpoint's plaintext secret (an item written before sealing), else None;
    every write of an endpoint stores it and removes the plaintext."""
    from chalicelib import secrets

    return secrets.seal(item.secret) if item.secret and not item.secret_sealed else None


def signing_secret(item: WebhookEndpointModel) -> str:
    """The endpoint's signing secret in clear, for signing one delivery (a KMS Decrypt; never cached)."""
    from chalicelib import secrets

    if item.secret_sealed:
        return secrets.open_sealed(item.secret_sealed)
    return item.secret or ""   # an item from before sealing


def endpoints(merchant_id: str, livemode: bool) -> list[WebhookEndpointModel]:
    """The endpoints events of one mode are delivered to."""
    return [e for e in all_endpoints(merchant_id) if e.enabled and mode_of(e) == livemode]


def endpoint(merchant_id: str, endpoint_id: str) -> WebhookEndpointModel | None:
    try:
        return WebhookEndpointModel.get(merchant_id, endpoint_id, consistent_read=True)
    except DoesNotExist:
        return None


def uncounted_endpoints(merchant_id: str) -> int | None:
    """None when the merchant's endpoint counter exists; else how many endpoints it has (made before it)."""
    counter = endpoint(merchant_id, ENDPOINT_COUNTER)
    return None if counter is not None else len(all_endpoints(merchant_id))
