"""Onboarding merchants, issuing and checking their secret keys, webhook endpoints."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from chalicelib import clock, ids, settings
from chalicelib.domain.merchant import Merchant
from chalicelib.services import errors
from chalicelib.services.idempotency import Completion
from chalicelib.store import merchants as store
from chalicelib.store.unit import Conflict, Unit

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
    forget_keys(merchant_id)
    return store.get(merchant_id)


def new_key(merchant_id: str, livemode: bool) -> tuple[str, str, str]:
    """(key, its hash, hint) for a fresh secret key; nothing stored yet."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    secret = "".join(secrets.choice(alphabet) for _ in range(32))
    key = f"sk_{'live' if livemode else 'test'}_{merchant_id}_{secret}"
    return key, hash_key(key), secret[-4:]


def issue_key(merchant_id: str, livemode: bool = False) -> str:
    """A new secret key. Returned once; only its hash is kept."""
    key, key_hash, hint = new_key(merchant_id, livemode)
    store.add_key(key_hash, merchant_id, livemode, hint=hint)
    return key


# Per-container cache of verified keys: key hash -> (Caller, when it was read). A revoked key, a
# suspended merchant or a changed fee takes effect in every container within KEY_CACHE_SECONDS; a
# write through this container (store.merchants) forgets the merchant's entries at once. Unknown and
# refused keys are never cached (nothing for a key-guesser to fill the cache with).
KEY_CACHE_SECONDS = 30
KEY_CACHE_MAX = 512
_key_cache: dict[str, tuple[Caller, int, int | None]] = {}   # (caller, read at, a rolled key's end)


def authenticate(key: str | None) -> Caller | None:
    """The merchant a secret key belongs to, or None: one DynamoDB round trip (TransactGetItems),
    none while the key's cache entry is fresh (KEY_CACHE_SECONDS)."""
    if not key:
        return None
    m = _KEY_RE.match(key)
    if not m:
        return None
    livemode = m.group(1) == "live"
    digest = hash_key(key)
    now = clock.epoch()
    cached = _key_cache.get(digest)
    if cached is not None and 0 <= now - cached[1] < KEY_CACHE_SECONDS and (cached[2] is None or now < cached[2]):
        return cached[0]
    item, merchant = store.key_and_merchant(digest, m.group(2))
    if item is None or merchant is None or item.revoked or item.merchant_id != merchant.id:
        _key_cache.pop(digest, None)
        return None
    if item.expires_at is not None and clock.now() >= item.expires_at:
        _key_cache.pop(digest, None)
        return None     # rolled, and its grace period is over
    if bool(item.livemode) != livemode or not merchant.has_money_flows:
        _key_cache.pop(digest, None)
        return None     # a suspended merchant still reads, refunds and withdraws; payments.create refuses it
    who = Caller(merchant, livemode)
    if len(_key_cache) >= KEY_CACHE_MAX:
        _key_cache.clear()
    ends = int(item.expires_at.timestamp()) if item.expires_at is not None else None
    _key_cache[digest] = (who, now, ends)
    return who


def forget_keys(merchant_id: str | None = None) -> None:
    """Drop cached keys (of one merchant, or all): called when this container changes a merchant."""
    for digest, (who, _, _) in list(_key_cache.items()):
        if merchant_id is None or who.merchant.id == merchant_id:
            _key_cache.pop(digest, None)


MAX_WEBHOOK_ENDPOINTS = 10   # per merchant (both modes), enabled or disabled; enforced by a counter item


