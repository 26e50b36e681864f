"""Chasing what the channels never told us: pending payments and processing refunds.

Every answer goes through the same exactly-once paths a callback uses, so chasing and a late
callback can race freely.
"""
from __future__ import annotations

from datetime import timedelta

from chalicelib import channels, clock, log
from chalicelib.channels.base import ChannelError, ChannelStatus, MerchantChannelConfig, OrderRef
from chalicelib.channels.base import RefundStatus as ChannelRefundStatus
from chalicelib.domain.payment import PaymentStatus
from chalicelib.domain.refund import RefundStatus
from chalicelib.services import callbacks, payments, refunds
from chalicelib.store import ops
from chalicelib.store import payments as store

# What a channel answers a refund query when it has never heard of the refund.
REFUND_UNKNOWN_CODES = ("REFUNDNOTEXIST", "ORDER_NOT_FOUND", "NOT_FOUND", "REFUND_NOT_EXIST")
PAYMENT_GRACE = timedelta(minutes=2)   # give the callback a chance first
REFUND_GRACE = timedelta(seconds=5)


def chase_payments(dry_run: bool = False, merchant_id: str | None = None, limit: int = 500) -> dict:
    """Ask the channel about every payment pending past the grace period; apply what it says.

    Counters only: the job runner (services.jobs) logs and returns the one summary.
    """
    now = clock.now()
    summary = {"checked": 0, "succeeded": 0, "failed": 0, "closed": 0, "still_pending": 0, "errors": 0,
               "mismatches": 0}
    for payment_id in store.pending_created_before(now - PAYMENT_GRACE, limit=limit):
        p = store.get(payment_id)
        if p is None or p.status is not PaymentStatus.PENDING:
            continue
        if merchant_id and p.merchant_id != merchant_id:
            continue
        summary["checked"] += 1
        try:
            outcome = _chase_one(p, now, dry_run)
        except ChannelError as exc:
            outcome = "errors"
            log.warning("chase_query_failed", payment_id=p.id, code=exc.code)
        except Exception as exc:  # one odd payment must not stop the others
            outcome = "errors"
            log.error("chase_payment_error", payment_id=p.id, error=type(exc).__name__)
        if outcome:
            summary[outcome] += 1
    summary.update(chase_refunds(dry_run=dry_run, merchant_id=merchant_id, limit=limit))
    return summary


def _chase_one(p, now, dry_run: bool) -> str | None:
    """One pending payment: the summary counter its outcome belongs to (None: nothing to count)."""
    if not p.channel_chosen:  # hosted checkout, no wallet chosen: no channel order to ask about
        if now < p.expires_at:
            return "still_pending"
        return "closed" if dry_run else _counter(payments.mark_closed(p, reason="expired_unchosen"))
    channel = channels.get(p.channel)
    ref = OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)))
    cp = channel.query(ref)
    if cp.status in (ChannelStatus.PENDING, ChannelStatus.NOT_FOUND):
        if now < p.expires_at:
            return "still_pending"
        if dry_run:
            return "closed"
        try:
            channel.close(ref)  # the channel first: after this no one can pay it
        except ChannelError as exc:
            # Paid at the last moment, closed already, or never known there: the channel's word decides.
            log.info("chase_close_refused", payment_id=p.id, code=exc.code)
            cp = channel.query(ref)
            if cp.status is ChannelStatus.PENDING:
                log.warning("chase_close_failed", payment_id=p.id, code=exc.code)
                return "errors"
            if cp.status is ChannelStatus.NOT_FOUND:  # nobody can pay an order the channel does not have
                return _counter(payments.mark_closed(p, reason="expired_unknown_at_channel"))
        else:
            return _counter(payments.mark_closed(p, reason="expired"))  # lost a race: count what won
    problem = callbacks.mismatch(p, cp)
    if problem:
        ops.record_once(f"mismatch:{p.id}:query", "query_mismatch", p.channel, p.id, {"problem": problem})
        return "mismatches"
    if dry_run:
        return "succeeded" if cp.status in (ChannelStatus.PAID, ChannelStatus.REFUNDED) else "failed"
    if not callbacks.apply_channel_payment(p, cp, source="chase"):
        return "errors"
    return _counter(store.get(p.id))


def _counter(p) -> str | None:
    return {PaymentStatus.SUCCEEDED: "succeeded", PaymentStatus.FAILED: "failed",
            PaymentStatus.CLOSED: "closed"}.get(p.status) if p is not None else None


def chase_refunds(dry_run: bool = False, merchant_id: str | None = None, limit: int = 500) -> dict:
    out = {"refunds_checked": 0, "refunds_succeeded": 0, "refunds_failed": 0}
    for refund_id in store.processing_refunds_before(clock.now() - REFUND_GRACE, limit=limit):
        found = store.get_refund(refund_id)
        if found is None or found[0].status is not RefundStatus.PROCESSING:
            continue
        refund, draw = found
        if merchant_id and refund.merchant_id != merchant_id:
            continue
        p = store.get(refund.payment_id)
        out["refunds_checked"] += 1
        req = refunds.channel_request(p, refund)
        channel = channels.get(p.channel)
        try:
            answer = channel.refund_query(req)
        except ChannelError as exc:
            if exc.retryable or exc.code not in REFUND_UNKNOWN_CODES:
                log.warning("chase_refund_query_failed", refund_id=refund.id, code=exc.code)
                continue
            answer = None
        if answer is None:
            # The channel never saw it (our request was lost on the way): send it again under the same
            # refund number, which the channels treat as the same refund, and take that answer.
            if dry_run:
                continue
            try:
                answer = channel.refund(req)
                out["refunds_resubmitted"] = out.get("refunds_resubmitted", 0) + 1
            except ChannelError as exc:
                if exc.retryable:
                    log.warning("chase_refund_resubmit_failed", refund_id=refund.id, code=exc.code)
                    continue
                refunds.fail(p, refund, refunds.posting_of(refund), exc.code)
                out["refunds_failed"] += 1
                continue
        if dry_run:
            continue
        if answer.status is ChannelRefundStatus.SUCCEEDED:
            refunds.succeed(refund, answer.channel_refund_ref)
            out["refunds_succeeded"] += 1
        elif answer.status is ChannelRefundStatus.FAILED:
            refunds.fail(p, refund, refunds.posting_of(refund), "channel_refund_failed")
            out["refunds_failed"] += 1
    return out
