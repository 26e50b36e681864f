"""Channel callbacks: verify, then apply exactly once (status + ledger + outbox in one transaction)."""
from __future__ import annotations

import hashlib
import random
import time

from chalicelib import channels, clock, log
from chalicelib.channels.base import Ack, ChannelPayment, ChannelStatus, InvalidNotification, Notification
from chalicelib.domain import ledger, views
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.services.payments import payment_id_of
from chalicelib.store import ops
from chalicelib.store import payments as store
from chalicelib.store.unit import Conflict, Unit, new_event

MAX_ATTEMPTS = 6


def handle(channel_name: str, body: bytes, headers: dict[str, str]) -> Ack:
    """Everything a channel's POST to /callbacks/<channel> gets: verify, apply, acknowledge."""
    channel = channels.get(channel_name)
    try:
        note = channel.parse_notification(body, headers)
    except InvalidNotification as exc:
        log.warning("callback_rejected", channel=channel_name, reason=exc.reason, bytes=len(body))
        return channel.ack(False, "invalid notification")
    ok = True
    for n in (note, *note.more):
        ok = apply_notification(channel_name, n) and ok
    return channel.ack(ok, "" if ok else "not applied")


def apply_notification(channel_name: str, note: Notification) -> bool:
    if note.kind != "payment" or note.payment is None:
        log.info("callback_ignored", channel=channel_name, kind=note.kind)
        return True
    cp = note.payment
    payment_id = payment_id_of(cp.channel_order_id)
    payment = store.get(payment_id) if payment_id else None
    if payment is None or payment.channel != channel_name:
        log.warning("callback_unknown_order", channel=channel_name, channel_order_id=cp.channel_order_id[:64])
        return False
    if cp.channel_order_id != payment.channel_order_id:
        # Money for an order this payment replaced (its quote expired): never applied at the new
        # quote's amount. Recorded for ops (refund or manual match) and acknowledged, so the
        # channel stops resending what we already hold.
        if cp.status in (ChannelStatus.PAID, ChannelStatus.REFUNDED):
            _record_once(f"superseded:{cp.channel_order_id}", "superseded_order_paid", channel_name, payment.id,
                         {"channel_order_id": cp.channel_order_id, "fields": cp.raw})
            log.warning("superseded_order_paid", payment_id=payment.id, channel_order_id=cp.channel_order_id)
        return True
    problem = mismatch(payment, cp)
    if problem:
        log.warning("callback_mismatch", channel=channel_name, payment_id=payment.id, problem=problem)
        _record_once(f"mismatch:{payment.id}:{_digest(cp)}", "callback_mismatch", channel_name, payment.id,
                     {"problem": problem, "fields": cp.raw})
        return False
    return apply_channel_payment(payment, cp, source="callback")


def mismatch(payment: Payment, cp: ChannelPayment) -> str | None:
    """Why a verified notification still does not belong to this payment (ids, amount, currency)."""
    expected = payment.channel_amount or payment.amount
    if cp.channel_order_id != payment.channel_order_id:
        return "an earlier channel order of this payment (its quote was replaced)"
    if cp.amount is None:
        return "amount missing"
    if cp.amount.currency != expected.currency:
        return f"currency {cp.amount.currency} != {expected.currency}"
    if cp.amount.amount != expected.amount:
        return f"amount {cp.amount.amount} != {expected.amount}"
    if cp.merchant_channel_id and cp.merchant_channel_id not in payment.channel_merchant.values():
        return "merchant id at channel does not match"
    return None


def _target(status: ChannelStatus) -> PaymentStatus | None:
    if status in (ChannelStatus.PAID, ChannelStatus.REFUNDED):
        return PaymentStatus.SUCCEEDED
    if status is ChannelStatus.FAILED:
        return PaymentStatus.FAILED
    if status is ChannelStatus.CLOSED:
        return PaymentStatus.CLOSED
    return None


