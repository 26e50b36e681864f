"""The public JSON shape of our objects: what the API returns and what webhooks carry."""
from __future__ import annotations

from chalicelib import settings
from chalicelib.clock import iso
from chalicelib.domain.payment import Payment
from chalicelib.domain.refund import Refund


def payment(p: Payment) -> dict:
    out = {
        "id": p.id,
        "object": "payment",
        "livemode": p.livemode,
        "status": p.status.value,
        "amount": p.amount.amount,
        "currency": p.amount.currency,
        "amount_refunded": p.refunded,
        "fee": p.fee.amount,
        "channel": p.channel or None,           # None until the shopper chooses on the hosted checkout
        "flow": p.flow or None,
        "merchant_reference": p.merchant_reference,
        "description": p.description,
        "metadata": dict(p.metadata),
        "return_url": p.return_url,
        "channel_order_id": p.channel_order_id,
        "channel_transaction_id": p.channel_transaction_id,
        "next_action": p.next_action if p.status.value == "pending" else None,
        "pay_url": f"{settings.get().public_base_url}/pay/{p.id}",  # the hosted checkout page
        "created": iso(p.created_at),
        "expires_at": iso(p.expires_at),
        "paid_at": iso(p.paid_at) if p.paid_at else None,
        "closed_at": iso(p.closed_at) if p.closed_at else None,
        "failure_code": p.failure_code,
    }
    if p.channel_amount is not None:
        out["channel_amount"] = p.channel_amount.as_dict()
    if p.payer_amount is not None:
        out["payer_amount"] = p.payer_amount.as_dict()
    if p.rate is not None:
        out["exchange_rate"] = str(p.rate)
    if p.quote is not None:
        out["quote"] = dict(p.quote)
    if p.allowed_channels:
        out["allowed_channels"] = list(p.allowed_channels)
    if p.documents:
        out["documents"] = [{k: d[k] for k in ("id", "filename", "content_type", "size", "created")}
                            for d in p.documents]
    return out


def refund(r: Refund) -> dict:
    return {
        "id": r.id,
        "object": "refund",
        "livemode": r.livemode,
        "payment": r.payment_id,
        "status": r.status.value,
        "amount": r.amount.amount,
        "currency": r.amount.currency,
        "reason": r.reason,
        "channel_refund_id": r.channel_refund_id,
        "created": iso(r.created_at),
        "failure_code": r.failure_code,
    }
