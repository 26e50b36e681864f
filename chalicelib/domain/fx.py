"""FX quotes: a channel rate plus the merchant's markup, locked for a while. Pure arithmetic."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chalicelib.money import Money, convert


@dataclass(frozen=True)
class Rate:
    channel: str
    currency: str            # the foreign currency (NZD, AUD)
    rate: Decimal            # CNY per one unit of `currency`
    source_time: datetime    # when the channel published it
    fetched_at: datetime


@dataclass(frozen=True)
class Quote:
    id: str
    amount: Money            # what the merchant invoiced (NZD)
    cny: Money               # what the payer is asked for
    base_rate: Decimal       # the channel rate the quote started from
    markup_bps: int
    rate: Decimal            # base_rate x (1 + markup)
    rate_source: str
    created_at: datetime
    expires_at: datetime

    def as_dict(self) -> dict:
        return {"id": self.id, "amount": self.amount.amount, "currency": self.amount.currency,
                "cny_amount": self.cny.amount, "cny_currency": self.cny.currency, "base_rate": str(self.base_rate),
                "markup_bps": self.markup_bps, "rate": str(self.rate), "rate_source": self.rate_source,
                "created": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    @classmethod
    def from_dict(cls, d: dict) -> "Quote":
        from chalicelib.clock import parse_iso

        return cls(d["id"], Money(int(d["amount"]), d["currency"]), Money(int(d["cny_amount"]), d["cny_currency"]),
                   Decimal(d["base_rate"]), int(d["markup_bps"]), Decimal(d["rate"]), d["rate_source"],
                   parse_iso(d["created"]), parse_iso(d["expires_at"]))


def marked_up(base: Decimal, markup_bps: int) -> Decimal:
    return base * (Decimal(10000 + markup_bps) / Decimal(10000))


def quote_cny(amount: Money, base_rate: Decimal, markup_bps: int) -> tuple[Decimal, Money]:
    """The payer's CNY for an invoice: rate with markup, ROUND_CEILING to the fen (never short-charge)."""
    rate = marked_up(base_rate, markup_bps)
    return rate, convert(amount, "CNY", rate, "CEILING")
