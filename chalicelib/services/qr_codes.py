"""Static QR codes: merchants manage them through the API; shoppers pay through them.

A payment started from a code goes through services.payments.create, like an API payment, tagged
with the code. Creation is throttled per code and per client so a script cannot flood a channel.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib import clock, ids, log
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.payment import Payment
from chalicelib.domain.qr_code import QrCode
from chalicelib.money import Money, MoneyError
from chalicelib.services import errors, payments
from chalicelib.store import merchants as merchant_store
from chalicelib.store import qr_codes as store
from chalicelib.store.unit import Conflict, Unit

CODE_PREFIX = "qr"
CODE_LENGTH = 24                    # 36^24 ~ 2^124: cannot be guessed or enumerated
STORE_NAME_MAX = 40
WALLETS = ("wechat", "alipay")
# (hits, window seconds): a busy shop counter takes a few payments a minute, never dozens.
PER_CODE_LIMIT = (20, 60)
PER_CLIENT_LIMIT = (6, 60)


@dataclass(frozen=True)
class Shop:
    """What a shopper's page needs about the code: the code and the merchant behind it."""
    code: QrCode
    merchant: Merchant


def view(c: QrCode, base_url: str) -> dict:
    return {"id": c.id, "object": "qr_code", "livemode": c.livemode, "status": c.status,
            "store_name": c.store_name, "currency": c.currency, "fixed_amount": c.fixed_amount,
            "max_amount": c.max_amount, "url": f"{base_url}/qr/{c.id}", "image_url": f"{base_url}/qr/{c.id}/image",
            "created": clock.iso(c.created_at), "disabled_at": clock.iso(c.disabled_at) if c.disabled_at else None,
            "replaced_by": c.replaced_by}


def create(merchant: Merchant, livemode: bool, store_name: str, fixed_amount: int | None = None,
           max_amount: int | None = None, actor: str | None = None) -> QrCode:
    """A new code; `actor` (a person in the portal): its audit entry is written in the same transaction."""
    code = _new_code(merchant, livemode, store_name, fixed_amount, max_amount)
    unit = Unit().put_new(store.to_item(code))
    if actor:
        unit.audit(merchant.id, actor, "code.created", {"code": code.id, "store": store_name})
    unit.commit()
    log.info("qr_code_created", code_id=code.id, merchant_id=merchant.id)
    return code


def _new_code(merchant: Merchant, livemode: bool, store_name: str, fixed_amount: int | None,
              max_amount: int | None) -> QrCode:
    if fixed_amount is not None and max_amount is not None and fixed_amount > max_amount:
        raise errors.invalid("parameter_invalid", "fixed_amount is above max_amount", "fixed_amount")
    if fixed_amount is not None:  # a printed fixed amount every enabled wallet must accept
        for channel in WALLETS:
            if merchant.channel_ids(channel) is not None:
                payments.check_limits(channel, Money(fixed_amount, merchant.settlement_currency))
    return QrCode(id=ids.new(CODE_PREFIX, CODE_LENGTH), merchant_id=merchant.id, livemode=livemode,
                  store_name=store_name, currency=merchant.settlement_currency, created_at=clock.now(),
                  fixed_amount=fixed_amount, max_amount=max_amount)


def list_for(merchant: Merchant, livemode: bool) -> list[QrCode]:
    return [c for c in store.for_merchant(merchant.id) if c.livemode == livemode]


def get_for(merchant: Merchant, livemode: bool, code_id: str) -> QrCode:
    c = store.get(code_id) if ids.looks_like(code_id, CODE_PREFIX) else None
    if c is None or c.merchant_id != merchant.id or c.livemode != livemode:
        raise errors.not_found("qr code", "id")
    return c


