"""Payments and refunds: conversion between domain objects and items, reads, and queries."""
from __future__ import annotations

from decimal import Decimal

from pynamodb.exceptions import DoesNotExist

from chalicelib.clock import bill_day
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.domain.refund import Refund, RefundStatus
from chalicelib.money import Money
from chalicelib.store.base import applied
from chalicelib.store.models import PaymentModel, RefundModel

PENDING_SHARD = "pending"
FIRST_CHECK_AFTER_SECONDS = 120  # the chase gives the channel's callback this long before asking


def to_item(p: Payment) -> PaymentModel:
    return PaymentModel(
        p.id,
        merchant_id=p.merchant_id,
        livemode=p.livemode,
        amount=p.amount.amount,
        currency=p.amount.currency,
        channel=p.channel,
        flow=p.flow,
        status=p.status.value,
        channel_order_id=p.channel_order_id,
        merchant_reference=p.merchant_reference,
        description=p.description,
        fee=p.fee.amount,
        channel_merchant=dict(p.channel_merchant),
        channel_amount=p.channel_amount.amount if p.channel_amount else None,
        channel_currency=p.channel_amount.currency if p.channel_amount else None,
        return_url=p.return_url,
        metadata=dict(p.metadata),
        next_action=p.next_action,
        channel_transaction_id=p.channel_transaction_id,
        payer_amount=p.payer_amount.amount if p.payer_amount else None,
        payer_currency=p.payer_amount.currency if p.payer_amount else None,
        rate=str(p.rate) if p.rate is not None else None,
        quote=p.quote,
        refunded=p.refunded,
        created_at=p.created_at,
        expires_at=p.expires_at,
        paid_at=p.paid_at,
        closed_at=p.closed_at,
        failure_code=p.failure_code,
        closed_by=p.closed_by,
        pending_shard=PENDING_SHARD if p.status is PaymentStatus.PENDING else None,
        next_check_at=(int(p.created_at.timestamp()) + FIRST_CHECK_AFTER_SECONDS
                       if p.status is PaymentStatus.PENDING else None),
        unreleased_by=p.merchant_id if p.status is PaymentStatus.SUCCEEDED and not p.released else None,
        documents=list(p.documents) or None,
        alert_bindings=[list(b) for b in p.alert_bindings] if p.alert_bindings is not None else None,
        allowed_channels=list(p.allowed_channels) or None,
        recon_day=recon_day(p.channel, p.paid_at) if p.status is PaymentStatus.SUCCEEDED and p.paid_at else None,
    )


def recon_day(channel: str, at) -> str:
    """The recon_by_day index key: channel#Beijing bill date."""
    return f"{channel}#{bill_day(at)}"


def from_item(m: PaymentModel) -> Payment:
    return Payment(
        id=m.payment_id,
        merchant_id=m.merchant_id,
        livemode=bool(m.livemode),
        amount=Money(int(m.amount), m.currency),
        channel=m.channel,
        flow=m.flow,
        status=PaymentStatus(m.status),
        channel_order_id=m.channel_order_id,
        merchant_reference=m.merchant_reference,
        description=m.description,
        created_at=m.created_at,
        expires_at=m.expires_at,
        fee=Money(int(m.fee), m.currency),
        channel_merchant=dict(m.channel_merchant or {}),
        channel_amount=Money(int(m.channel_amount), m.channel_currency) if m.channel_amount is not None else None,
        return_url=m.return_url,
        metadata=dict(m.metadata or {}),
        next_action=m.next_action,
        channel_transaction_id=m.channel_transaction_id,
        payer_amount=Money(int(m.payer_amount), m.payer_currency) if m.payer_amount is not None else None,
        rate=Decimal(m.rate) if m.rate else None,
        quote=m.quote,
        refunded=int(m.refunded or 0),
        fee_returned=int(m.fee_returned or 0),
        channel_returned=int(m.channel_returned or 0),
        pending_drawn=int(m.pending_drawn or 0),
        released=bool(m.released),
        paid_at=m.paid_at,
        closed_at=m.closed_at,
        failure_code=m.failure_code,
        documents=tuple(m.documents or ()),
        closed_by=m.closed_by,
        alert_bindings=tuple(tuple(b) for b in m.alert_bindings) if m.alert_bindings is not None else None,
        allowed_channels=tuple(m.allowed_channels or ()),
    )


