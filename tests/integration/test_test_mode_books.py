"""Test-mode money never mixes with live money: separate books, separate visibility, no payouts."""
from __future__ import annotations

from chalicelib.services import merchants
from chalicelib.store.models import BalanceModel, PostingModel
from tests.integration.helpers import MerchantApi, shopper_pays


def test_test_and_live_payments_land_in_separate_books(client):
    m = merchants.create_merchant("Both Modes Ltd", "NZD", fee_bps=200, channels={"wechat": {"sub_mch_id": "20000100"}})
    live = MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)
    test = MerchantApi(client, merchants.issue_key(m.id, livemode=False), m)
    pl = live.create_payment(amount=1000).json_body
    pt = test.create_payment(amount=1000, merchant_reference="t-1").json_body
    shopper_pays(client, pl)
    shopper_pays(client, pt)
    assert BalanceModel.get(f"M:{m.id}:NZD:pending").balance == 980
    assert BalanceModel.get(f"M:{m.id}.test:NZD:pending").balance == 980
    test_legs = {a for a, _, _ in PostingModel.get(f"payment:{pt['id']}").legs}
    assert test_legs == {f"M:{m.id}.test:NZD:pending", "C:wechat:receivable:NZD:test", "P:fee_revenue:NZD:test"}
    assert live.get("/v1/balance").json_body["balances"][0]["pending"] == 980
    assert test.get("/v1/balance").json_body["livemode"] is False
    # each key sees only its own mode's payments
    assert test.get(f"/v1/payments/{pl['id']}").status_code == 404
    assert live.get(f"/v1/payments/{pt['id']}").status_code == 404
    # a test-mode refund draws on test money only
    r = test.post(f"/v1/payments/{pt['id']}/refunds", {"amount": 1000})
    assert r.status_code == 201, r.body
    assert BalanceModel.get(f"M:{m.id}:NZD:pending").balance == 980
    assert BalanceModel.get(f"M:{m.id}.test:NZD:pending").balance == 0
