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

PAYMENT_GRACE = timedelta(minutes=2)   # give the callback a chance first
REFUND_GRACE = timedelta(seconds=5)


def chase_payments(dry_run: bool = False, limit: int = 500) -> dict:
    now = clock.now()
    summary = {"checked": 0, "succeeded": 0, "failed": 0, "closed": 0, "still_pending": 0, "errors": 0,
               "mismatches": 0, "dry_run": dry_run}
    for payment_id in store.pending_created_before(now - PAYMENT_GRACE, limit=limit):
        p = store.get(payment_id)
        if p is None or p.status is not PaymentStatus.PENDING:
            continue
        summary["checked"] += 1
        channel = channels.get(p.channel)
        ref = OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)))
        try:
            cp = channel.query(ref)
        except ChannelError as exc:
            summary["errors"] += 1
            log.warning("chase_query_failed", payment_id=p.id, code=exc.code)
            continue
        if cp.status in (ChannelStatus.PENDING, ChannelStatus.NOT_FOUND):
            if now < p.expires_at:
                summary["still_pending"] += 1
                continue
            if dry_run:
                summary["closed"] += 1
                continue
            try:
                channel.close(ref)
            except ChannelError as exc:
                if exc.code != "ORDERPAID":
                    summary["errors"] += 1
                    log.warning("chase_close_failed", payment_id=p.id, code=exc.code)
                    continue
                cp = channel.query(ref)  # paid at the last moment: apply it below
            else:
                payments.mark_closed(p, reason="expired")
                summary["closed"] += 1
                continue
        problem = callbacks.mismatch(p, cp)
        if problem:
            summary["mismatches"] += 1
            ops.record_once(f"mismatch:{p.id}:query", "query_mismatch", p.channel, p.id, {"problem": problem})
            continue
        if dry_run:
            summary["succeeded" if cp.status in (ChannelStatus.PAID, ChannelStatus.REFUNDED) else "failed"] += 1
            continue
        if callbacks.apply_channel_payment(p, cp, source="chase"):
            after = store.get(p.id)
            if after.status is PaymentStatus.SUCCEEDED:
                summary["succeeded"] += 1
            elif after.status is PaymentStatus.FAILED:
                summary["failed"] += 1
            elif after.status is PaymentStatus.CLOSED:
                summary["closed"] += 1
    summary.update(chase_refunds(dry_run=dry_run, limit=limit))
    log.info("chase_payments_summary", **summary)
    return summary


def chase_refunds(dry_run: bool = False, limit: int = 500) -> dict:
    out = {"refunds_checked": 0, "refunds_succeeded": 0, "refunds_failed": 0}
    for refund_id in store.processing_refunds_before(clock.now() - REFUND_GRACE, limit=limit):
        found = store.get_refund(refund_id)
        if found is None or found[0].status is not RefundStatus.PROCESSING:
            continue
        refund, draw = found
        p = store.get(refund.payment_id)
        out["refunds_checked"] += 1
        req = refunds._request(p, refund)
        try:
            answer = channels.get(p.channel).refund_query(req)
        except ChannelError as exc:
            log.warning("chase_refund_query_failed", refund_id=refund.id, code=exc.code)
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
