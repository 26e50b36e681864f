"""A merchant's static QR code: one printed code per store that any wallet can pay. Pure."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib.money import Money


@dataclass(frozen=True)
class QrCode:
    id: str
    merchant_id: str
    livemode: bool
    store_name: str
    currency: str
    created_at: datetime
    fixed_amount: int | None = None     # minor units of `currency`
    max_amount: int | None = None       # minor units of `currency`, per payment
    status: str = "active"              # active | disabled
    disabled_at: datetime | None = None
    replaced_by: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def amount_problem(self, amount: Money) -> str | None:
        """Why a shopper's amount cannot be paid with this code, or None."""
        if amount.currency != self.currency:
            return "currency"
        if self.fixed_amount is not None and amount.amount != self.fixed_amount:
            return "fixed"
        if amount.amount <= 0:
            return "too_small"
        if self.max_amount is not None and amount.amount > self.max_amount:
            return "too_large"
        return None
