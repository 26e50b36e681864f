"""Creating, reading and closing payments."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from chalicelib import channels, clock, ids, log, settings
from chalicelib.channels.base import (
    ChannelError,
    ChannelPayment,
    ChannelStatus,
    CreateRequest,
    MerchantChannelConfig,
    OrderRef,
)
from chalicelib.domain import ledger, views
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.money import Money, bps_of
from chalicelib.domain.fx import Quote
from chalicelib.services import errors, fx
from chalicelib.services.idempotency import Completion
from chalicelib.store import payments as store
from chalicelib.store.unit import Conflict, Unit, new_event

DEFAULT_TTL = timedelta(minutes=30)


@dataclass(frozen=True)
class NewPayment:
    amount: Money
    channel: str
    flow: str
    merchant_reference: str
    description: str
    return_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    payer: dict[str, str] = field(default_factory=dict)
    client_ip: str = "127.0.0.1"
    expires_in: timedelta = DEFAULT_TTL
    # Started on our pages: the wallet sends the shopper back to our result page, not to return_url.
    via_pages: bool = False
    # With channel == "": the wallets the shopper may choose from on the hosted checkout (empty: any).
    allowed_channels: tuple[str, ...] = ()


# Wallets a shopper can pick on the hosted checkout (PayEase needs a locked quote: API only).
CHOOSABLE = ("wechat", "alipay")


def notify_url(channel: str) -> str:
    return f"{settings.get().public_base_url}/callbacks/{channel}"


def payment_id_of(channel_order_id: str) -> str | None:
    """Our payment id inside a channel order number (`pay_<20>` or, after a re-quote, `pay_<20>_<n>`)."""
    if channel_order_id.startswith("pay_") and len(channel_order_id) >= PAYMENT_ID_LENGTH:
        return channel_order_id[:PAYMENT_ID_LENGTH]
    return None


PAYMENT_ID_LENGTH = 24  # "pay_" + 20


def check_limits(channel: str, amount: Money) -> None:
    lo, hi = settings.get().channel_limits.get(channel, {}).get(amount.currency, (1, None))
    if amount.amount < lo:
        raise errors.invalid("amount_below_channel_minimum",
                             f"{channel} takes at least {Money(lo, amount.currency).to_major_str()} {amount.currency}",
                             "amount")
    if hi is not None and amount.amount > hi:
        raise errors.invalid("amount_above_channel_maximum",
                             f"{channel} takes at most {Money(hi, amount.currency).to_major_str()} {amount.currency}",
                             "amount")


def create(merchant: Merchant, livemode: bool, req: NewPayment, completion: Completion | None = None) -> Payment:
    if not merchant.takes_payments:
        raise _suspended()
    if req.amount.currency != merchant.settlement_currency:
        raise errors.invalid("currency_not_supported",
                             f"this merchant takes payments in {merchant.settlement_currency}", "currency")
    if not req.channel:
        return _create_unchosen(merchant, livemode, req, completion)
    try:
        channel = channels.get(req.channel, livemode)
    except KeyError:
        raise errors.invalid("channel_unknown", f"unknown channel {req.channel!r}", "channel") from None
    except channels.NoTestEnvironment:  # a test payment never falls back to the live channel
        raise errors.invalid("test_mode_unavailable",
                             f"{req.channel} has no test environment on this stage; use a live key or another channel",
                             "channel") from None
    if req.flow not in channel.flows:
        raise errors.invalid("flow_unknown", f"channel {req.channel} supports flows {list(channel.flows)}", "flow")
    ids_at_channel = merchant.channel_ids(req.channel)
    if ids_at_channel is None:
        raise errors.invalid("channel_not_enabled", f"{req.channel} is not enabled for this merchant", "channel")
    if req.flow == "jsapi" and not req.payer.get("openid"):
        raise errors.invalid("parameter_missing", "jsapi payments need payer.openid", "payer.openid")
    check_limits(req.channel, req.amount)
    charge_currency = getattr(channel, "charge_currency", None)
    if charge_currency and not req.return_url:
        raise errors.invalid("parameter_missing", f"{req.channel} payments need a return_url", "return_url")

    now = clock.now()
    payment_id = ids.new("pay")
    log.bind(payment_id=payment_id)
    quote = None
    charge = req.amount
    expires_at = now + req.expires_in
    if charge_currency and charge_currency != req.amount.currency:
        # Priced in the merchant's currency, charged in the channel's: lock a quote on the payment.
        quote = fx.quote(req.amount, merchant.fx_markup_bps)
        charge = quote.cny
        check_limits(req.channel, charge)
        expires_at = max(expires_at, quote.expires_at)  # the payment outlives a quote: the payer may re-quote
    payment = Payment(
        id=payment_id, merchant_id=merchant.id, livemode=livemode, amount=req.amount, channel=req.channel,
        flow=req.flow, status=PaymentStatus.PENDING, channel_order_id=payment_id,
        merchant_reference=req.merchant_reference, description=req.description, created_at=now,
        expires_at=expires_at, fee=bps_of(req.amount, merchant.fee_bps, "HALF_UP"),
        channel_merchant=dict(ids_at_channel), return_url=req.return_url, metadata=dict(req.metadata),
        channel_amount=charge if quote else None, quote=quote.as_dict() if quote else None,
        alert_bindings=merchant.alert_bindings,
    )
    back = result_url(payment.id) if req.via_pages else None
    result = _create_at_channel(channel, payment, req.payer, req.client_ip, back)
    payment = replace(payment, next_action=_next_action(payment, result.next_action))
    unit = Unit().create_payment(payment)
    if completion is not None:
        completion.attach(unit, 201, views.payment(payment))
    unit.commit()
    log.info("payment_created", payment_id=payment.id, merchant_id=merchant.id, channel=req.channel,
             flow=req.flow, amount=req.amount.amount, currency=req.amount.currency)
    from chalicelib import metrics

    metrics.emit("Payments", Channel=payment.channel, Outcome="created")
    return payment


def _suspended() -> errors.ServiceError:
    return errors.conflict("merchant_suspended", "this merchant cannot take new payments at the moment")


def _create_unchosen(merchant: Merchant, livemode: bool, req: NewPayment, completion: Completion | None) -> Payment:
    """A payment whose channel order is created when the shopper picks a wallet on the hosted checkout."""
    enabled = [c for c in CHOOSABLE if merchant.channel_ids(c) is not None]
    allowed = tuple(dict.fromkeys(req.allowed_channels)) or tuple(enabled)
    for name in allowed:
        if name not in CHOOSABLE:
            raise errors.invalid("channel_not_choosable", f"the shopper can choose from {list(CHOOSABLE)}",
                                 "allowed_channels")
        if name not in enabled:
            raise errors.invalid("channel_not_enabled", f"{name} is not enabled for this merchant", "allowed_channels")
        check_limits(name, req.amount)
    if not allowed:
        raise errors.invalid("channel_not_enabled", "no wallet the shopper could choose is enabled", "channel")
    now = clock.now()
    payment_id = ids.new("pay")
    payment = Payment(
        id=payment_id, merchant_id=merchant.id, livemode=livemode, amount=req.amount, channel="", flow="",
        status=PaymentStatus.PENDING, channel_order_id=payment_id, merchant_reference=req.merchant_reference,
        description=req.description, created_at=now, expires_at=now + req.expires_in,
        fee=bps_of(req.amount, merchant.fee_bps, "HALF_UP"), return_url=req.return_url,
        metadata=dict(req.metadata), allowed_channels=allowed,
        next_action={"type": "redirect", "url": pay_url(payment_id)},
    )
    unit = Unit().create_payment(payment)
    if completion is not None:
        completion.attach(unit, 201, views.payment(payment))
    unit.commit()
    log.info("payment_created", payment_id=payment.id, merchant_id=merchant.id, channel=None,
             allowed=list(allowed), amount=req.amount.amount, currency=req.amount.currency)
    return payment


def choose_channel(payment_id: str, channel_name: str, flow: str, payer: dict[str, str], client_ip: str) -> Payment:
    """The shopper picked a wallet on the hosted checkout: create the channel order, once.

    The first choice fixes the channel and flow (a second channel order under the same number could
    be paid too); choosing the same again answers the payment as it is.
    """
    from chalicelib.store import merchants as merchant_store

    p = store.get(payment_id)
    if p is None:
        raise errors.not_found("payment", "id")
    if p.status is not PaymentStatus.PENDING or clock.now() >= p.expires_at:
        raise errors.conflict("payment_not_pending", "this payment can no longer be paid")
    if p.channel_chosen:
        if (p.channel, p.flow) == (channel_name, flow):
            return p
        raise errors.conflict("channel_already_chosen", f"this payment is already being paid with {p.channel}")
    if channel_name not in p.allowed_channels:
        raise errors.invalid("channel_not_allowed", "this wallet is not offered for this payment", "channel")
    merchant = merchant_store.get(p.merchant_id)
    if merchant is not None and not merchant.takes_payments:
        raise _suspended()      # the channel order would be a new payment
    ids_at_channel = merchant.channel_ids(channel_name) if merchant else None
    channel = channels.get(channel_name)
    if ids_at_channel is None or flow not in channel.flows:
        raise errors.invalid("channel_not_enabled", f"{channel_name} cannot take this payment", "channel")
    if flow == "jsapi" and not payer.get("openid"):
        raise errors.invalid("parameter_missing", "jsapi payments need payer.openid", "payer.openid")
    check_limits(channel_name, p.amount)
    chosen = replace(p, channel=channel_name, flow=flow, channel_merchant=dict(ids_at_channel))
    result = _create_at_channel(channel, chosen, payer, client_ip, result_url(p.id))
    chosen = replace(chosen, next_action=result.next_action)
    try:
        Unit().choose_payment_channel(chosen).commit()
    except Conflict:
        _close_quietly(channel, chosen)  # another tab chose first: nobody may pay this order
        raise errors.conflict("channel_already_chosen", "this payment changed meanwhile; reload it") from None
    log.info("payment_channel_chosen", payment_id=p.id, channel=channel_name, flow=flow)
    return chosen


def _close_quietly(channel, p: Payment) -> None:
    try:
        channel.close(OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant))))
    except ChannelError as exc:
        log.warning("losing_channel_order_not_closed", payment_id=p.id, channel=p.channel, code=exc.code)


def pay_url(payment_id: str) -> str:
    """The hosted checkout page of a payment."""
    return f"{settings.get().public_base_url}/pay/{payment_id}"


def result_url(payment_id: str) -> str:
    return f"{pay_url(payment_id)}/result"


def _create_at_channel(channel, payment: Payment, payer: dict, client_ip: str, return_url: str | None = None):
    try:
        return channel.create(CreateRequest(
            payment_id=payment.id, channel_order_id=payment.channel_order_id,
            amount=payment.channel_amount or payment.amount, flow=payment.flow, description=payment.description,
            notify_url=notify_url(payment.channel), expires_at=payment.expires_at,
            merchant=MerchantChannelConfig(dict(payment.channel_merchant)),
            return_url=return_url or payment.return_url,
            client_ip=client_ip, payer=dict(payer), product_id=payment.id,
        ))
    except ChannelError as exc:
        log.warning("channel_create_failed", channel=payment.channel, payment_id=payment.id, code=exc.code)
        raise errors.channel(exc.code, f"{payment.channel} refused the payment: {exc.code}") from None


def _next_action(payment: Payment, channel_action: dict) -> dict:
    """Quoted payments send the payer to our page first, which refuses an expired quote."""
    if payment.quote is None:
        return channel_action
    return {"type": "redirect", "url": pay_url(payment.id), "channel_action": channel_action}


def requote(payment_id: str) -> Payment:
    """A fresh quote (and channel order) for a pending quoted payment whose quote expired."""
    p = store.get(payment_id)
    if p is None or p.quote is None:
        raise errors.not_found("payment", "id")
    if p.status is not PaymentStatus.PENDING:
        raise errors.conflict(f"payment_{p.status.value}", f"the payment is {p.status.value}")
    old = Quote.from_dict(p.quote)
    if clock.now() < old.expires_at:
        return p
    if clock.now() >= p.expires_at:
        raise errors.conflict("payment_expired", "this payment has expired; ask the merchant for a new one")
    channel = channels.get(p.channel, p.livemode)
    try:  # paid at the bank just before the quote ran out? Then it is paid, not re-quoted.
        answer = channel.query(OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant))))
    except ChannelError:
        raise errors.ServiceError("unavailable", "channel_unavailable",
                                  f"{p.channel} did not answer; try again in a moment") from None
    if answer.status not in (ChannelStatus.PENDING, ChannelStatus.NOT_FOUND, ChannelStatus.FAILED):
        from chalicelib.services import callbacks

        if callbacks.mismatch(p, answer) is None:
            callbacks.apply_channel_payment(p, answer, source="requote")
        p = store.get(payment_id) or p
        if p.status is not PaymentStatus.PENDING or p.channel_order_id != answer.channel_order_id:
            raise errors.conflict("payment_not_pending", "the payment was completed at the bank; reload it")
        # Paid at the lapsed quote: that money goes back to the payer (services.unapplied); quote afresh.
    quote = fx.quote(p.amount, old.markup_bps)
    check_limits(p.channel, quote.cny)
    n = int(p.channel_order_id[PAYMENT_ID_LENGTH + 1:] or 1) + 1 if len(p.channel_order_id) > PAYMENT_ID_LENGTH else 2
    fresh = replace(p, quote=quote.as_dict(), channel_amount=quote.cny, channel_order_id=f"{p.id}_{n}")
    result = _create_at_channel(channel, fresh, {}, "127.0.0.1")
    fresh = replace(fresh, next_action=_next_action(fresh, result.next_action))
    try:
        Unit().replace_pending_payment(fresh, expected_order=p.channel_order_id).commit()
    except Conflict:
        raise errors.conflict("payment_changed", "the payment changed meanwhile; reload it") from None
    log.info("payment_requoted", payment_id=p.id, quote_id=quote.id, channel_order_id=fresh.channel_order_id)
    return fresh


def get_for(merchant: Merchant, livemode: bool, payment_id: str) -> Payment:
    p = store.get(payment_id) if ids.looks_like(payment_id, "pay") else None
    if p is None or p.merchant_id != merchant.id or p.livemode != livemode:
        raise errors.not_found("payment", "id")
    return p


def find_by_reference(merchant: Merchant, livemode: bool, reference: str) -> list[Payment]:
    return [p for p in store.by_merchant_reference(merchant.id, reference) if p.livemode == livemode]


def close(merchant: Merchant, livemode: bool, payment_id: str, completion: Completion | None = None) -> Payment:
    """Close a pending payment at the channel and here (the reply stored with the change). A paid payment
    cannot be closed (409)."""
    from chalicelib.services import callbacks

    p = get_for(merchant, livemode, payment_id)
    if p.status is PaymentStatus.SUCCEEDED:
        if _finish_reversal(p):  # an earlier close whose cancel reversed it died before booking that
            raise errors.conflict("payment_refunded", f"the shopper paid just before the close; {p.channel} "
                                                      "refunded the payment in full (see its refunds)")
        raise errors.conflict("payment_succeeded", "a succeeded payment cannot be closed; refund it instead")
    if p.status is not PaymentStatus.PENDING:
        return p
    if not p.channel_chosen:  # no channel order exists: nobody can pay it anywhere
        return mark_closed(p, reason="merchant")
    channel = channels.get(p.channel, p.livemode)
    ref = OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)))
    try:
        reversed_trade = channel.close(ref)
    except ChannelError as exc:
        if exc.code in ("ORDERPAID", "TRADE_PAID"):
            # Paid meanwhile: learn the payment through the verified exactly-once path, then refuse. If the
            # channel cannot be asked now, nothing changes here and the chase books the payment later.
            try:
                answer = channel.query(ref)
            except ChannelError as query_exc:
                log.warning("close_paid_query_failed", channel=p.channel, payment_id=p.id, code=query_exc.code)
                raise errors.ServiceError("unavailable", "channel_unavailable",
                                          f"{p.channel} says the order is paid but did not answer when asked; "
                                          "try again in a moment") from None
            if callbacks.mismatch(p, answer) is None:
                callbacks.apply_channel_payment(p, answer, source="close")
            if (store.get(p.id) or p).status is PaymentStatus.SUCCEEDED:
                raise errors.conflict("payment_succeeded", "the payment was paid before it could be closed") from None
            raise errors.channel(exc.code, f"{p.channel} says the order is paid; we are checking it") from None
        if exc.code == "NOT_SUPPORTED":
            raise errors.conflict("close_not_supported",
                                  f"{p.channel} cannot close an order; it lapses at expires_at") from None
        settled = None
        if not exc.refused:  # the close may have happened (and reversed a payment made meanwhile): ask
            try:
                settled = settle_unanswered_close(channel, ref, p, reason="merchant", completion=completion)
            except ChannelError:
                settled = None
        if settled is None:
            raise errors.channel(exc.code, f"{p.channel} could not close the payment: {exc.code}") from None
        if settled.status is PaymentStatus.SUCCEEDED:
            raise errors.conflict("payment_refunded", f"the shopper paid just before the close; {p.channel} "
                                                      "refunded the payment in full (see its refunds)") from None
        return settled
    closed = after_channel_close(p, reversed_trade, reason="merchant", completion=completion)
    if closed.status is PaymentStatus.SUCCEEDED:
        raise errors.conflict("payment_refunded", f"the shopper paid just before the close; {p.channel} "
                                                  "refunded the payment in full (see its refunds)")
    return closed


def settle_unanswered_close(channel, ref: OrderRef, p: Payment, reason: str,
                            completion: Completion | None = None) -> Payment | None:
    """A close whose answer was lost (timeout, reset, garbage) may have happened: the channel's query
    decides. Closed there: a payment still pending here is closed; one that succeeded meanwhile (its
    notification came while the close was on its way) was paid and then reversed by the close, and that
    reversal is booked. None: the channel does not say it is closed (nothing is decided)."""
    answer = channel.query(ref)
    if answer.status is not ChannelStatus.CLOSED:
        return None
    current = store.get(p.id) or p
    if current.status is PaymentStatus.PENDING:
        return mark_closed(current, reason=reason, completion=completion)
    if current.status is PaymentStatus.SUCCEEDED and current.refundable > 0:
        log.warning("close_answer_lost_paid_trade_closed", payment_id=p.id, channel=p.channel)
        return _book_reversal(current, replace(answer, status=ChannelStatus.REFUNDED), source=reason)
    return current


def after_channel_close(p: Payment, reversed_trade: ChannelPayment | None, reason: str,
                        completion: Completion | None = None) -> Payment:
    """The channel closed the order: close the payment here too. If the channel's close reversed a
    payment made meanwhile, the money came in and went back: book it as paid, then refunded in full."""
    if reversed_trade is None:
        return mark_closed(p, reason=reason, completion=completion)
    return _book_reversal(p, reversed_trade, source=reason)


REVERSAL_BOOKING, REVERSAL_BOOKED = "booking", "booked"


def reversal_record_id(payment_id: str) -> str:
    return f"close_reversal:{payment_id}"


def _book_reversal(p: Payment, reversed_trade: ChannelPayment, source: str) -> Payment:
    """The channel's close reversed a payment made meanwhile. What it did is written down first (an ops
    record `booking`), so a run that dies between the payment's success and its reversal leaves a record
    a person sees and a retried close finishes (the money has left: the merchant must not keep it)."""
    from chalicelib.services import callbacks
    from chalicelib.store import ops

    paid = replace(reversed_trade, status=ChannelStatus.PAID)
    problem = callbacks.mismatch(p, paid)
    if problem:
        ops.record_once(f"close_reversed:{p.id}", "close_reversed_mismatch", p.channel, p.id,
                        {"problem": problem, "fields": reversed_trade.raw})
        return store.get(p.id) or p
    amount = reversed_trade.amount
    ops.put_once(ops.new_record(
        reversal_record_id(p.id), "close_reversal", p.channel, p.id,
        {"channel_transaction_id": reversed_trade.channel_transaction_id or "", "amount": amount.amount,
         "currency": amount.currency, "fields": reversed_trade.raw}, status=REVERSAL_BOOKING))
    callbacks.apply_channel_payment(p, paid, source=source)  # the payment first: posting, event, alerts
    current = store.get(p.id)
    if current is None or current.status is not PaymentStatus.SUCCEEDED:
        return current or p  # ended otherwise meanwhile: the callbacks' late-money rule recorded it
    _finish_reversal(current)
    return store.get(p.id) or current


def _finish_reversal(p: Payment) -> bool:
    """Book the reversal a channel's close made of this succeeded payment, if one is written down and not
    booked yet. True if the channel reversed it (booked now or before)."""
    from chalicelib.store import ops

    record = ops.get(reversal_record_id(p.id))
    if record is None:
        return False
    if record.status == REVERSAL_BOOKING and p.refundable > 0:
        _book_channel_refund(p, record.detail.get("channel_transaction_id") or None,
                             reason=f"reversed by {p.channel} on close")
    return True


def _book_channel_refund(p: Payment, channel_ref: str | None, reason: str) -> None:
    """A refund the channel already made (nothing to ask it): the rest of the payment goes back, once
    (the refund id derives from the payment), in one transaction with its posting and event. No balance
    floor: the money has left, so a merchant without the funds owes them."""
    from chalicelib.domain.refund import Refund, RefundStatus
    from chalicelib.services import refunds

    amount = p.refundable
    fee_back = refunds.fee_share(p, amount)
    net = amount - fee_back
    # The payment's own money first: its unreleased net while pending, else the available balance. Only
    # what exceeds its own unreleased net is borrowed from other payments' pending money.
    bucket = "available" if p.released else "pending"
    own_left = p.own_pending
    pending_own = min(net, own_left) if bucket == "pending" else 0
    borrowed = net - pending_own if bucket == "pending" else 0
    draw = {bucket: net}
    channel_amount = None
    if p.channel_amount is not None and p.channel_amount.currency != p.amount.currency:
        channel_amount = Money(refunds.channel_share(p, amount), p.channel_amount.currency)
    refund_id = "re_rev" + p.id[len("pay"):]
    refund = Refund(id=refund_id, payment_id=p.id, merchant_id=p.merchant_id, amount=Money(amount, p.amount.currency),
                    reason=reason, status=RefundStatus.SUCCEEDED, channel_refund_id=refund_id,
                    created_at=clock.now(), channel_refund_ref=channel_ref,
                    channel_amount=channel_amount, draw=draw, borrowed=borrowed, livemode=p.livemode)
    posting = refunds.refund_posting(f"refund:{refund_id}", p, refund_id, amount, fee_back, draw, channel_amount)
    pending_account = ledger.merchant_account(ledger.owner(p.merchant_id, p.livemode), p.amount.currency, "pending")
    try:
        (Unit().reserve_refund(p, amount, fee_back, channel_amount.amount if channel_amount else 0, pending_own)
         .save_refund(store.refund_to_item(refund), new=True)
         .post(posting, borrowed={pending_account: (None, borrowed)} if borrowed else None)
         .emit(new_event(p.merchant_id, "refund.succeeded", views.refund(refund)))
         .move_ops_record(reversal_record_id(p.id), REVERSAL_BOOKING, REVERSAL_BOOKED, note=f"booked as {refund_id}")
         .commit())
    except Conflict:
        log.info("channel_reversal_already_booked", payment_id=p.id, refund_id=refund_id)
        return
    log.warning("channel_reversal_booked", payment_id=p.id, refund_id=refund_id, amount=amount)


def mark_closed(p: Payment, reason: str, completion: Completion | None = None) -> Payment:
    """Move a pending payment to closed (once), with its payment.closed event (and the merchant's reply).
    One whose last attempt failed (failure_code kept while it stayed payable) ends as failed instead,
    with payment.failed."""
    closed = p.ended("merchant" if reason == "merchant" else "clock", clock.now())
    unit = Unit().move_payment(closed, PaymentStatus.PENDING).emit(
        new_event(p.merchant_id, f"payment.{closed.status.value}", views.payment(closed)))
    if completion is not None:
        completion.attach(unit, 200, views.payment(closed))
    try:
        unit.commit()
    except Conflict:  # someone else moved it first: report what it is now
        if completion is not None:
            completion.attached = False  # nothing was written: the reply is stored on its own
        current = store.get(p.id)
        log.info("payment_close_lost_race", payment_id=p.id, status=current.status.value if current else None)
        return current
    log.info("payment_closed", payment_id=p.id, reason=reason)
    return closed
