"""Creating, reading and closing payments."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from chalicelib import channels, clock, ids, log, settings
from chalicelib.channels.base import ChannelError, ChannelStatus, CreateRequest, MerchantChannelConfig, OrderRef
from chalicelib.domain import views
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.money import Money, bps_of
from chalicelib.services import errors
from chalicelib.services.idempotency import Completion
from chalicelib.store import payments as store
from chalicelib.store.unit import Unit, new_event

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


def notify_url(channel: str) -> str:
    return f"{settings.get().public_base_url}/callbacks/{channel}"


def create(merchant: Merchant, livemode: bool, req: NewPayment, completion: Completion | None = None) -> Payment:
    if req.amount.currency != merchant.settlement_currency:
        raise errors.invalid("currency_not_supported",
                             f"this merchant takes payments in {merchant.settlement_currency}", "currency")
    try:
        channel = channels.get(req.channel)
    except KeyError:
        raise errors.invalid("channel_unknown", f"unknown channel {req.channel!r}", "channel") from None
    if req.flow not in channel.flows:
        raise errors.invalid("flow_unknown", f"channel {req.channel} supports flows {list(channel.flows)}", "flow")
    ids_at_channel = merchant.channel_ids(req.channel)
    if ids_at_channel is None:
        raise errors.invalid("channel_not_enabled", f"{req.channel} is not enabled for this merchant", "channel")
    if req.flow == "jsapi" and not req.payer.get("openid"):
        raise errors.invalid("parameter_missing", "jsapi payments need payer.openid", "payer.openid")

    now = clock.now()
    payment_id = ids.new("pay")
    payment = Payment(
        id=payment_id, merchant_id=merchant.id, livemode=livemode, amount=req.amount, channel=req.channel,
        flow=req.flow, status=PaymentStatus.PENDING, channel_order_id=payment_id,
        merchant_reference=req.merchant_reference, description=req.description, created_at=now,
        expires_at=now + req.expires_in, fee=bps_of(req.amount, merchant.fee_bps, "HALF_UP"),
        channel_merchant=dict(ids_at_channel), return_url=req.return_url, metadata=dict(req.metadata),
    )
    try:
        result = channel.create(CreateRequest(
            payment_id=payment.id, channel_order_id=payment.channel_order_id, amount=req.amount, flow=req.flow,
            description=req.description, notify_url=notify_url(req.channel), expires_at=payment.expires_at,
            merchant=MerchantChannelConfig(dict(ids_at_channel)), return_url=req.return_url,
            client_ip=req.client_ip, payer=dict(req.payer), product_id=payment.id,
        ))
    except ChannelError as exc:
        log.warning("channel_create_failed", channel=req.channel, payment_id=payment.id, code=exc.code)
        raise errors.channel(exc.code, f"{req.channel} refused the payment: {exc.code}") from None
    payment = replace(payment, next_action=result.next_action)
    unit = Unit().create_payment(payment)
    if completion is not None:
        completion.attach(unit, 201, views.payment(payment))
    unit.commit()
    log.info("payment_created", payment_id=payment.id, merchant_id=merchant.id, channel=req.channel,
             flow=req.flow, amount=req.amount.amount, currency=req.amount.currency)
    return payment


def get_for(merchant: Merchant, livemode: bool, payment_id: str) -> Payment:
    p = store.get(payment_id) if payment_id.startswith("pay_") and len(payment_id) <= 64 else None
    if p is None or p.merchant_id != merchant.id or p.livemode != livemode:
        raise errors.not_found("payment", "id")
    return p


def find_by_reference(merchant: Merchant, livemode: bool, reference: str) -> list[Payment]:
    return [p for p in store.by_merchant_reference(merchant.id, reference) if p.livemode == livemode]


def close(merchant: Merchant, livemode: bool, payment_id: str) -> Payment:
    """Close a pending payment at the channel and here. A paid payment cannot be closed (409)."""
    from chalicelib.services import callbacks

    p = get_for(merchant, livemode, payment_id)
    if p.status is PaymentStatus.SUCCEEDED:
        raise errors.conflict("payment_succeeded", "a succeeded payment cannot be closed; refund it instead")
    if p.status is not PaymentStatus.PENDING:
        return p
    channel = channels.get(p.channel)
    ref = OrderRef(p.channel_order_id, MerchantChannelConfig(dict(p.channel_merchant)))
    try:
        channel.close(ref)
    except ChannelError as exc:
        if exc.code == "ORDERPAID":
            # Paid meanwhile: learn the payment through the exactly-once path, then refuse the close.
            callbacks.apply_channel_payment(p, channel.query(ref), source="close")
            raise errors.conflict("payment_succeeded", "the payment was paid before it could be closed") from None
        raise errors.channel(exc.code, f"{p.channel} could not close the payment: {exc.code}") from None
    return mark_closed(p, reason="merchant")


def mark_closed(p: Payment, reason: str) -> Payment:
    """Move a pending payment to closed (once), with its payment.closed event."""
    closed = p.transition(PaymentStatus.CLOSED, closed_at=clock.now(), failure_code=None)
    try:
        Unit().move_payment(closed, PaymentStatus.PENDING).emit(
            new_event(p.merchant_id, "payment.closed", views.payment(closed))).commit()
    except Exception as exc:  # someone else moved it first: report what it is now
        from chalicelib.store.unit import Conflict

        if not isinstance(exc, Conflict):
            raise
        current = store.get(p.id)
        log.info("payment_close_lost_race", payment_id=p.id, status=current.status.value if current else None)
        return current
    log.info("payment_closed", payment_id=p.id, reason=reason)
    return closed


def channel_says_paid(status: ChannelStatus) -> bool:
    return status in (ChannelStatus.PAID, ChannelStatus.REFUNDED)
