"""Channel callbacks: verify, then apply exactly once (status + ledger + outbox in one transaction)."""
from __future__ import annotations

import hashlib
import random
import time

from chalicelib import channels, clock, ids, log
from chalicelib.channels.base import Ack, ChannelPayment, ChannelRefund, ChannelStatus, InvalidNotification, Notification
from chalicelib.channels.base import RefundStatus as ChannelRefundStatus
from chalicelib.domain import ledger, views
from chalicelib.domain.payment import LATE_SUCCESS_FROM, Payment, PaymentStatus
from chalicelib.services import unapplied
from chalicelib.services.payments import payment_id_of
from chalicelib.store import ops
from chalicelib.store import payments as store
from chalicelib.store.unit import Conflict, Unit, new_event

MAX_ATTEMPTS = 6


def handle(channel_name: str, body: bytes, headers: dict[str, str]) -> Ack:
    """Everything a channel's POST to /callbacks/<channel> gets: verify, apply, acknowledge.

    Live and test mode may be different environments of the channel (own keys): the one whose
    credentials verify the callback says its mode, and it only ever moves payments of that mode."""
    note, livemode, channel, reason = verify(channel_name, body, headers)
    if note is None:
        from chalicelib import metrics

        log.warning("callback_rejected", channel=channel_name, reason=reason, bytes=len(body))
        metrics.emit("CallbackRejections", Channel=channel_name)
        return channel.ack(False, "invalid notification")
    ok = True
    for n in (note, *note.more):
        try:
            ok = apply_notification(channel_name, n, livemode) and ok
        except Exception as exc:  # never a 500: the channel's FAIL makes it resend, and we look at the log
            log.error("callback_apply_error", channel=channel_name, kind=n.kind, error=type(exc).__name__)
            ok = False
    return channel.ack(ok, "" if ok else "not applied")


def verify(channel_name: str, body: bytes, headers: dict[str, str]):
    """(notification, mode, channel, reason): the first environment whose credentials verify it; during
    a key rotation, also the previous key and a fresh read of the current one (channels.rotation_fallbacks)."""
    from chalicelib import secrets

    reason, channel = "", None
    for source in (channels.environments, channels.rotation_fallbacks):
        try:
            for livemode, channel in source(channel_name):
                try:
                    return channel.parse_notification(body, headers), livemode, channel, ""
                except InvalidNotification as exc:
                    reason = exc.reason
        except secrets.SecretUnavailable as exc:
            secrets.warn_unavailable(f"{channel_name} credentials", exc)
            reason = "credentials unavailable"
            break
    if channel is None:
        channel = channels.get(channel_name)
    return None, None, channel, reason


def apply_notification(channel_name: str, note: Notification, livemode: bool | None = None) -> bool:
    """`livemode`: the mode of the environment that verified it (None: live and test share it)."""
    if note.kind == "refund" and note.refund is not None:
        return apply_refund_notification(channel_name, note.refund, livemode)
    if note.kind != "payment" or note.payment is None:
        log.info("callback_ignored", channel=channel_name, kind=note.kind)
        return True
    cp = note.payment
    payment_id = payment_id_of(cp.channel_order_id)
    payment = store.get(payment_id) if payment_id else None
    if payment is not None:
        log.bind(merchant_id=payment.merchant_id, payment_id=payment.id)
    if payment is None or payment.channel != channel_name or livemode not in (None, payment.livemode):
        log.warning("callback_unknown_order", channel=channel_name, channel_order_id=cp.channel_order_id[:64])
        return False
    if cp.channel_order_id != payment.channel_order_id:
        # Money for an order this payment replaced (its quote expired): never applied at the new
        # quote's amount, nor at the lapsed one: booked to suspense and returned to the payer.
        if cp.status in (ChannelStatus.PAID, ChannelStatus.REFUNDED):
            return unapplied.hold_and_return(payment, cp, "superseded_quote")
        return True
    problem = mismatch(payment, cp)
    if problem:
        log.warning("callback_mismatch", channel=channel_name, payment_id=payment.id, problem=problem)
        _record_once(f"mismatch:{payment.id}:{_digest(cp)}", "callback_mismatch", channel_name, payment.id,
                     {"problem": problem, "fields": cp.raw})
        return False
    return apply_channel_payment(payment, cp, source="callback")


