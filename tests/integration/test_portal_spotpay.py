"""SpotPay (issue 11): the cashier's counter screen, from amount to paid, once per sale."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from chalicelib import clock
from chalicelib.services import merchants
from chalicelib.services.merchants import DEMO_CHANNELS
from chalicelib.store.models import PaymentModel
from tests.integration.helpers import shopper_pays
from tests.integration.portal_helpers import owner_of, staff_member
from tests.integration.test_balances_and_withdrawals import THURSDAY
from tests.support.jobs import by_hand


@pytest.fixture
def shop(client):
    clock.freeze(THURSDAY)
    merchant_id = merchants.create_merchant("Tui Honey", channels=dict(DEMO_CHANNELS)).id
    owner = owner_of(client, merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    return merchant_id, owner, cashier


def ring_up(cashier, amount, wallet, sale=None):
    cashier.get("/portal/spotpay")
    sale = sale or re.search(r'name="sale" value="([^"]+)"', cashier.text()).group(1)
    return cashier.post("/portal/spotpay", {"amount": amount, "wallet": wallet, "sale": sale}), sale


def test_a_cashier_rings_up_a_wechat_sale_and_the_screen_turns_to_paid_by_itself(client, shop):
    merchant_id, _, cashier = shop
    resp, _ = ring_up(cashier, "12.50", "wechat")
    assert resp.status_code == 303
    sale_url = resp.headers["Location"]
    page = cashier.get(sale_url)
    text = cashier.text()
    assert page.status_code == 200 and 'data-state="waiting"' in text
    assert '<meta http-equiv="refresh" content="2">' in text and "<svg" in text and "NZD 12.50" in text
    payment_id = sale_url.rsplit("/", 1)[1]
    p = PaymentModel.get(payment_id)
    assert (int(p.amount), p.channel, p.flow, p.merchant_id) == (1250, "wechat", "native", merchant_id)
    assert p.metadata["cashier"] == "till@tuihoney.nz"

    shopper_pays(client, {"channel_order_id": p.channel_order_id})
    cashier.get(sale_url)
    assert 'data-state="paid"' in cashier.text() and "refresh" not in cashier.text()
    assert 'id="new-sale"' in cashier.text()


def test_a_double_tap_on_the_wallet_button_makes_one_payment(client, shop):
    _, _, cashier = shop
    first, sale = ring_up(cashier, "8.00", "alipay")
    cashier.get("/portal/spotpay")
    second, _ = ring_up(cashier, "8.00", "alipay", sale=sale)
    assert first.headers["Location"] == second.headers["Location"]
    assert len([p for p in PaymentModel.scan() if p.merchant_reference == f"spotpay-{sale}"]) == 1


def test_either_wallet_shows_one_code_that_opens_our_checkout_and_an_unpaid_sale_expires(client, shop):
    _, _, cashier = shop
    resp, _ = ring_up(cashier, "20", "either")
    payment_id = resp.headers["Location"].rsplit("/", 1)[1]
    p = PaymentModel.get(payment_id)
    assert p.channel == "" and set(p.allowed_channels) == {"wechat", "alipay"}
    cashier.get(resp.headers["Location"])
    assert 'data-state="waiting"' in cashier.text()
    clock.advance(timedelta(minutes=6))
    cashier.get(resp.headers["Location"])
    assert 'data-state="expired"' in cashier.text()


@pytest.mark.parametrize("typed", ["12.505", "1e3", "-5", "0", "", "12,50", "١٢"])
def test_amounts_are_parsed_as_exact_decimal_text(client, shop, typed):
    _, _, cashier = shop
    resp, _ = ring_up(cashier, typed, "wechat")
    assert resp.status_code == 400 and "Type an amount like 12.50." in cashier.text()
    assert list(PaymentModel.scan()) == []


def test_another_merchants_cashier_cannot_see_a_sale(client, shop):
    _, _, cashier = shop
    resp, _ = ring_up(cashier, "5.00", "wechat")
    other_id = merchants.create_merchant("Kea Cafe", channels=dict(DEMO_CHANNELS)).id
    other_owner = owner_of(client, other_id, email="owner@keacafe.nz")
    assert other_owner.get(resp.headers["Location"]).status_code == 404


def test_a_suspended_merchants_counter_takes_no_sale(client, shop):
    merchant_id, _, cashier = shop
    by_hand(client, "suspend_merchant", {"request_id": "s-1", "merchant_id": merchant_id, "reason": "review"})
    resp, _ = ring_up(cashier, "5.00", "wechat")
    assert resp.status_code == 409 and list(PaymentModel.scan()) == []