def apply_channel_payment(payment: Payment, cp: ChannelPayment, source: str) -> bool:
    """Bring our payment in line with what the channel says, exactly once. True when settled."""
    target = _target(cp.status)
    if target is None:
        return True  # still pending at the channel: nothing to do
    for attempt in range(MAX_ATTEMPTS):
        if payment.status is target:
            if target is PaymentStatus.SUCCEEDED and cp.channel_transaction_id and \
                    payment.channel_transaction_id not in (None, cp.channel_transaction_id):
                _record_once(f"second_txn:{payment.id}:{cp.channel_transaction_id}", "second_transaction",
                             payment.channel, payment.id, {"fields": cp.raw})
            return True  # a duplicate: already applied
        if payment.status is not PaymentStatus.PENDING:
            if target is PaymentStatus.SUCCEEDED:
                # Money arrived for a payment we closed or failed: never applied backwards; ops decides.
                _record_once(f"late_success:{payment.id}:{cp.channel_transaction_id}", "late_success_callback",
                             payment.channel, payment.id, {"status": payment.status.value, "source": source,
                                                           "fields": cp.raw})
                log.warning("late_success_callback", payment_id=payment.id, status=payment.status.value)
            return True
        try:
            _commit_transition(payment, target, cp)
            log.info("payment_" + target.value, payment_id=payment.id, source=source)
            return True
        except Conflict as exc:
            log.info("payment_transition_conflict", payment_id=payment.id, reasons=exc.reasons, attempt=attempt)
            if any(r == "TransactionConflict" for r in exc.reasons):
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            payment = store.get(payment.id)
            if payment.status is PaymentStatus.PENDING and mismatch(payment, cp):
                # Changed under us (a re-quote replaced the order): what we verified no longer applies.
                log.warning("payment_changed_before_transition", payment_id=payment.id)
                return False
    log.error("payment_transition_gave_up", payment_id=payment.id)
    return False


def _commit_transition(payment: Payment, target: PaymentStatus, cp: ChannelPayment) -> None:
    now = clock.now()
    if target is PaymentStatus.SUCCEEDED:
        new = payment.transition(target, channel_transaction_id=cp.channel_transaction_id,
                                 payer_amount=cp.payer_amount, rate=cp.rate, paid_at=cp.paid_at or now)
    elif target is PaymentStatus.FAILED:
        new = payment.transition(target, failure_code=cp.raw.get("err_code") or "channel_failed")
    else:
        new = payment.transition(target, closed_at=now)
    unit = Unit().move_payment(new, PaymentStatus.PENDING)
    if target is PaymentStatus.SUCCEEDED:
        unit.post(success_posting(payment))
        from chalicelib.services import alerts  # staff WeChat alerts ride in this transaction

        for alert in alerts.outbox_items(new):
            unit.put_new(alert)
    unit.emit(new_event(payment.merchant_id, f"payment.{target.value}", views.payment(new)))
    unit.commit()


def success_posting(payment: Payment) -> ledger.Posting:
    posting_id = f"payment:{payment.id}"
    who = ledger.owner(payment.merchant_id, payment.livemode)
    if payment.channel_amount is not None and payment.channel_amount.currency != payment.amount.currency:
        posting = ledger.quoted_payment_succeeded(posting_id, who, payment.id, payment.channel,
                                                  payment.amount, payment.channel_amount, payment.fee)
    else:
        posting = ledger.payment_succeeded(posting_id, who, payment.id, payment.channel, payment.amount, payment.fee)
    return ledger.for_mode(posting, payment.livemode)


def _digest(cp: ChannelPayment) -> str:
    return hashlib.sha256(repr(sorted(cp.raw.items())).encode()).hexdigest()[:16]


def _record_once(record_id: str, kind: str, channel: str, ref: str | None, detail: dict) -> None:
    """An ops record keyed by what happened, so repeats of the same callback make one record."""
    ops.record_once(record_id, kind, channel, ref, detail)