def disable(merchant: Merchant, livemode: bool, code_id: str, actor: str | None = None) -> QrCode:
    """Disable a code (once: an already disabled one is left as it is, and nothing is audited)."""
    c = get_for(merchant, livemode, code_id)
    if c.active:
        unit = store.disable(Unit(), c.id, clock.now())
        if actor:
            unit.audit(merchant.id, actor, "code.disabled", {"code": c.id})
        try:
            unit.commit()
            log.info("qr_code_disabled", code_id=c.id, merchant_id=merchant.id)
        except Conflict:
            pass  # disabled meanwhile by someone else (who audited it)
    return store.get(c.id)


def rotate(merchant: Merchant, livemode: bool, code_id: str, actor: str | None = None) -> QrCode:
    """Disable the code and issue a new one with the same store and limits (a leaked or damaged print):
    the new code, the old one's end and the audit entry are one transaction."""
    old = get_for(merchant, livemode, code_id)
    if not old.active:
        raise errors.conflict("qr_code_disabled", "a disabled code cannot be rotated; create a new one")
    fresh = _new_code(merchant, livemode, old.store_name, old.fixed_amount, old.max_amount)
    unit = store.disable(Unit().put_new(store.to_item(fresh)), old.id, clock.now(), replaced_by=fresh.id)
    if actor:
        unit.audit(merchant.id, actor, "code.rotated", {"code": old.id, "replaced_by": fresh.id})
    try:
        unit.commit()
    except Conflict:
        raise errors.conflict("qr_code_changed", "the code changed meanwhile; reload it") from None
    log.info("qr_code_rotated", code_id=old.id, replaced_by=fresh.id, merchant_id=merchant.id)
    return fresh


def shop(code_id: str) -> Shop:
    """The code a shopper scanned: not_found for an unknown one, conflict('qr_code_disabled') if disabled."""
    c = store.get(code_id) if ids.looks_like(code_id, CODE_PREFIX, max_len=CODE_LENGTH + 3) else None
    merchant = merchant_store.get(c.merchant_id) if c is not None else None
    if c is None or merchant is None:
        raise errors.not_found("qr code", "code")
    if not c.active or merchant.status != "active":
        raise errors.conflict("qr_code_disabled", "this code is no longer in use")
    return Shop(c, merchant)


def parse_amount(s: Shop, text: str | None) -> Money:
    """The shopper's amount, typed as decimal text, parsed exactly, checked against the code."""
    if s.code.fixed_amount is not None:
        return Money(s.code.fixed_amount, s.code.currency)
    try:
        amount = Money.from_major((text or "").strip()[:20], s.code.currency)
    except MoneyError:
        raise errors.invalid("amount_invalid", "type an amount like 12.50", "amount") from None
    problem = s.code.amount_problem(amount)
    if problem == "too_large":
        raise errors.invalid("amount_above_code_maximum", "the amount is above this code's limit", "amount")
    if problem is not None:
        raise errors.invalid("amount_invalid", "type an amount like 12.50", "amount")
    return amount


def _throttle(scope: str, subject: str, limit: tuple[int, int]) -> bool:
    hits, window = limit
    now = clock.epoch()
    start = now - now % window
    return store.hit(f"{scope}#{subject}#{start}", hits, start + 2 * window)


def start_payment(s: Shop, amount: Money, channel: str, flow: str, client_ip: str,
                  payer: dict[str, str] | None = None) -> Payment:
    """A payment for this code, created by the same service the API uses."""
    if not _throttle("qr_client", client_ip, PER_CLIENT_LIMIT) or not _throttle("qr_code", s.code.id,
                                                                                 PER_CODE_LIMIT):
        log.warning("qr_payment_throttled", code_id=s.code.id)
        raise errors.ServiceError("unavailable", "rate_limited", "too many payments started; wait a minute")
    req = payments.NewPayment(
        amount=amount, channel=channel, flow=flow, merchant_reference=s.code.id,
        description=f"{s.merchant.name} - {s.code.store_name}"[:127],
        metadata={"qr_code": s.code.id, "store_name": s.code.store_name},
        payer=dict(payer or {}), client_ip=client_ip, via_pages=True,
    )
    return payments.create(s.merchant, s.code.livemode, req)
