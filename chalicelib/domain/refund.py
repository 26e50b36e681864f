"""Refunds: a partial or full return of a succeeded payment."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.money import Money


class RefundStatus(str, enum.Enum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundNotAllowed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    merchant_id: str
    amount: Money
    reason: str
    status: RefundStatus
    channel_refund_id: str
    created_at: datetime
    channel_refund_ref: str | None = None
    failure_code: str | None = None
    channel_amount: Money | None = None   # what the channel returns, when it charged another currency
    draw: dict = field(default_factory=dict)  # merchant buckets the refund was taken from {"available": n, ...}
    livemode: bool = True                   # its payment's mode
    borrowed: int = 0   # of draw["pending"], taken from other payments' unreleased money (payment released)
    channel: str = ""                     # the payment's channel: reconciliation reads a channel's refunds by day


def check_refund(payment: Payment, amount: Money) -> None:
    """A merchant can refund only a succeeded payment, and never more than it was paid in total."""
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise RefundNotAllowed("payment_not_succeeded", "only a succeeded payment can be refunded")
    if amount.currency != payment.amount.currency:
        raise RefundNotAllowed("currency_mismatch", "refund currency must equal the payment currency")
    if amount.amount <= 0:
        raise RefundNotAllowed("amount_invalid", "refund amount must be positive")
    if amount.amount > payment.refundable:
        raise RefundNotAllowed(
            "amount_exceeds_refundable",
            f"refund of {amount.amount} exceeds the {payment.refundable} still refundable",
        )
