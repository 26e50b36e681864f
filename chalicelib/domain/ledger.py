"""Double-entry postings. Debits positive, credits negative; every posting sums to zero per currency.

Accounts (one per owner x currency x bucket), named as strings:
  M:{merchant}:{ccy}:pending | available | reserved   merchant balances (credit-normal liabilities)
  C:{channel}:receivable:{ccy}                         money the channel owes us (debit-normal asset)
  P:fee_revenue:{ccy}                                  our fee income
  P:fx_gain_loss:{ccy}                                 FX differences on CNY-priced payments
  S:suspense:{ccy}                                     money we cannot attribute yet
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from chalicelib.money import Money


class UnbalancedPosting(ValueError):
    pass


TEST_SUFFIX = ".test"


def owner(merchant_id: str, livemode: bool) -> str:
    """Whose merchant accounts a payment moves: test-mode money lives in separate books ("mch_x.test")."""
    return merchant_id if livemode else merchant_id + TEST_SUFFIX


def for_mode(posting: "Posting", livemode: bool) -> "Posting":
    """Test-mode postings touch test copies of the system accounts too (":test"), never the real ones."""
    if livemode:
        return posting
    legs = tuple(leg if is_merchant_account(leg.account) or leg.account.endswith(":test")
                 else Leg(leg.account + ":test", leg.amount, leg.currency) for leg in posting.legs)
    return Posting(posting.id, posting.kind, legs, posting.ref, posting.merchant_id, posting.memo)


def with_merchant_legs(posting: "Posting", legs: list["Leg"]) -> "Posting":
    """The same posting with its merchant legs replaced by `legs` (which must carry the same total, so it
    still balances): e.g. a refund's reversal crediting each bucket the part that belongs there now."""
    kept = tuple(l for l in posting.legs if not is_merchant_account(l.account))
    return Posting(posting.id, posting.kind, kept + tuple(legs), posting.ref, posting.merchant_id, posting.memo)


def merchant_account(merchant_id: str, currency: str, bucket: str) -> str:
    if bucket not in ("pending", "available", "reserved"):
        raise ValueError(bucket)
    return f"M:{merchant_id}:{currency}:{bucket}"


def receivable_account(channel: str, currency: str) -> str:
    return f"C:{channel}:receivable:{currency}"


def fee_account(currency: str) -> str:
    return f"P:fee_revenue:{currency}"


def fx_account(currency: str) -> str:
    return f"P:fx_gain_loss:{currency}"


def is_merchant_account(account: str) -> bool:
    return account.startswith("M:")


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int  # minor units; debit > 0, credit < 0
    currency: str


@dataclass(frozen=True)
class Posting:
    id: str                  # the business event id: one posting per event, ever
    kind: str
    legs: tuple[Leg, ...]
    ref: str                 # payment / refund id it belongs to
    merchant_id: str
    memo: str = ""

    def __post_init__(self):
        totals: dict[str, int] = defaultdict(int)
        for leg in self.legs:
            if type(leg.amount) is not int:
                raise UnbalancedPosting("leg amounts must be integers")
            totals[leg.currency] += leg.amount
        if any(totals.values()):
            raise UnbalancedPosting(f"posting {self.id} does not balance: {dict(totals)}")
        if not self.legs:
            raise UnbalancedPosting("empty posting")

    def reversed(self, new_id: str, kind: str, memo: str = "") -> "Posting":
        """The reversing posting: every leg with the opposite sign (fixes never edit)."""
        return Posting(new_id, kind, tuple(Leg(l.account, -l.amount, l.currency) for l in self.legs),
                       self.ref, self.merchant_id, memo)

    def merchant_deltas(self) -> dict[str, int]:
        """Change of each merchant balance (credit-normal: a credit raises the balance)."""
        out: dict[str, int] = defaultdict(int)
        for leg in self.legs:
            if is_merchant_account(leg.account):
                out[leg.account] -= leg.amount
        return {k: v for k, v in out.items() if v}


def payment_succeeded(posting_id: str, merchant_id: str, payment_id: str, channel: str,
                      amount: Money, fee: Money) -> Posting:
    """Dr channel receivable (gross); Cr merchant pending (net); Cr fee revenue (fee)."""
    legs = [
        Leg(receivable_account(channel, amount.currency), amount.amount, amount.currency),
        Leg(merchant_account(merchant_id, amount.currency, "pending"), -(amount.amount - fee.amount), amount.currency),
    ]
    if fee.amount:
        legs.append(Leg(fee_account(fee.currency), -fee.amount, fee.currency))
    return Posting(posting_id, "payment", tuple(legs), payment_id, merchant_id)


def quoted_payment_succeeded(posting_id: str, merchant_id: str, payment_id: str, channel: str,
                             amount: Money, received: Money, fee: Money) -> Posting:
    """A payment priced in `amount` (NZD) but received in another currency (CNY) at a locked quote.

    The channel owes us the CNY; the merchant is credited the NZD it invoiced (net of fee). The FX
    account holds both sides, so the markup (CNY received beyond the NZD credited) is its gain.
    """
    legs = (
        Leg(receivable_account(channel, received.currency), received.amount, received.currency),
        Leg(fx_account(received.currency), -received.amount, received.currency),
        Leg(fx_account(amount.currency), amount.amount, amount.currency),
        Leg(merchant_account(merchant_id, amount.currency, "pending"), -(amount.amount - fee.amount), amount.currency),
    ) + ((Leg(fee_account(fee.currency), -fee.amount, fee.currency),) if fee.amount else ())
    return Posting(posting_id, "payment", legs, payment_id, merchant_id)


def suspense_account(currency: str) -> str:
    return f"S:suspense:{currency}"


def unapplied_receipt(posting_id: str, merchant_id: str, ref: str, channel: str, received: Money) -> Posting:
    """Money a channel took that is credited to nobody (e.g. paid at an expired quote): Dr channel
    receivable, Cr suspense until it is returned to the payer (the reversal)."""
    legs = (Leg(receivable_account(channel, received.currency), received.amount, received.currency),
            Leg(suspense_account(received.currency), -received.amount, received.currency))
    return Posting(posting_id, "unapplied_receipt", legs, ref, merchant_id)


def refund(posting_id: str, merchant_id: str, refund_id: str, channel: str, amount: Money,
           draw: dict[str, int]) -> Posting:
    """Dr merchant buckets (as `draw` says, e.g. {"available": 300, "pending": 200}); Cr channel receivable."""
    if sum(draw.values()) != amount.amount:
        raise UnbalancedPosting("refund draw must add up to the refund amount")
    legs = [Leg(merchant_account(merchant_id, amount.currency, bucket), part, amount.currency)
            for bucket, part in draw.items() if part]
    legs.append(Leg(receivable_account(channel, amount.currency), -amount.amount, amount.currency))
    return Posting(posting_id, "refund", tuple(legs), refund_id, merchant_id)
