"""Merchant balances (kept in step with ledger entries) and the entries behind them."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.store.models import BalanceModel


def get_many(accounts: list[str]) -> dict[str, int]:
    """Balances of several accounts in one round trip, consistent reads (missing accounts are 0)."""
    out = {a: 0 for a in accounts}
    for item in BalanceModel.batch_get(accounts, consistent_read=True):
        out[item.account] = int(item.balance or 0)
    return out


def get(account: str) -> int:
    try:
        return int(BalanceModel.get(account, consistent_read=True).balance or 0)
    except DoesNotExist:
        return 0


def borrowed(pending_account: str) -> int:
    """The pending account's `borrowed` figure (services.balances), a consistent read."""
    try:
        return int(BalanceModel.get(pending_account, consistent_read=True).borrowed or 0)
    except DoesNotExist:
        return 0
