"""Refunds: reserve the amount and post the reversal first, then ask the channel, then settle."""
from __future__ import annotations

import random
import time
from dataclasses import replace
from decimal import ROUND_FLOOR, Decimal

from chalicelib import channels, clock, ids, log, settings
from chalicelib.channels.base import ChannelError, MerchantChannelConfig, OrderRef, RefundRequest
from chalicelib.channels.base import RefundStatus as ChannelRefundStatus
from chalicelib.domain import ledger, views
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.payment import Payment
from chalicelib.domain.refund import Refund, RefundNotAllowed, RefundStatus, check_refund
from chalicelib.money import Money
from chalicelib.services import errors, payments
from chalicelib.store import balances
from chalicelib.store import ledger as ledger_store
from chalicelib.store import payments as store
from chalicelib.store.unit import Conflict, Unit, new_event
from chalicelib.services.idempotency import Completion


def share_of(part_of: int, total: int, refunded_after: int, returned: int) -> int:
    """`part_of`'s share of a refund that brings the running total to `refunded_after`: its target for that
    total (ROUND_FLOOR) less what live refunds have already returned. Failed refunds leave `returned`, so
    the shares always add up to exactly `part_of` when everything is refunded, never more."""
    target = int((Decimal(part_of) * refunded_after / total).to_integral_value(rounding=ROUND_FLOOR))
    return max(0, target - returned)


def fee_share(payment: Payment, amount: int) -> int:
    """Our fee returned with a refund, pro rata (the channels return their fee on refunds too)."""
    return share_of(payment.fee.amount, payment.amount.amount, payment.refunded + amount, payment.fee_returned)


def channel_share(payment: Payment, amount: int) -> int:
    """What the channel is asked to return of what it charged (CNY on a quoted payment)."""
    return share_of(payment.channel_amount.amount, payment.amount.amount, payment.refunded + amount,
                    payment.channel_returned)


def plan_draw(merchant: Merchant, p: Payment, net: int) -> tuple[dict[str, int], int]:
    """Take a refund from the available balance first, then pending (one round trip to read both).

    Also what of the pending part is borrowed: taken from other payments' unreleased money. That is all
    of it once this payment is released, and whatever exceeds the payment's own unreleased net before."""
    currency = p.amount.currency
    who = ledger.owner(merchant.id, p.livemode)
    acc_av = ledger.merchant_account(who, currency, "available")
    acc_pe = ledger.merchant_account(who, currency, "pending")
    bal = balances.get_many([acc_av, acc_pe])
    from_available = max(0, min(net, bal[acc_av]))
    from_pending = net - from_available
    if not merchant.allow_negative_balance and from_pending > max(0, bal[acc_pe]):
        raise errors.ServiceError("unprocessable", "insufficient_balance",
                                  "the merchant's balance cannot cover this refund", "amount")
    own_left = p.own_pending
    return {"available": from_available, "pending": from_pending}, max(0, from_pending - own_left)


def refund_posting(posting_id: str, p: Payment, refund_id: str, amount: int, fee_back: int,
                   draw: dict[str, int], channel_amount: Money | None) -> ledger.Posting:
    cur = p.amount.currency
    who = ledger.owner(p.merchant_id, p.livemode)
    legs = [ledger.Leg(ledger.merchant_account(who, cur, bucket), part, cur)
            for bucket, part in draw.items() if part]
    if fee_back:
        legs.append(ledger.Leg(ledger.fee_account(cur), fee_back, cur))
    if channel_amount is None:
        legs.append(ledger.Leg(ledger.receivable_account(p.channel, cur), -amount, cur))
    else:  # returned in the channel's currency at the payment's locked rate, through the FX account
        ccy = channel_amount.currency
        legs += [ledger.Leg(ledger.fx_account(cur), -amount, cur),
                 ledger.Leg(ledger.fx_account(ccy), channel_amount.amount, ccy),
                 ledger.Leg(ledger.receivable_account(p.channel, ccy), -channel_amount.amount, ccy)]
    return ledger.for_mode(ledger.Posting(posting_id, "refund", tuple(legs), refund_id, who), p.livemode)


RESERVE_ATTEMPTS = 5