def add_webhook_endpoint(merchant: Merchant, livemode: bool, url: str, completion: Completion | None = None,
                         actor: str | None = None) -> dict:
    """A new endpoint of the caller's mode, its secret shown this once. The endpoint, the merchant's
    endpoint counter, the idempotent reply (which holds the secret) and, for a person (`actor`), the
    audit entry are one transaction: a retry replays this very secret."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    item = store.new_endpoint(merchant.id, ids.new("we", 16), url, secret, livemode)
    body = {**endpoint_view(item), "secret": secret}
    for _ in range(3):  # a concurrent add may start the counter, or touch it, in between: count again
        uncounted = store.uncounted_endpoints(merchant.id)
        if uncounted is not None and uncounted >= MAX_WEBHOOK_ENDPOINTS:
            raise _too_many()
        unit = Unit().add_webhook_endpoint(item, MAX_WEBHOOK_ENDPOINTS, uncounted)
        if actor:
            unit.audit(merchant.id, actor, "webhook_endpoint.added", {"endpoint": item.endpoint_id, "url": url})
        if completion is not None:
            completion.attach(unit, 201, body, sealed=True)  # the reply holds the signing secret
        try:
            unit.commit()
            return body
        except Conflict as exc:
            if completion is not None:
                completion.attached = False
            if uncounted is None and len(exc.reasons) > 1 and exc.reasons[1] == "ConditionalCheckFailed":
                raise _too_many() from None
    raise errors.conflict("webhook_endpoint_conflict", "the endpoints changed meanwhile; try again")


def _too_many() -> errors.ServiceError:
    return errors.invalid("too_many_webhook_endpoints",
                          f"at most {MAX_WEBHOOK_ENDPOINTS} webhook endpoints per merchant; delete one first", "url")


def list_webhook_endpoints(merchant: Merchant, livemode: bool) -> list[dict]:
    """The caller's mode only: a test key never sees a live endpoint, nor the reverse."""
    return [endpoint_view(e) for e in store.all_endpoints(merchant.id) if store.mode_of(e) == livemode]


def _own_endpoint(merchant: Merchant, livemode: bool, endpoint_id: str):
    item = store.endpoint(merchant.id, endpoint_id) if ids.looks_like(endpoint_id, "we") else None
    return item if item is not None and store.mode_of(item) == livemode else None


def set_webhook_endpoint_disabled(merchant: Merchant, livemode: bool, endpoint_id: str, disabled: bool,
                                  completion: Completion | None = None, actor: str | None = None) -> dict:
    """Stop (or resume) deliveries to an endpoint; it keeps its secret and its place in the limit. For a
    person (`actor`) the audit entry is written in the change's transaction."""
    item = _own_endpoint(merchant, livemode, endpoint_id)
    if item is None:
        raise errors.not_found("webhook endpoint", "endpoint_id")
    item.enabled = not disabled
    body = endpoint_view(item)
    unit = Unit().set_webhook_endpoint_enabled(merchant.id, endpoint_id, not disabled, store.seal_legacy(item))
    if actor:
        unit.audit(merchant.id, actor, f"webhook_endpoint.{'disabled' if disabled else 'enabled'}",
                   {"endpoint": endpoint_id})
    if completion is not None:
        completion.attach(unit, 200, body)
    try:
        unit.commit()
    except Conflict:
        raise errors.not_found("webhook endpoint", "endpoint_id") from None
    return body


def delete_webhook_endpoint(merchant: Merchant, livemode: bool, endpoint_id: str) -> bool:
    """Delete an endpoint (events not yet sent to it are no longer sent there); frees its place."""
    if _own_endpoint(merchant, livemode, endpoint_id) is None:
        return False
    for _ in range(2):  # a second try when a concurrent change started the counter meanwhile
        try:
            Unit().remove_webhook_endpoint(merchant.id, endpoint_id, store.uncounted_endpoints(merchant.id)).commit()
            return True
        except Conflict:
            continue
    return False


def endpoint_view(e) -> dict:
    return {"id": e.endpoint_id, "object": "webhook_endpoint", "livemode": store.mode_of(e), "url": e.url,
            "enabled": bool(e.enabled)}


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
    from chalicelib.services import payments, qr_codes, staff

    merchant = create_merchant("Kauri Demo Cafe", "NZD", fee_bps=200, channels=DEMO_CHANNELS,
                               fx_markup_bps=150)
    key = issue_key(merchant.id, livemode=False)
    code = qr_codes.create(merchant, False, "Queenstown Mall")
    sample = payments.create(merchant, False, payments.NewPayment(
        amount=Money(1250, "NZD"), channel="", flow="", merchant_reference="demo-checkout",
        description="Flat white and a muffin", expires_in=timedelta(hours=24)))
    base = settings.get().public_base_url
    people = {}
    for role in ("owner", "cashier"):
        email, password = f"{role}@kauri-demo.test", "demo-" + secrets.token_urlsafe(9) + "a1"
        staff.seed_member(merchant.id, email, role, password)
        people[f"portal_{role}"] = {"email": email, "password": password}
    return {"merchant_id": merchant.id, "api_key": key, "static_qr_code": code.id,
            "static_qr_url": f"{base}/qr/{code.id}", "pay_url": payments.pay_url(sample.id),
            "portal_url": f"{base}/portal", **people}
