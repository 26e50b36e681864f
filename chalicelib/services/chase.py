"""Chasing what the channels never told us: pending payments and processing refunds.

Every answer goes through the same exactly-once paths a callback uses, so chasing and a late
callback can race freely.
"""
from __future__ import annotations

from datetime import timedelta

from chalicelib import channels, clock, log, settings
from chalicelib.channels.base import ChannelError, ChannelStatus, MerchantChannelConfig, OrderRef
from chalicelib.channels.base import RefundStatus as ChannelRefundStatus
from chalicelib.domain.payment import PaymentStatus
from chalicelib.domain.refund import RefundStatus
from chalicelib.services import callbacks, payments, refunds, unapplied
from chalicelib.store import ops
from chalicelib.store import payments as store

# What a channel answers a refund query when it has never heard of the refund.
REFUND_UNKNOWN_CODES = ("REFUNDNOTEXIST", "ORDER_NOT_FOUND", "NOT_FOUND", "REFUND_NOT_EXIST")
PAYMENT_GRACE = timedelta(seconds=store.FIRST_CHECK_AFTER_SECONDS)   # give the callback a chance first
REFUND_GRACE = timedelta(seconds=5)
# A payment the chase looked at and left pending is looked at again after a quarter of its age, within
# these bounds (and never later than the next moment its fate can change: expires_at, or the channel's
# hard deadline for an order it does not know). Old unresolvable payments thus go to the back of the
# queue, and a newer one whose callback was lost is reached in the next run whatever their number.
RECHECK_MIN = timedelta(minutes=5)
RECHECK_MAX = timedelta(hours=6)
PAGE_SIZE = 100
REFUNDS_RESERVE_MS = 60_000      # time the payment half leaves for chase_refunds in the same run
RUN_MS = 240_000                 # the chase_payments Lambda's timeout (.chalice/config.json): a run without
                                 # a Lambda context (a hand call) gets the same budget
# A refund a channel that cannot take it twice (PayEase) still does not list after this is failed, with an
# ops record; any refund still processing after REFUND_STUCK_AFTER gets an ops record (README: Jobs).
REFUND_NOT_AT_CHANNEL_AFTER = timedelta(hours=6)
REFUND_STUCK_AFTER = timedelta(hours=24)


def chase_payments(dry_run: bool = False, merchant_id: str | None = None, budget=None) -> dict:
    """Ask the channel about every pending payment whose next check is due; apply what it says.

    Pages through the due payments, soonest first, while the run has time for one more payment (three
    channel calls at their timeout) and for the refunds after it. Counters only: the job runner
    (services.jobs) logs and returns the one summary.
    """
    from chalicelib.services.jobs import Budget

    budget = budget or Budget(total_ms=RUN_MS)
    now = clock.now()
    summary = {"checked": 0, "succeeded": 0, "failed": 0, "closed": 0, "still_pending": 0, "errors": 0,
               "mismatches": 0}
    per_payment_ms = 3 * settings.get().http_timeout_seconds * 1000
    after, more = None, True
    while more:
        due, after = store.pending_due(int(now.timestamp()), limit=PAGE_SIZE, after=after)
        more = after is not None
        for payment_id in due:
            if not budget.allows(per_payment_ms + REFUNDS_RESERVE_MS):
                summary["out_of_time"] = True  # the rest stay due: the next run starts with them
                more = False
                break
            _chase_payment(payment_id, now, dry_run, merchant_id, summary)
    summary.update(chase_refunds(dry_run=dry_run, merchant_id=merchant_id))
    summary.update(unapplied.finish_returns(dry_run=dry_run, merchant_id=merchant_id))
    return summary


def _chase_payment(payment_id: str, now, dry_run: bool, merchant_id: str | None, summary: dict) -> None:
    p = store.get(payment_id)
    if p is None or p.status is not PaymentStatus.PENDING:
        return
    if merchant_id and p.merchant_id != merchant_id:
        return
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
    if outcome in ("still_pending", "errors", "mismatches") and not dry_run:
        store.check_again_at(p.id, int(_next_check(p, now).timestamp()))