def create(merchant: Merchant, livemode: bool, payment_id: str, amount: int, reason: str,
           completion: Completion | None = None) -> Refund:
    """Reserve the amount and post the reversal (one transaction, with the idempotent reply), then ask
    the channel. Whatever happens after the reservation, a retry with the same key replays it."""
    for attempt in range(RESERVE_ATTEMPTS):
        p = payments.get_for(merchant, livemode, payment_id)
        try:
            refund, draw, posting, unit = _reservation(merchant, p, amount, reason)
        except errors.ServiceError as exc:
            # Balances read after another refund of this payment committed, the payment before it:
            # price it again on one consistent view rather than refuse.
            if exc.code == "insufficient_balance" and payments.get_for(merchant, livemode, payment_id).refunded != p.refunded:
                continue
            raise
        if completion is not None:
            completion.attach(unit, 201, views.refund(refund))
        try:
            unit.commit()
            break
        except Conflict as exc:  # another refund or a balance move got in first: price it again
            log.info("refund_reservation_conflict", payment_id=p.id, reasons=exc.reasons, attempt=attempt)
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    else:
        raise errors.ServiceError("unavailable", "busy", "the payment is changing; try again in a moment")
    log.info("refund_reserved", refund_id=refund.id, payment_id=p.id, amount=amount)
    refund = _ask_channel(p, refund, posting)
    if completion is not None and refund.status is not RefundStatus.PROCESSING:
        completion.refresh(201, views.refund(refund))
    return refund


def _reservation(merchant: Merchant, p: Payment, amount: int, reason: str):
    money = Money(amount, p.amount.currency)
    try:
        check_refund(p, money)
    except RefundNotAllowed as exc:
        kind = "conflict" if exc.code == "payment_not_succeeded" else "invalid"
        raise errors.ServiceError(kind, exc.code, exc.message, "amount") from None
    fee_back = fee_share(p, amount)
    draw, borrowed = plan_draw(merchant, p, amount - fee_back)
    who = ledger.owner(merchant.id, p.livemode)
    floors = {} if merchant.allow_negative_balance else {
        ledger.merchant_account(who, p.amount.currency, b): 0 for b in draw}
    channel_amount = None
    if p.channel_amount is not None and p.channel_amount.currency != p.amount.currency:
        channel_amount = Money(channel_share(p, amount), p.channel_amount.currency)
        if channel_amount.amount <= 0:
            raise errors.ServiceError("invalid", "amount_too_small",
                                      f"a refund this small returns no {channel_amount.currency} to the payer",
                                      "amount")
    refund_id = ids.new("re")
    refund = Refund(id=refund_id, payment_id=p.id, merchant_id=merchant.id, amount=money, reason=reason,
                    status=RefundStatus.PROCESSING, channel_refund_id=refund_id, created_at=clock.now(),
                    channel_amount=channel_amount, draw=draw, borrowed=borrowed, livemode=p.livemode,
                    channel=p.channel)
    posting = refund_posting(f"refund:{refund.id}", p, refund.id, amount, fee_back, draw, channel_amount)
    pending_account = ledger.merchant_account(who, p.amount.currency, "pending")
    unit = (Unit().reserve_refund(p, amount, fee_back, channel_amount.amount if channel_amount else 0,
                                  draw["pending"] - borrowed)
            .save_refund(store.refund_to_item(refund), new=True)
            .post(posting, floors=floors, borrowed={pending_account: (None, borrowed)} if borrowed else None))
    return refund, draw, posting, unit


def posting_of(refund: Refund) -> ledger.Posting:
    """The posting written when the refund was reserved (for reversing it)."""
    return ledger_store.get(f"refund:{refund.id}")


def channel_request(p: Payment, refund: Refund) -> RefundRequest:
    return RefundRequest(
        refund_id=refund.id, channel_refund_id=refund.channel_refund_id,
        payment=OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)),
                         p.channel_transaction_id),
        total=p.channel_amount or p.amount, amount=refund.channel_amount or refund.amount, reason=refund.reason,
        notify_url=f"{settings.get().public_base_url}/callbacks/{p.channel}")


def _ask_channel(p: Payment, refund: Refund, posting: ledger.Posting) -> Refund:
    channel = channels.get(p.channel, p.livemode)
    req = channel_request(p, refund)
    try:
        answer = channel.refund(req)
    except ChannelError as exc:
        if not exc.refused:
            # No answer, or none we can read or trust (timeout, reset, 404, garbage): it may have reached
            # the channel. It stays processing and the channel's own word, asked by the chase job, decides.
            log.warning("refund_outcome_unknown", refund_id=refund.id, code=exc.code)
            return refund
        return fail(p, refund, posting, exc.code)  # the channel clearly refused it
    if answer.status is ChannelRefundStatus.PROCESSING:
        try:
            answer = channel.refund_query(req)
        except ChannelError as exc:
            # Accepted by the channel: only its explicit verdict may fail it now; the chase job asks later.
            log.info("refund_query_deferred", refund_id=refund.id, code=exc.code)
            return refund
    if answer.status is ChannelRefundStatus.SUCCEEDED:
        return succeed(refund, answer.channel_refund_ref)
    if answer.status is ChannelRefundStatus.FAILED:
        return fail(p, refund, posting, "channel_refund_failed")
    if answer.status is ChannelRefundStatus.ABNORMAL:
        abnormal(p, refund, answer.raw)
    return refund