def add_document(payment_id: str, doc: dict, max_documents: int) -> None:
    """Append a document record (read-modify-write guarded by the count we read)."""
    from pynamodb.exceptions import UpdateError

    item = PaymentModel.get(payment_id, consistent_read=True)
    docs = list(item.documents or [])
    if len(docs) >= max_documents:
        raise ValueError("too many documents")
    cond = PaymentModel.documents.does_not_exist() if not docs else (PaymentModel.documents == docs)
    try:
        item.update(actions=[PaymentModel.documents.set(docs + [doc])], condition=cond)
    except UpdateError:
        raise ValueError("documents changed meanwhile") from None




def get(payment_id: str) -> Payment | None:
    try:
        return from_item(PaymentModel.get(payment_id, consistent_read=True))
    except DoesNotExist:
        return None


def by_merchant_reference(merchant_id: str, reference: str, limit: int = 100) -> list[Payment]:
    return [from_item(m) for m in PaymentModel.by_merchant_reference.query(
        merchant_id, PaymentModel.merchant_reference == reference, limit=limit)]


def pending_due(now_epoch: int, limit: int = 100, after: dict | None = None) -> tuple[list[str], dict | None]:
    """One page of pending payments whose next check is due, soonest first: (ids, key of the next page)."""
    result = PaymentModel.pending_by_next_check.query(
        PENDING_SHARD, PaymentModel.next_check_at <= now_epoch, limit=limit, last_evaluated_key=after)
    ids = [m.payment_id for m in result]
    return ids, result.last_evaluated_key


def check_again_at(payment_id: str, at_epoch: int) -> bool:
    """Schedule the chase's next look at a payment that is still pending (False: it moved on meanwhile)."""
    return applied(lambda: PaymentModel(payment_id).update(
        actions=[PaymentModel.next_check_at.set(at_epoch)],
        condition=PaymentModel.status == PaymentStatus.PENDING.value))




def refund_to_item(r: Refund) -> RefundModel:
    return RefundModel(
        r.id,
        payment_id=r.payment_id,
        merchant_id=r.merchant_id,
        amount=r.amount.amount,
        currency=r.amount.currency,
        reason=r.reason,
        status=r.status.value,
        channel_refund_id=r.channel_refund_id,
        channel_refund_ref=r.channel_refund_ref,
        failure_code=r.failure_code,
        channel_amount=r.channel_amount.amount if r.channel_amount else None,
        channel_currency=r.channel_amount.currency if r.channel_amount else None,
        draw=dict(r.draw),
        borrowed=r.borrowed or None,
        created_at=r.created_at,
        processing_shard=PENDING_SHARD if r.status is RefundStatus.PROCESSING else None,
        livemode=r.livemode,
        channel=r.channel or None,
        recon_day=recon_day(r.channel, r.created_at) if r.channel else None,
    )


def refund_from_item(m: RefundModel) -> Refund:
    return Refund(
        id=m.refund_id,
        payment_id=m.payment_id,
        merchant_id=m.merchant_id,
        amount=Money(int(m.amount), m.currency),
        reason=m.reason or "",
        status=RefundStatus(m.status),
        channel_refund_id=m.channel_refund_id,
        created_at=m.created_at,
        channel_refund_ref=m.channel_refund_ref,
        failure_code=m.failure_code,
        channel_amount=Money(int(m.channel_amount), m.channel_currency) if m.channel_amount is not None else None,
        draw=dict(m.draw or {}),
        livemode=True if m.livemode is None else bool(m.livemode),
        borrowed=int(m.borrowed or 0),
        channel=m.channel or "",
    )


def get_refund(refund_id: str) -> tuple[Refund, dict[str, int]] | None:
    try:
        m = RefundModel.get(refund_id, consistent_read=True)
    except DoesNotExist:
        return None
    return refund_from_item(m), dict(m.draw or {})


# Processing refunds the chase could not settle past their limit (each has an ops record) move to their
# own shard of the processing index, so however many there are they never hide a newer refund.
ASIDE_SHARD = "aside"


def processing_refunds_before(before, limit: int = 500, aside: bool = False) -> list[str]:
    return [m.refund_id for m in RefundModel.processing.query(
        ASIDE_SHARD if aside else PENDING_SHARD, RefundModel.created_at < before, limit=limit)]


def set_refund_aside(refund_id: str) -> bool:
    """Move a still-processing refund to the aside shard (it stays processing; settling it clears the shard)."""
    return applied(lambda: RefundModel(refund_id).update(
        actions=[RefundModel.processing_shard.set(ASIDE_SHARD)],
        condition=RefundModel.status == RefundStatus.PROCESSING.value))


def refunds_of(payment_id: str) -> list[Refund]:
    return [refund_from_item(m) for m in RefundModel.by_payment.query(payment_id)]