def _next_check(p, now):
    at = now + min(max((now - p.created_at) / 4, RECHECK_MIN), RECHECK_MAX)
    deadline = channels.get(p.channel, p.livemode).unknown_order_payable_until(p.flow, p.created_at, p.expires_at)
    for moment in (p.expires_at, deadline):
        if moment is not None and now < moment:
            at = min(at, moment)
    return at


def _chase_one(p, now, dry_run: bool) -> str | None:
    """One pending payment: the summary counter its outcome belongs to (None: nothing to count)."""
    if not p.channel_chosen:  # hosted checkout, no wallet chosen: no channel order to ask about
        if now < p.expires_at:
            return "still_pending"
        return "closed" if dry_run else _counter(payments.mark_closed(p, reason="expired_unchosen"))
    channel = channels.get(p.channel, p.livemode)
    ref = OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)))
    cp = channel.query(ref)
    if cp.status in (ChannelStatus.PENDING, ChannelStatus.NOT_FOUND):
        if now < p.expires_at:
            return "still_pending"
        if channel.closes_on_kauri_clock:
            # The channel can neither close nor expire it: it ends here, on our clock (a paid notice
            # arriving later is the callbacks' late-money rule).
            return "closed" if dry_run else _counter(payments.mark_closed(p, reason="expired_on_kauri_clock"))
        payable_until = channel.unknown_order_payable_until(p.flow, p.created_at, p.expires_at)
        if cp.status is ChannelStatus.NOT_FOUND and payable_until is not None and now < payable_until:
            return "still_pending"  # the shopper may still open the channel's page: "not found" proves nothing
        if dry_run:
            return "closed"
        try:
            reversed_trade = channel.close(ref)  # the channel first: after this no one can pay it
        except ChannelError as exc:
            # Paid at the last moment, closed already, or never known there: the channel's word decides.
            log.info("chase_close_refused", payment_id=p.id, code=exc.code)
            if not exc.refused and exc.code not in ("NOT_SUPPORTED", "TRADE_PAID", "ORDERPAID"):
                # No readable answer: the close may have happened, even reversed a payment made meanwhile
                settled = payments.settle_unanswered_close(channel, ref, p, reason="expired")
                if settled is not None:
                    return _counter(settled)
            cp = channel.query(ref)
            if cp.status is ChannelStatus.PENDING:
                if exc.code == "NOT_SUPPORTED":
                    return "still_pending"  # the channel lapses it at its own timeout; we look again
                log.warning("chase_close_failed", payment_id=p.id, code=exc.code)
                return "errors"
            if cp.status is ChannelStatus.NOT_FOUND:
                # Past the channel's hard deadline for an order it does not know: nobody can pay it.
                return _counter(payments.mark_closed(p, reason="expired_unknown_at_channel"))
        else:  # lost a race (paid meanwhile, even reversed by the close): count what won
            return _counter(payments.after_channel_close(p, reversed_trade, reason="expired"))
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


ASIDE_LIMIT = 50   # refunds set aside (stuck past REFUND_STUCK_AFTER, each with an ops record) asked per run


