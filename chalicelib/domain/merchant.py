"""Merchants: who gets paid, in what currency, at what fee, through which channel accounts."""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.money import SETTLEMENT_CURRENCIES

ACTIVE = "active"
SUSPENDED = "suspended"       # ops stopped new payments; refunds, releases and payouts carry on
STATUSES = (ACTIVE, SUSPENDED)


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str
    settlement_currency: str
    fee_bps: int                                   # our fee in basis points of each payment
    channels: dict[str, dict[str, str]] = field(default_factory=dict)  # channel -> ids (sub_mch_id, ...)
    status: str = ACTIVE
    fx_markup_bps: int = 0                         # tuition quotes: markup over the channel rate
    allow_negative_balance: bool = False
    holding_days: int = 2
    min_payout: int = 2000
    bank_account: str | None = None
    # Staff alert bindings as ((binding_id, openid, store_name), ...), kept in step with the bindings
    # table so a payment can carry them without a read on the callback path. None: not known (an item
    # written before this field existed); readers then ask the bindings table.
    alert_bindings: tuple | None = ()
    legal_name: str | None = None                 # the company behind the trading name (`name`)

    def __post_init__(self):
        if self.settlement_currency not in SETTLEMENT_CURRENCIES:
            raise ValueError(f"settlement currency must be one of {SETTLEMENT_CURRENCIES}")
        if not 0 <= self.fee_bps <= 10000:
            raise ValueError("fee_bps out of range")

    @property
    def takes_payments(self) -> bool:
        return self.status == ACTIVE

    @property
    def has_money_flows(self) -> bool:
        """Refunds, releases and payouts: a suspended merchant's money still moves."""
        return self.status in STATUSES

    def channel_ids(self, channel: str) -> dict[str, str] | None:
        return self.channels.get(channel)
