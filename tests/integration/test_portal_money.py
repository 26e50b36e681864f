"""Portal Today, Payments (search, timeline, refunds) and Balance (statement) (issue 11), role by role."""
from __future__ import annotations

import csv
import io
import re

import pytest

from chalicelib import clock
from chalicelib.services import merchants
from chalicelib.services.merchants import DEMO_CHANNELS
from chalicelib.store import audit
from chalicelib.store.models import PaymentModel, RefundModel
from tests.integration.helpers import shopper_pays
from tests.integration.portal_helpers import owner_of, staff_member
from tests.integration.test_balances_and_withdrawals import THURSDAY
from tests.integration.test_portal_spotpay import ring_up


@pytest.fixture
def shop(client):
    clock.freeze(THURSDAY)
    merchant_id = merchants.create_merchant("Tui Honey", channels=dict(DEMO_CHANNELS),
                                            bank_account="01-0902-0068389-000").id
    owner = owner_of(client, merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    resp, _ = ring_up(cashier, "100.00", "wechat")
    payment_id = resp.headers["Location"].rsplit("/", 1)[1]
    shopper_pays(client, {"channel_order_id": PaymentModel.get(payment_id).channel_order_id})
    return merchant_id, owner, cashier, payment_id


def refund_form(browser, payment_id, amount, token=None):
    browser.get(f"/portal/payments/{payment_id}")
    token = token or re.search(r'name="refund_token" value="([^"]+)"', browser.text()).group(1)
    return browser.post(f"/portal/payments/{payment_id}/refund", {"amount": amount, "reason": "one jar broken",
                                                                   "refund_token": token}), token


def test_today_shows_takings_by_channel_and_store_in_nzd_and_cny_with_fees(shop):
    _, owner, cashier, _ = shop
    for who in (owner, cashier):
        assert who.get("/portal").status_code == 200
        text = who.text()
        assert 'id="today-total">NZD 100.00<' in text
        assert "<td>WeChat Pay</td><td>SpotPay</td><td>1</td><td>100.00</td>" in text
        assert "fees 2.00" in text                                     # 200 bps


def test_the_owner_finds_the_payment_sees_its_timeline_and_refunds_part_once_despite_a_double_click(shop):
    merchant_id, owner, _, payment_id = shop
    owner.get("/portal/payments")
    assert payment_id in owner.text()
    owner.get("/portal/payments?amount=100.00")
    assert payment_id in owner.text()
    owner.get("/portal/payments?amount=99.99")
    assert payment_id not in owner.text()
    owner.get(f"/portal/payments?q={payment_id}")
    assert payment_id in owner.text()
    owner.get(f"/portal/payments/{payment_id}")
    assert "event-created" in owner.text() and "event-paid" in owner.text()
    assert "payment.succeeded: pending" in owner.text()                   # its webhook, not yet delivered

    first, token = refund_form(owner, payment_id, "25.50")
    assert first.status_code == 303
    again, _ = refund_form(owner, payment_id, "25.50", token=token)       # the second click of a double click
    assert again.status_code == 303
    refunds = [r for r in RefundModel.scan() if r.payment_id == payment_id]
    assert [int(r.amount) for r in refunds] == [2550]
    assert int(PaymentModel.get(payment_id).refunded) == 2550
    owner.get(f"/portal/payments/{payment_id}")
    assert 'id="refunded">NZD 25.50<' in owner.text() and "event-refund_" in owner.text()
    entry = next(e for e in audit.recent(merchant_id) if e.action == "refund.created")
    assert entry.actor == "staff:owner@tuihoney.nz" and entry.details["refund"] == refunds[0].refund_id

    too_much, _ = refund_form(owner, payment_id, "80.00")
    assert too_much.status_code == 400 and "cannot be made" in owner.text()
    assert int(PaymentModel.get(payment_id).refunded) == 2550
    bad, _ = refund_form(owner, payment_id, "1.005")
    assert bad.status_code == 400


def test_a_manager_refunds_but_sees_no_bank_account_and_a_cashier_can_do_neither(client, shop):
    _, owner, cashier, payment_id = shop
    manager = staff_member(client, owner, "boss@tuihoney.nz", "manager")
    assert refund_form(manager, payment_id, "10.00")[0].status_code == 303
    manager.get("/portal/balance")
    assert 'id="bank"' not in manager.text() and "0068389" not in manager.text()
    owner.get("/portal/balance")
    assert 'id="bank">01-0902-•••••89-000<' in owner.text()

    assert cashier.get("/portal/payments").status_code == 403
    assert cashier.get(f"/portal/payments/{payment_id}").status_code == 403
    assert cashier.get("/portal/balance").status_code == 403
    assert cashier.get("/portal/balance/statement").status_code == 403
    cashier.get("/portal/spotpay")
    resp = cashier.post(f"/portal/payments/{payment_id}/refund", {"amount": "5.00", "refund_token": "x" * 24})
    assert resp.status_code == 403
    assert int(PaymentModel.get(payment_id).refunded) == 1000


def test_another_merchants_owner_can_neither_see_nor_refund_this_payment(client, shop):
    _, _, _, payment_id = shop
    other_id = merchants.create_merchant("Kea Cafe", channels=dict(DEMO_CHANNELS)).id
    other = owner_of(client, other_id, email="owner@keacafe.nz")
    assert other.get(f"/portal/payments/{payment_id}").status_code == 404
    other.get("/portal/payments")
    assert payment_id not in other.text()
    other.get("/portal/spotpay")
    resp = other.post(f"/portal/payments/{payment_id}/refund", {"amount": "5.00", "refund_token": "y" * 24})
    assert resp.status_code == 404
    assert int(PaymentModel.get(payment_id).refunded or 0) == 0


def test_the_monthly_statement_lists_every_balance_transaction_as_csv(shop):
    _, owner, _, payment_id = shop
    refund_form(owner, payment_id, "25.00")
    resp = owner.get("/portal/balance/statement?month=2026-11")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment;" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.body.decode())))
    assert {r["source"] for r in rows} >= {payment_id}
    pending = [r for r in rows if r["bucket"] == "pending"]
    assert [r["amount"] for r in pending][0] == "98.00"                # 100.00 less the 2.00 fee
    assert sum(int(r["amount"].replace(".", "")) for r in rows) == 9800 - 2450   # the refund less its fee share
    empty = owner.get("/portal/balance/statement?month=2026-10")
    assert empty.body.decode().count("\n") == 1