def apply_refund_notification(channel_name: str, cr: ChannelRefund, livemode: bool | None = None) -> bool:
    """A channel's verdict on a refund: applied once, like a refund query's answer, if it is one of ours.

    True (acknowledge) once the verdict is applied or was already; False (the channel resends) for a
    refund we do not know or whose ids/amounts are not ours."""
    from chalicelib.domain.refund import RefundStatus
    from chalicelib.services import refunds

    found = store.get_refund(cr.channel_refund_id) if ids.looks_like(cr.channel_refund_id, "re") else None
    payment = store.get(found[0].payment_id) if found else None
    if found is None or payment is None or payment.channel != channel_name or \
            livemode not in (None, payment.livemode):
        log.warning("refund_notify_unknown", channel=channel_name, channel_refund_id=cr.channel_refund_id[:64])
        return False
    refund = found[0]
    problem = refund_mismatch(payment, refund, cr)
    if problem:
        log.warning("refund_notify_mismatch", refund_id=refund.id, problem=problem)
        _record_once(f"refund_mismatch:{refund.id}:{cr.status.value}", "refund_notify_mismatch", channel_name,
                     refund.id, {"problem": problem, "fields": cr.raw})
        return False
    if refund.status is RefundStatus.PROCESSING:
        if cr.status is ChannelRefundStatus.SUCCEEDED:
            refund = refunds.succeed(refund, cr.channel_refund_ref)
        elif cr.status is ChannelRefundStatus.FAILED:
            refund = refunds.fail(payment, refund, refunds.posting_of(refund), "channel_refund_failed")
        elif cr.status is ChannelRefundStatus.ABNORMAL:
            refunds.abnormal(payment, refund, cr.raw)   # understood; it stays processing until routed
            return True
        else:
            return False  # not a verdict yet: let the channel tell us again
    if refund.status.value != cr.status.value:
        # We settled it the other way (e.g. failed it and returned the money): a person must look.
        _record_once(f"refund_verdict_conflict:{refund.id}", "refund_verdict_conflict", channel_name, refund.id,
                     {"ours": refund.status.value, "channel": cr.status.value, "fields": cr.raw})
        log.error("refund_verdict_conflict", refund_id=refund.id, ours=refund.status.value, channel=cr.status.value)
    return True


def refund_mismatch(payment: Payment, refund, cr: ChannelRefund) -> str | None:
    """Why a decrypted refund notification does not belong to this refund (order, amounts)."""
    if cr.channel_order_id is not None and cr.channel_order_id != payment.channel_order_id:
        return "order id does not match the refund's payment"
    asked = refund.channel_amount or refund.amount
    if cr.refund_minor is not None and cr.refund_minor != asked.amount:
        return f"refund amount {cr.refund_minor} != {asked.amount}"
    total = payment.channel_amount or payment.amount
    if cr.order_total_minor is not None and cr.order_total_minor != total.amount:
        return f"order total {cr.order_total_minor} != {total.amount}"
    if payment.channel_transaction_id and cr.channel_transaction_id not in (None, payment.channel_transaction_id):
        return "transaction id does not match the refund's payment"
    return None


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
            elif target is PaymentStatus.SUCCEEDED and _refund_after_close_owed(payment):
                _refund_closed_payment(payment)  # the run that applied it died before the refund: the resend does it
            return True  # a duplicate: already applied
        if target is PaymentStatus.SUCCEEDED and \
                unapplied.quote_lapsed(payment, cp.paid_at or clock.now()):
            done = unapplied.hold_and_return(payment, cp, "quote_expired")  # never credited at a lapsed rate
            if done and payment.status is PaymentStatus.PENDING and clock.now() >= payment.expires_at:
                # Its order is paid (and returned), and the payment is past its life: nobody can pay it now.
                from chalicelib.services import payments

                payments.mark_closed(payment, reason="expired")
            return done
        try:
            if payment.status is not PaymentStatus.PENDING:
                if target is PaymentStatus.SUCCEEDED and payment.status in LATE_SUCCESS_FROM:
                    _commit_late_success(payment, cp, source)
                return True
            if target is PaymentStatus.FAILED and still_payable(payment):
                _note_failed_attempt(payment, cp)
                return True
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


def still_payable(payment: Payment) -> bool:
    """Can the shopper still pay this channel order after a failed attempt? (WeChat: yes, until it expires;
    a PayEase bank order that failed is finished.)"""
    try:
        channel = channels.get(payment.channel, payment.livemode)
    except channels.NoTestEnvironment:
        return False
    return bool(getattr(channel, "payable_after_failed_attempt", False)) and clock.now() < payment.expires_at