def succeed(refund: Refund, channel_ref: str | None) -> Refund:
    done = replace(refund, status=RefundStatus.SUCCEEDED, channel_refund_ref=channel_ref)
    item = store.refund_to_item(done)
    try:
        (Unit().save_refund(item, new=False, from_status=RefundStatus.PROCESSING.value)
         .emit(new_event(refund.merchant_id, "refund.succeeded", views.refund(done))).commit())
    except Conflict:
        return store.get_refund(refund.id)[0]
    log.info("refund_succeeded", refund_id=refund.id)
    return done


def fail(p: Payment, refund: Refund, posting: ledger.Posting, code: str) -> Refund:
    """The channel refused: give the amount back to the payment and reverse the posting, once.

    Each part of the draw goes back where it came from, decided on consistent reads inside the reversal's
    transaction: available to available; the payment's own pending money to pending while the payment
    is unreleased, to available once released (its release left that part out); money borrowed from
    other payments' pending to pending as far as no release has absorbed it yet (services.balances)."""
    from chalicelib.store import balances as balance_store

    failed = replace(refund, status=RefundStatus.FAILED, failure_code=code)
    item = store.refund_to_item(failed)
    currency = refund.amount.currency
    who = ledger.owner(refund.merchant_id, p.livemode)
    pending_account = ledger.merchant_account(who, currency, "pending")
    fee_back = sum(leg.amount for leg in posting.legs if leg.account.startswith("P:fee_revenue:"))
    from_available = int(refund.draw.get("available", 0))
    from_pending = int(refund.draw.get("pending", 0))
    borrowed = min(refund.borrowed, from_pending)
    own = from_pending - borrowed
    for attempt in range(RESERVE_ATTEMPTS):
        now = store.get(p.id)
        outstanding = balance_store.borrowed(pending_account) if borrowed else 0
        back_to_pending = min(borrowed, outstanding) + (0 if now.released else own)
        back = {"available": from_available + from_pending - back_to_pending, "pending": back_to_pending}
        reversal = ledger.with_merchant_legs(
            posting.reversed(f"refund_reversal:{refund.id}", "refund_reversal", memo=code),
            [ledger.Leg(ledger.merchant_account(who, currency, bucket), -part, currency)
             for bucket, part in back.items() if part])
        try:
            (Unit().save_refund(item, new=False, from_status=RefundStatus.PROCESSING.value)
             .unreserve_refund(p.id, refund.amount.amount, fee_back,
                               refund.channel_amount.amount if refund.channel_amount else 0, own, now.released)
             .post(reversal, borrowed={pending_account: (outstanding, -min(borrowed, outstanding))}
                   if borrowed else None)
             .emit(new_event(refund.merchant_id, "refund.failed", views.refund(failed))).commit())
        except Conflict:
            current = store.get_refund(refund.id)[0]
            if current.status is not RefundStatus.PROCESSING:
                return current  # settled by someone else
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # released or re-borrowed meanwhile: plan again
            continue
        log.warning("refund_failed", refund_id=refund.id, code=code, released=now.released, back=back)
        return failed
    raise errors.ServiceError("unavailable", "busy", "the refund is changing; try again in a moment")


def abnormal(p: Payment, refund: Refund, raw: dict) -> None:
    """The channel paid the refund out but the payer's account did not take it (WeChat CHANGE): the money
    has left the channel, so it is no refusal and nothing goes back to the merchant. The refund stays
    processing (the channel's later word, once a person routed it, settles it) and ops get a record, once."""
    from chalicelib.store import ops

    if ops.record_once(f"refund_abnormal:{refund.id}", "refund_abnormal", p.channel, refund.id,
                       {"payment_id": p.id, "fields": raw}):
        log.error("refund_abnormal", refund_id=refund.id, payment_id=p.id)


def get_for(merchant: Merchant, livemode: bool, payment_id: str, refund_id: str) -> Refund:
    payments.get_for(merchant, livemode, payment_id)
    found = store.get_refund(refund_id) if ids.looks_like(refund_id, "re") else None
    if found is None or found[0].payment_id != payment_id:
        raise errors.not_found("refund", "refund_id")
    return found[0]


def list_for(merchant: Merchant, livemode: bool, payment_id: str) -> list[Refund]:
    payments.get_for(merchant, livemode, payment_id)
    return store.refunds_of(payment_id)
