"""Money a channel took that Kauri does not credit: paid at a quote that lapsed.

A locked quote is honoured until it expires plus QUOTE_GRACE. Money that arrives later for it is not
credited at the old rate (Kauri would carry the FX move): it is booked to suspense with an ops record
and returned to the payer at once through a refund of that channel order; the payer's page offers a
fresh quote. Refunding, not re-pricing: the payer paid a CNY amount for an NZD invoice, and only a
full return leaves neither side short when the rate has moved (README, "Locked quotes").
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib import channels, ids, log
from chalicelib.channels.base import (
    ChannelError, ChannelPayment, MerchantChannelConfig, OrderRef, RefundRequest, RefundStatus,
)
from chalicelib.domain import ledger
from chalicelib.domain.fx import Quote
from chalicelib.domain.payment import Payment
from chalicelib.store import ops
from chalicelib.store.unit import Conflict, Unit

# Notifications and the chase (every 5 minutes, after a 2-minute grace) may bring news of a payment made
# inside the quote's 15 minutes some minutes later; PayEase sends no payment time, so arrival decides.
QUOTE_GRACE = timedelta(minutes=10)
KIND = "unapplied_receipt"
RETURNING, RETURNED, NEEDS_A_PERSON = "returning", "returned", "open"


def quote_lapsed(payment: Payment, paid_at: datetime) -> bool:
    """Was this money paid after the payment's locked quote (and its grace) ran out?"""
    if not payment.quote:
        return False
    return paid_at > Quote.from_dict(payment.quote).expires_at + QUOTE_GRACE


def record_id(payment: Payment, channel_order_id: str) -> str:
    return f"{KIND}:{payment.channel}:{channel_order_id}"


def hold_and_return(payment: Payment, cp: ChannelPayment, why: str) -> bool:
    """Book what the channel took to suspense (once per channel order) and send it back to the payer."""
    received = cp.amount or cp.payer_amount
    if received is None:
        ops.record_once(f"{KIND}_no_amount:{cp.channel_order_id}", "unapplied_receipt_no_amount", payment.channel,
                        payment.id, {"fields": cp.raw})
        return False
    rid = record_id(payment, cp.channel_order_id)
    refund_no = ids.new("ru")
    detail = {"why": why, "channel_order_id": cp.channel_order_id, "amount": received.amount,
              "currency": received.currency, "channel_transaction_id": cp.channel_transaction_id,
              "refund_no": refund_no, "fields": cp.raw}
    who = ledger.owner(payment.merchant_id, payment.livemode)
    posting = ledger.for_mode(ledger.unapplied_receipt(rid, who, payment.id, payment.channel, received),
                              payment.livemode)
    try:
        Unit().post(posting).put_new(ops.new_record(rid, KIND, payment.channel, payment.id, detail,
                                                    status=RETURNING)).commit()
    except Conflict:
        return True  # the same money again (a resent notification): booked and being returned already
    log.warning("unapplied_receipt", payment_id=payment.id, channel_order_id=cp.channel_order_id, why=why,
                amount=received.amount, currency=received.currency)
    _return(payment, rid, posting, RefundRequest(
        refund_id=refund_no, channel_refund_id=refund_no,
        payment=OrderRef(cp.channel_order_id, MerchantChannelConfig(dict(payment.channel_merchant)),
                         cp.channel_transaction_id),
        total=received, amount=received, reason="quote expired"))
    return True


def _return(payment: Payment, rid: str, posting: ledger.Posting, req: RefundRequest) -> None:
    """Refund the whole receipt at the channel; on its success, reverse the suspense posting."""
    channel = channels.get(payment.channel, payment.livemode)
    try:
        answer = channel.refund(req)
        if answer.status is RefundStatus.PROCESSING:
            answer = channel.refund_query(req)
    except ChannelError as exc:
        # Refused, or no answer (it may have reached the channel; PayEase refunds are not idempotent):
        # a person checks the channel's refund list before anything is sent again.
        Unit().move_ops_record(rid, RETURNING, NEEDS_A_PERSON, note=f"return failed: {exc.code}").commit()
        log.error("unapplied_return_failed", payment_id=payment.id, code=exc.code)
        return
    try:
        if answer.status is RefundStatus.SUCCEEDED:
            (Unit().post(posting.reversed(f"{rid}:returned", "unapplied_return"))
             .move_ops_record(rid, RETURNING, RETURNED, note=f"returned as {req.channel_refund_id}").commit())
            log.info("unapplied_returned", payment_id=payment.id, refund_no=req.channel_refund_id)
        elif answer.status is RefundStatus.FAILED:
            Unit().move_ops_record(rid, RETURNING, NEEDS_A_PERSON, note="the channel refused the return").commit()
            log.error("unapplied_return_refused", payment_id=payment.id)
    except Conflict:  # moved on meanwhile (by a person): theirs stands
        log.info("unapplied_return_record_moved", payment_id=payment.id)
    # else: accepted and still processing at the channel; the record stays `returning` for ops to confirm
