"""Merchant funds after a payment: release (pending -> available) and withdrawal (available -> bank).

Postings (money-core §2.6), debit > 0, credit < 0:
  release             Dr M:pending          Cr M:available
  withdrawal          Dr M:available        Cr M:reserved
  withdrawal_sent     Dr M:reserved         Cr X:payout_clearing
  withdrawal_paid     Dr X:payout_clearing  Cr B:settlement_bank
  withdrawal_reversal Dr M:reserved         Cr M:available        (failed before the bank paid)
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime

from chalicelib.domain import ledger

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def payout_clearing_account(currency: str) -> str:
    return f"X:payout_clearing:{currency}"


def settlement_bank_account(currency: str) -> str:
    return f"B:settlement_bank:{currency}"


# ---- release ---------------------------------------------------------------------------------
def release_amount(net: int, drawn_from_pending: int, pending_balance: int) -> int:
    """What a payment's release moves to available.

    Its net, less what its own live refunds already took from pending, and never more than pending
    holds (refunds of other payments may have drawn on this payment's money first).
    """
    return max(0, min(net - drawn_from_pending, pending_balance))


def release_posting(merchant_id: str, payment_id: str, currency: str, amount: int) -> ledger.Posting:
    return ledger.Posting(f"release:{payment_id}", "release", (
        ledger.Leg(ledger.merchant_account(merchant_id, currency, "pending"), amount, currency),
        ledger.Leg(ledger.merchant_account(merchant_id, currency, "available"), -amount, currency),
    ), payment_id, merchant_id)


# ---- withdrawal ------------------------------------------------------------------------------
class WithdrawalStatus(str, enum.Enum):
    FILED = "filed"      # funds reserved, in the day's bank batch file
    PAID = "paid"        # the bank paid the batch: reserved -> clearing -> bank
    FAILED = "failed"    # the credit did not happen: reserved -> available again


class InvalidWithdrawalTransition(Exception):
    pass


_NEXT = {WithdrawalStatus.FILED: {WithdrawalStatus.PAID, WithdrawalStatus.FAILED}}


@dataclass(frozen=True)
class Withdrawal:
    id: str
    merchant_id: str
    amount: int                  # minor units of `currency`
    currency: str
    bank_account: str            # 16 digits, as the bank file carries it
    batch_id: str
    period: str                  # the NZ date (YYYY-MM-DD) the withdrawal belongs to
    status: WithdrawalStatus
    created_at: datetime
    failure_reason: str | None = None
    settled_at: datetime | None = None

    def move(self, target: WithdrawalStatus, at: datetime, reason: str | None = None) -> "Withdrawal":
        if target not in _NEXT.get(self.status, set()):
            raise InvalidWithdrawalTransition(f"withdrawal cannot move from {self.status.value} to {target.value}")
        return replace(self, status=target, settled_at=at, failure_reason=reason)

    @property
    def bank_reference(self) -> str:
        """The 12-character reference on both bank statements (underscore is not a safe BECS character)."""
        return self.id.replace("_", "-")


def period_key(merchant_id: str, day: date) -> str:
    return f"{merchant_id}#{day.isoformat()}"


def withdrawal_id(merchant_id: str, day: date, attempt: int = 0) -> str:
    """A short id derived from merchant#date (and the attempt, after a clash).

    12 characters in all: it is also the bank reference, and those fields hold 12. With ~46 bits two
    merchant-days can clash; uniqueness per merchant and day is the period key's job (store), and a
    clash with another merchant-day's id only means trying `attempt + 1`.
    """
    seed = period_key(merchant_id, day) + (f"#{attempt}" if attempt else "")
    n = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    out = ""
    for _ in range(9):
        n, r = divmod(n, 36)
        out += _B36[r]
    return "wd_" + out


def batch_id(day: date, currency: str, merchant_id: str | None = None) -> str:
    """The day's batch, or a hand run's own batch for one merchant (never the day's shared one)."""
    base = f"wdb_{day.strftime('%Y%m%d')}_{currency.lower()}"
    return f"{base}_{merchant_id}" if merchant_id else base


def withdrawal_posting(w: Withdrawal) -> ledger.Posting:
    cur = w.currency
    return ledger.Posting(f"withdrawal:{w.id}", "withdrawal", (
        ledger.Leg(ledger.merchant_account(w.merchant_id, cur, "available"), w.amount, cur),
        ledger.Leg(ledger.merchant_account(w.merchant_id, cur, "reserved"), -w.amount, cur),
    ), w.id, w.merchant_id)


def paid_postings(w: Withdrawal) -> tuple[ledger.Posting, ledger.Posting]:
    """The file went out and the bank paid it: reserved -> payout clearing -> settlement bank."""
    cur = w.currency
    clearing = payout_clearing_account(cur)
    sent = ledger.Posting(f"withdrawal_sent:{w.id}", "withdrawal_sent", (
        ledger.Leg(ledger.merchant_account(w.merchant_id, cur, "reserved"), w.amount, cur),
        ledger.Leg(clearing, -w.amount, cur),
    ), w.id, w.merchant_id)
    paid = ledger.Posting(f"withdrawal_paid:{w.id}", "withdrawal_paid", (
        ledger.Leg(clearing, w.amount, cur),
        ledger.Leg(settlement_bank_account(cur), -w.amount, cur),
    ), w.id, w.merchant_id)
    return sent, paid


def reversal_posting(w: Withdrawal, reason: str) -> ledger.Posting:
    return withdrawal_posting(w).reversed(f"withdrawal_reversal:{w.id}", "withdrawal_reversal", memo=reason[:200])
