"""Onboarding merchants, issuing and checking their secret keys, webhook endpoints."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from chalicelib import ids, settings
from chalicelib.domain.merchant import Merchant
from chalicelib.store import merchants as store

_KEY_RE = re.compile(r"^sk_(test|live)_(mch_[0-9a-z]{16})_([0-9A-Za-z]{32})$")


@dataclass(frozen=True)
class Caller:
    merchant: Merchant
    livemode: bool


def hash_key(key: str) -> str:
    # Keys carry 190 bits of randomness, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_merchant(name: str, settlement_currency: str = "NZD", fee_bps: int = 200,
                    channels: dict[str, dict[str, str]] | None = None, **extra) -> Merchant:
    if extra.get("bank_account") is not None:
        extra["bank_account"] = checked_bank_account(extra["bank_account"])
    m = Merchant(id=ids.new("mch", 16), name=name, settlement_currency=settlement_currency, fee_bps=fee_bps,
                 channels=channels or {}, **extra)
    store.create(m)
    return m


def checked_bank_account(text: str) -> str:
    """A payout account as BB-bbbb-AAAAAAA-SSS, or `invalid` with what is wrong (check digits, branch)."""
    from chalicelib.domain import bank_account
    from chalicelib.services import errors

    try:
        return bank_account.normalise(text)
    except bank_account.InvalidBankAccount as exc:
        raise errors.invalid(exc.code, str(exc), "bank_account") from None


def set_bank_account(merchant_id: str, text: str) -> Merchant:
    """Change where a merchant's payouts go; only a valid NZ account is stored."""
    from chalicelib.services import errors
    from chalicelib.store import withdrawals as payout_store

    account = checked_bank_account(text)
    if not payout_store.set_payout_account(merchant_id, account):
        raise errors.not_found("merchant", "merchant_id")
    return store.get(merchant_id)


def issue_key(merchant_id: str, livemode: bool = False) -> str:
    """A new secret key. Returned once; only its hash is kept."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    secret = "".join(secrets.choice(alphabet) for _ in range(32))
    key = f"sk_{'live' if livemode else 'test'}_{merchant_id}_{secret}"
    store.add_key(hash_key(key), merchant_id, livemode, hint=secret[-4:])
    return key


def authenticate(key: str | None) -> Caller | None:
    """The merchant a secret key belongs to (one DynamoDB round trip), or None."""
    if not key:
        return None
    m = _KEY_RE.match(key)
    if not m:
        return None
    livemode = m.group(1) == "live"
    item, merchant = store.key_and_merchant(hash_key(key), m.group(2))
    if item is None or merchant is None or item.revoked or item.merchant_id != merchant.id:
        return None
    if bool(item.livemode) != livemode or merchant.status != "active":
        return None
    return Caller(merchant, livemode)


def add_webhook_endpoint(merchant: Merchant, url: str) -> dict:
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint_id = ids.new("we", 16)
    item = store.add_endpoint(merchant.id, endpoint_id, url, secret)
    return {"id": endpoint_id, "object": "webhook_endpoint", "url": item.url, "enabled": True, "secret": secret}


def list_webhook_endpoints(merchant: Merchant) -> list[dict]:
    return [{"id": e.endpoint_id, "object": "webhook_endpoint", "url": e.url, "enabled": e.enabled}
            for e in store.endpoints(merchant.id)]


DEMO_CHANNELS = {
    "wechat": {"sub_mch_id": "20000100"},
    "alipay": {"secondary_merchant_id": "NZDEMO0001", "secondary_merchant_name": "Kauri Demo Cafe",
               "secondary_merchant_industry": "5812"},
    "payease": {},
}


def seed_demo() -> dict:
    """A demo NZD merchant for the local stack, with a fresh test key, a static code for its counter and a
    sample hosted-checkout payment (no channel yet: the shopper chooses)."""
    from datetime import timedelta

    from chalicelib.money import Money
    from chalicelib.services import payments, qr_codes

    merchant = create_merchant("Kauri Demo Cafe", "NZD", fee_bps=200, channels=DEMO_CHANNELS,
                               fx_markup_bps=150)
    key = issue_key(merchant.id, livemode=False)
    code = qr_codes.create(merchant, False, "Queenstown Mall")
    sample = payments.create(merchant, False, payments.NewPayment(
        amount=Money(1250, "NZD"), channel="", flow="", merchant_reference="demo-checkout",
        description="Flat white and a muffin", expires_in=timedelta(hours=24)))
    base = settings.get().public_base_url
    return {"merchant_id": merchant.id, "api_key": key, "static_qr_code": code.id,
            "static_qr_url": f"{base}/qr/{code.id}", "pay_url": payments.pay_url(sample.id)}
