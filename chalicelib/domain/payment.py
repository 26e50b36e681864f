"""Payment and its state machine. Pure: no storage, no HTTP."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from chalicelib.money import Money


class PaymentStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


# Forward-only: a payment leaves `pending` once and never comes back.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED}),
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.CLOSED: frozenset(),
}

# The one way back from an ended payment: money the channel verifiably took for a payment Kauri had
# closed or failed is applied (services.callbacks documents the rule). Never from succeeded.
LATE_SUCCESS_FROM = frozenset({PaymentStatus.CLOSED, PaymentStatus.FAILED})


class InvalidTransition(Exception):
    def __init__(self, current: PaymentStatus, target: PaymentStatus):
        super().__init__(f"payment cannot move from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]


@dataclass(frozen=True)
class Payment:
    id: str
    merchant_id: str
    livemode: bool
    amount: Money
    channel: str
    flow: str
    status: PaymentStatus
    channel_order_id: str
    merchant_reference: str
    description: str
    created_at: datetime
    expires_at: datetime
    fee: Money                                  # our fee, fixed when the payment is created
    channel_merchant: dict[str, str] = field(default_factory=dict)  # e.g. {"sub_mch_id": ...}
    channel_amount: Money | None = None         # what the channel was asked for, if not `amount` (PayEase CNY)
    return_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    next_action: dict[str, Any] | None = None
    channel_transaction_id: str | None = None
    payer_amount: Money | None = None
    rate: Decimal | None = None                 # payer currency per unit of `amount`
    quote: dict[str, Any] | None = None         # locked FX quote (tuition)
    refunded: int = 0                           # minor units of `amount.currency` refunded or in flight
    fee_returned: int = 0                       # of `fee`, handed back by live refunds
    channel_returned: int = 0                   # of `channel_amount`, asked back by live refunds
    pending_drawn: int = 0                      # taken from pending by live refunds before the release
    released: bool = False                      # release_funds moved the net from pending to available
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    failure_code: str | None = None             # why it failed; on a pending payment, why the last attempt did
    documents: tuple = ()                       # supporting documents (dicts: id, filename, key, ...)
    closed_by: str | None = None                # who ended it: "merchant", "clock" (expired) or "channel"
    # The merchant's staff alert bindings when it was created ((binding_id, openid, store_name), ...), so
    # the success transaction writes its alerts without reading the bindings; None: not carried (older item).
    alert_bindings: tuple | None = None
    # Created without a channel (channel == ""): the shopper picks one of these on the hosted checkout.
    allowed_channels: tuple[str, ...] = ()

    @property
    def channel_chosen(self) -> bool:
        return bool(self.channel)

    def transition(self, target: PaymentStatus, **changes) -> "Payment":
        if not can_transition(self.status, target):
            raise InvalidTransition(self.status, target)
        return replace(self, status=target, **changes)

    def ended(self, by: str, at: datetime) -> "Payment":
        """Nobody can pay it any more: `failed` if its last attempt failed (the reason was kept while it
        stayed payable), else `closed`. `by`: merchant | clock | channel."""
        if self.failure_code and by != "merchant":
            return self.transition(PaymentStatus.FAILED, closed_at=at, closed_by=by)
        return self.transition(PaymentStatus.CLOSED, closed_at=at, failure_code=None, closed_by=by)

    def late_success(self, **changes) -> "Payment":
        """Succeeded after all: the channel took the money for a payment we had closed or failed."""
        if self.status not in LATE_SUCCESS_FROM:
            raise InvalidTransition(self.status, PaymentStatus.SUCCEEDED)
        return replace(self, status=PaymentStatus.SUCCEEDED, **changes)

    @property
    def own_pending(self) -> int:
        """What of its net is still in pending as its own money: 0 once released, else the net less what
        refunds have drawn from it."""
        return 0 if self.released else max(0, self.amount.amount - self.fee.amount - self.pending_drawn)

    @property
    def refundable(self) -> int:
        if self.status is not PaymentStatus.SUCCEEDED:
            return 0
        return self.amount.amount - self.refunded
