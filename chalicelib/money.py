"""Money: integer minor units with an ISO 4217 code. Rates are Decimal. Every rounding is named."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 exponents for the currencies Kauri prices, settles or receives in.
EXPONENTS: dict[str, int] = {
    "NZD": 2, "AUD": 2, "CNY": 2, "USD": 2, "HKD": 2, "GBP": 2, "EUR": 2, "SGD": 2, "CAD": 2,
    "JPY": 0, "KRW": 0,
}
SETTLEMENT_CURRENCIES = ("NZD", "AUD")
RATE_SCALE = Decimal(10) ** 8  # WeChat and our storage: rate x 10^8 as an integer


_AMOUNT_TEXT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,12})?")   # ASCII digits only (a bare \\d takes any script's digits)


class MoneyError(ValueError):
    pass


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


@dataclass(frozen=True, order=True)
class Money:
    amount: int  # minor units
    currency: str

    def __post_init__(self):
        if type(self.amount) is not int:
            raise MoneyError("amount must be an integer number of minor units")
        exponent(self.currency)

    def __add__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def _same(self, other: "Money") -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise MoneyError("currency mismatch")

    def to_major_str(self) -> str:
        """'12.50' for Money(1250, 'NZD'); exact, no float."""
        exp = exponent(self.currency)
        q = Decimal(self.amount).scaleb(-exp)
        return f"{q:.{exp}f}"

    def as_dict(self) -> dict:
        return {"amount": self.amount, "currency": self.currency}

    @classmethod
    def from_major(cls, text: str, currency: str) -> "Money":
        """Parse '12.50' exactly. More decimals than the currency has is an error, not a rounding."""
        exp = exponent(currency)
        if not isinstance(text, str) or not _AMOUNT_TEXT.fullmatch(text.strip()):
            # Plain decimal notation only: no exponents ("1e3"), no NaN/Infinity, and at most 15 whole
            # digits, so Decimal's 28-digit context can never round an amount behind our back.
            raise MoneyError(f"not an amount: {text!r}")
        try:
            d = Decimal(text.strip())
        except InvalidOperation:
            raise MoneyError(f"not an amount: {text!r}") from None
        minor = d.scaleb(exp)
        if minor != minor.to_integral_value():
            raise MoneyError(f"{text!r} has more decimals than {currency} allows")
        return cls(int(minor), currency)


ROUNDINGS = {"HALF_UP": ROUND_HALF_UP, "FLOOR": ROUND_FLOOR, "CEILING": ROUND_CEILING}


def convert(money: Money, to_currency: str, rate: Decimal, rounding: str) -> Money:
    """money x rate (units of to_currency per one unit of money.currency), rounded to minor units."""
    if not isinstance(rate, Decimal) or rate <= 0:
        raise MoneyError("rate must be a positive Decimal")
    shift = exponent(to_currency) - exponent(money.currency)
    raw = (Decimal(money.amount) * rate).scaleb(shift)
    return Money(int(raw.to_integral_value(rounding=ROUNDINGS[rounding])), to_currency)


def rate_from_e8(value: int | str) -> Decimal:
    return Decimal(int(value)) / RATE_SCALE


def rate_to_e8(rate: Decimal) -> int:
    """Store a rate as an integer x 10^8 (ROUND_HALF_UP at the 8th decimal)."""
    return int((rate * RATE_SCALE).to_integral_value(rounding=ROUND_HALF_UP))


def bps_of(money: Money, bps: int, rounding: str = "HALF_UP") -> Money:
    """A basis-point share of an amount (fees: ROUND_HALF_UP, the Chinese-channel convention)."""
    raw = Decimal(money.amount) * Decimal(bps) / Decimal(10000)
    return Money(int(raw.to_integral_value(rounding=ROUNDINGS[rounding])), money.currency)


def minor_from_major(text: str, currency: str) -> int:
    """`Money.from_major(text, currency).amount`, with a fast path for the plain amounts statements carry.

    The fast path takes only a 2-decimal currency and text of the shape `[-]D[.F]`: D 1-13 ASCII
    digits, F 1-2 ASCII digits, nothing else (no spaces, '+', exponent, '_' or other digits), and
    does exact integer arithmetic on the digits. Everything else goes to `Money.from_major` itself,
    so the value, and the error for anything that is not an exact amount, are the same as from_major's.
    """
    if EXPONENTS.get(currency) == 2 and isinstance(text, str):
        whole, dot, frac = text.partition(".")
        negative = whole[:1] == "-"
        if negative:
            whole = whole[1:]
        places = len(frac)
        digits = whole + frac
        if (0 < len(whole) <= 13 and (places == 1 or places == 2 or not dot)
                and digits.isascii() and digits.isdigit()):
            minor = int(digits) * (1 if places == 2 else 10 if places == 1 else 100)
            return -minor if negative else minor
    return Money.from_major(text, currency).amount