def _note_failed_attempt(payment: Payment, cp: ChannelPayment) -> None:
    code = _failure_code(cp)
    if payment.failure_code == code:
        return  # the same news again
    Unit().note_failed_attempt(payment, code).commit()
    log.info("payment_attempt_failed", payment_id=payment.id, failure_code=code)


def _failure_code(cp: ChannelPayment) -> str:
    return (cp.raw.get("err_code") or "channel_failed")[:64]


def _commit_late_success(payment: Payment, cp: ChannelPayment, source: str) -> None:
    """The rule for money a channel took for a payment Kauri had already ended (closed or failed):
    it is applied, never parked. The payment succeeds and the merchant is credited as for any payment
    (a payment only Kauri's clock ended was still payable at the channel, so it was paid). If the merchant
    had closed it, it is then refunded in full to the payer, since the merchant no longer sells it."""
    new = payment.late_success(channel_transaction_id=cp.channel_transaction_id, payer_amount=cp.payer_amount,
                               rate=cp.rate, paid_at=cp.paid_at or clock.now())
    unit = _credit(Unit().move_payment(new, payment.status), payment, new)
    unit.emit(new_event(payment.merchant_id, "payment.succeeded", views.payment(new)))
    unit.commit()
    log.warning("payment_succeeded_after_end", payment_id=payment.id, was=payment.status.value,
                closed_by=payment.closed_by, source=source)
    from chalicelib import metrics

    metrics.emit("Payments", Channel=payment.channel, Outcome="succeeded_late")
    if payment.closed_by == "merchant":
        _refund_closed_payment(new)


def _late_refund_record_id(payment: Payment) -> str:
    return f"late_refund:{payment.id}"


def _refund_after_close_owed(payment: Payment) -> bool:
    """A payment the merchant closed, applied after all, whose refund in full was never asked for (the run
    that applied it died first) nor given up on (an ops record): consistent reads only."""
    return payment.closed_by == "merchant" and payment.refunded == 0 and \
        ops.get(_late_refund_record_id(payment)) is None


def _refund_closed_payment(payment: Payment) -> None:
    from chalicelib.domain.refund import RefundStatus
    from chalicelib.services import errors, refunds
    from chalicelib.store import merchants as merchant_store

    merchant = merchant_store.get(payment.merchant_id)
    try:
        refund = refunds.create(merchant, payment.livemode, payment.id, payment.amount.amount,
                                "paid after the merchant closed it")
    except errors.ServiceError as exc:
        if exc.code == "amount_exceeds_refundable":
            return  # a concurrent resend reserved the same refund first
        refund, error = None, exc.code
    except Exception as exc:  # the payment stands; a person refunds it
        refund, error = None, type(exc).__name__
    if refund is not None and refund.status is not RefundStatus.FAILED:
        return
    if refund is not None:
        error = f"refund {refund.id} failed: {refund.failure_code}"
    # The merchant holds money for a payment it closed and the payer has not had it back: a person acts.
    _record_once(_late_refund_record_id(payment), "refund_after_close_failed", payment.channel, payment.id,
                 {"error": error})
    log.error("refund_after_close_failed", payment_id=payment.id, error=error)


def _commit_transition(payment: Payment, target: PaymentStatus, cp: ChannelPayment) -> None:
    now = clock.now()
    if target is PaymentStatus.SUCCEEDED:
        new = payment.transition(target, channel_transaction_id=cp.channel_transaction_id,
                                 payer_amount=cp.payer_amount, rate=cp.rate, paid_at=cp.paid_at or now)
    elif target is PaymentStatus.FAILED:
        new = payment.transition(target, failure_code=_failure_code(cp))
    else:
        new = payment.ended("channel", now)
    unit = Unit().move_payment(new, PaymentStatus.PENDING)
    if target is PaymentStatus.SUCCEEDED:
        _credit(unit, payment, new)
    unit.emit(new_event(payment.merchant_id, f"payment.{new.status.value}", views.payment(new)))
    unit.commit()
    from chalicelib import metrics

    metrics.emit("Payments", Channel=payment.channel, Outcome=new.status.value)


def _credit(unit: Unit, payment: Payment, new: Payment) -> Unit:
    """The success posting, and the staff WeChat alerts riding in the same transaction."""
    from chalicelib.services import alerts

    unit.post(success_posting(payment))
    for alert in alerts.outbox_items(new):
        unit.put_new(alert)
    return unit


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
