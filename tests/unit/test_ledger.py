import pytest

from chalicelib.domain import ledger
from chalicelib.money import Money


def test_payment_posting_balances_and_credits_merchant_net_of_fee():
    p = ledger.payment_succeeded("payment:pay_1", "mch_1", "pay_1", "wechat", Money(10000, "NZD"), Money(200, "NZD"))
    assert sum(l.amount for l in p.legs) == 0
    assert p.merchant_deltas() == {"M:mch_1:NZD:pending": 9800}
    accounts = {l.account: l.amount for l in p.legs}
    assert accounts["C:wechat:receivable:NZD"] == 10000
    assert accounts["P:fee_revenue:NZD"] == -200


def test_unbalanced_postings_are_refused():
    with pytest.raises(ledger.UnbalancedPosting):
        ledger.Posting("x", "k", (ledger.Leg("A", 100, "NZD"), ledger.Leg("B", -99, "NZD")), "r", "m")
    with pytest.raises(ledger.UnbalancedPosting):
        ledger.Posting("x", "k", (ledger.Leg("A", 100, "NZD"), ledger.Leg("B", -100, "AUD")), "r", "m")


def test_reversal_undoes_every_leg():
    p = ledger.payment_succeeded("payment:pay_1", "mch_1", "pay_1", "wechat", Money(10000, "NZD"), Money(200, "NZD"))
    r = p.reversed("rev", "reversal")
    assert r.merchant_deltas() == {"M:mch_1:NZD:pending": -9800}
    assert [l.amount for l in r.legs] == [-l.amount for l in p.legs]