def chase_refunds(dry_run: bool = False, merchant_id: str | None = None, limit: int = 500) -> dict:
    """Ask the channel about every refund still processing; each refund on its own (one that cannot be
    settled is counted and logged, and the others go on). One stuck past REFUND_STUCK_AFTER gets its ops
    record and is set aside, so old unresolvable refunds never starve newer ones; the set-aside ones are
    still asked, a bounded number per run."""
    now = clock.now()
    out = {"refunds_checked": 0, "refunds_succeeded": 0, "refunds_failed": 0, "refunds_resubmitted": 0,
           "refunds_unknown": 0, "refunds_errors": 0, "refunds_stuck": 0}
    due = store.processing_refunds_before(now - REFUND_GRACE, limit=limit)
    due += store.processing_refunds_before(now - REFUND_GRACE, limit=min(limit, ASIDE_LIMIT), aside=True)
    for refund_id in due:
        found = store.get_refund(refund_id)
        if found is None or found[0].status is not RefundStatus.PROCESSING:
            continue
        refund = found[0]
        if merchant_id and refund.merchant_id != merchant_id:
            continue
        out["refunds_checked"] += 1
        p = store.get(refund.payment_id)
        try:
            outcome = _chase_refund(p, refund, now, dry_run)
        except Exception as exc:  # one odd refund must not stop the others
            outcome = "refunds_errors"
            log.error("chase_refund_error", refund_id=refund.id, error=type(exc).__name__)
        if outcome:
            out[outcome] += 1
        if not dry_run and outcome not in ("refunds_succeeded", "refunds_failed") \
                and now - refund.created_at >= REFUND_STUCK_AFTER:
            if ops.record_once(f"refund_stuck:{refund.id}", "refund_stuck", p.channel if p else "", refund.id,
                               {"payment_id": refund.payment_id, "created": clock.iso(refund.created_at),
                                "last_outcome": outcome or ""}):
                log.error("refund_stuck", refund_id=refund.id, payment_id=refund.payment_id)
            store.set_refund_aside(refund.id)
            out["refunds_stuck"] += 1
    return out


def _chase_refund(p, refund, now, dry_run: bool) -> str | None:
    """One processing refund: the summary counter its outcome belongs to (None: still waiting)."""
    req = refunds.channel_request(p, refund)
    channel = channels.get(p.channel, p.livemode)
    try:
        answer = channel.refund_query(req)
    except ChannelError as exc:
        if exc.retryable or exc.code not in REFUND_UNKNOWN_CODES:
            log.warning("chase_refund_query_failed", refund_id=refund.id, code=exc.code)
            return "refunds_unknown"
        answer = None
    if answer is None or answer.status is ChannelRefundStatus.NOT_FOUND:
        if getattr(channel, "resends_refunds_safely", False):
            # The channel never saw it (our request was lost on the way): send it again under the same
            # refund number, which the channel treats as the same refund, and take that answer.
            if dry_run:
                return None
            try:
                answer = channel.refund(req)
            except ChannelError as exc:
                if not exc.refused:
                    log.warning("chase_refund_resubmit_failed", refund_id=refund.id, code=exc.code)
                    return "refunds_unknown"
                refunds.fail(p, refund, refunds.posting_of(refund), exc.code)
                return "refunds_failed"
            log.info("chase_refund_resubmitted", refund_id=refund.id)
            if answer.status is ChannelRefundStatus.PROCESSING:
                return "refunds_resubmitted"
        elif now - refund.created_at < REFUND_NOT_AT_CHANNEL_AFTER:
            return None  # the channel's list may lag its refund desk: ask again later
        else:
            # Sending it again could pay the shopper twice, so after the limit the refund is failed (the
            # merchant gets the money back and may refund again) and ops confirm it with the channel.
            if dry_run:
                return "refunds_failed"
            refunds.fail(p, refund, refunds.posting_of(refund), "refund_not_at_channel")
            ops.record_once(f"refund_not_at_channel:{refund.id}", "refund_not_at_channel", p.channel, refund.id,
                            {"payment_id": p.id, "created": clock.iso(refund.created_at),
                             "amount": (refund.channel_amount or refund.amount).amount,
                             "currency": (refund.channel_amount or refund.amount).currency})
            return "refunds_failed"
    if dry_run:
        return None
    if answer.status is ChannelRefundStatus.SUCCEEDED:
        refunds.succeed(refund, answer.channel_refund_ref)
        return "refunds_succeeded"
    if answer.status is ChannelRefundStatus.FAILED:
        refunds.fail(p, refund, refunds.posting_of(refund), "channel_refund_failed")
        return "refunds_failed"
    if answer.status is ChannelRefundStatus.ABNORMAL:
        refunds.abnormal(p, refund, answer.raw)   # paid out, not received: a person routes it
    return None
