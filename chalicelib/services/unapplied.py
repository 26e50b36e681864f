"""Money a channel took that Kauri does not credit: paid at a quote that lapsed.

A locked quote is honoured until it expires plus QUOTE_GRACE. Money that arrives later for it is not
credited at the old rate (Kauri would carry the FX move): it is booked to suspense with an ops record
and returned to the payer at once through a refund of that channel order; the payer's page offers a
fresh quote. Refunding, not re-pricing: the payer paid a CNY amount for an NZD invoice, and only a
full return leaves neither side short when the rate has moved (README, "Locked quotes").
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib import channels, clock, ids, log
from chalicelib.channels.base import (
    ChannelError, ChannelPayment, MerchantChannelConfig, OrderRef, RefundRequest, RefundStatus,
)
from chalicelib.domain import ledger
from chalicelib.domain.fx import Quote
from chalicelib.domain.payment import Payment
from chalicelib.money import Money
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
    detail = {"why": why, "channel_order_id": cp.channel_order_id, "amount": received.amount,
              "currency": received.currency, "channel_transaction_id": cp.channel_transaction_id,
              "refund_no": ids.new("ru"), "fields": cp.raw}
    posting, req = _booking(payment, rid, detail)
    try:  # `awaiting`: should this run die before the return is settled, finish_returns takes it up
        Unit().post(posting).put_new(ops.new_record(rid, KIND, payment.channel, payment.id, detail,
                                                    status=RETURNING, awaiting=True)).commit()
    except Conflict:
        return True  # the same money again (a resent notification): booked and being returned already
    log.warning("unapplied_receipt", payment_id=payment.id, channel_order_id=cp.channel_order_id, why=why,
                amount=received.amount, currency=received.currency)
    _return(payment, rid, posting, req)
    return True


def _booking(payment: Payment, rid: str, detail: dict) -> tuple[ledger.Posting, RefundRequest]:
    """The suspense posting of a receipt and the refund that returns all of it, from its record's detail."""
    received = Money(detail["amount"], detail["currency"])
    who = ledger.owner(payment.merchant_id, payment.livemode)
    posting = ledger.for_mode(ledger.unapplied_receipt(rid, who, payment.id, payment.channel, received),
                              payment.livemode)
    refund_no = detail["refund_no"]
    return posting, RefundRequest(
        refund_id=refund_no, channel_refund_id=refund_no,
        payment=OrderRef(detail["channel_order_id"], MerchantChannelConfig(dict(payment.channel_merchant)),
                         detail.get("channel_transaction_id")),
        total=received, amount=received, reason="quote expired")


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
    _settle(payment, rid, posting, req, answer.status)
    # still processing at the channel: the record stays `returning`; finish_returns books the outcome


def _settle(payment: Payment, rid: str, posting: ledger.Posting, req: RefundRequest, status: RefundStatus) -> bool:
    """Book what the channel did with the return, if it decided (True)."""
    try:
        if status is RefundStatus.SUCCEEDED:
            (Unit().post(posting.reversed(f"{rid}:returned", "unapplied_return"))
             .move_ops_record(rid, RETURNING, RETURNED, note=f"returned as {req.channel_refund_id}").commit())
            log.info("unapplied_returned", payment_id=payment.id, refund_no=req.channel_refund_id)
            return True
        if status is RefundStatus.FAILED:
            Unit().move_ops_record(rid, RETURNING, NEEDS_A_PERSON, note="the channel refused the return").commit()
            log.error("unapplied_return_refused", payment_id=payment.id)
            return True
    except Conflict:  # moved on meanwhile (by a person): theirs stands
        log.info("unapplied_return_record_moved", payment_id=payment.id)
    return False


# A run books the receipt and asks for the return within seconds; a record still `returning` after this was
# left by a run that died, or waits on the channel. After STUCK_AFTER (as for refunds: services.chase) a
# person takes it, with an ops alert: the money stays in suspense, neither credited nor lost.
RESUME_AFTER = timedelta(minutes=5)
STUCK_AFTER = timedelta(hours=24)


def finish_returns(dry_run: bool = False, merchant_id: str | None = None, limit: int = 200) -> dict:
    """Receipts still `returning`: the channel's refund list decides. Returned: the reversal is booked;
    refused: a person. Not listed (the run died before asking, or the list lags) or still processing: they
    wait, never sent again blindly (PayEase takes no refund number: a second submit is a second refund);
    past STUCK_AFTER the record goes to a person with an `unapplied_return_stuck` ops record."""
    from chalicelib.store import payments as payment_store

    now = clock.now()
    out = {"returns_checked": 0, "returns_completed": 0, "returns_stuck": 0}
    for rid in ops.awaiting_before(KIND, now - RESUME_AFTER, limit=limit):
        record = ops.get(rid)
        payment = payment_store.get(record.ref) if record is not None and record.status == RETURNING else None
        if payment is None or merchant_id not in (None, payment.merchant_id):
            continue
        out["returns_checked"] += 1
        if dry_run:
            continue
        posting, req = _booking(payment, rid, record.detail)
        try:
            status = channels.get(payment.channel, payment.livemode).refund_query(req).status
        except ChannelError as exc:
            log.warning("unapplied_return_query_failed", payment_id=payment.id, code=exc.code)
            status = None
        if status is not None and _settle(payment, rid, posting, req, status):
            out["returns_completed"] += 1
        elif now - record.created_at >= STUCK_AFTER:
            try:
                Unit().move_ops_record(rid, RETURNING, NEEDS_A_PERSON,
                                       note=f"not returned after {STUCK_AFTER}: check the channel's refunds").commit()
            except Conflict:
                continue  # moved on meanwhile
            ops.record_once(f"unapplied_return_stuck:{rid}", "unapplied_return_stuck", payment.channel, payment.id,
                            {"record_id": rid, "created": clock.iso(record.created_at),
                             "last_status": status.value if status else "no answer"})
            log.error("unapplied_return_stuck", payment_id=payment.id, record_id=rid)
            out["returns_stuck"] += 1
    return out
