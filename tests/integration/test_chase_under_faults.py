"""The chase under faults (issue 13): a payment is closed only when nobody can pay it any more, and every
pending payment is looked at however many old ones cannot be resolved."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote_plus, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from chalicelib import clock, http
from chalicelib.domain.fx import Rate
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.money import Money
from chalicelib.services import chase, fx, merchants
from chalicelib.store import payments as payment_store
from chalicelib.store.models import BalanceModel, EventModel, OpsRecordModel, PaymentModel, PostingModel
from tests.integration.helpers import MerchantApi, new_merchant, shopper_pays
from tests.integration.test_chase_job import lose_callbacks
from tests.support.jobs import scheduled
from tests.support.transport import ChaliceAdapter

BASE = "http://kauri.test"

ALIPAY_IDS = {"secondary_merchant_id": "NZSHOP0001", "secondary_merchant_name": "Kiwi Wool Shop",
              "secondary_merchant_industry": "5699"}


@pytest.fixture(autouse=True)
def _slot_aligned_clock(aws):
    clock.freeze(datetime(2026, 11, 25, 2, 0, 5, tzinfo=timezone.utc))


@pytest.fixture
def shop(client):
    m = merchants.create_merchant("Kiwi Wool Shop", "NZD", fee_bps=250, channels={"alipay": ALIPAY_IDS})
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


def alipay_web_payment(shop) -> dict:
    r = shop.post("/v1/payments", {"amount": 8800, "currency": "NZD", "channel": "alipay", "flow": "web",
                                   "merchant_reference": "W-1", "description": "Merino scarf",
                                   "return_url": "https://shop.example.nz/thanks"})
    assert r.status_code == 201, r.body
    return r.json_body


def open_cashier(client, payment):
    url = urlsplit(payment["next_action"]["url"])
    return client.http.get(url.path + "?" + url.query)


def status(api, payment_id) -> str:
    return api.get(f"/v1/payments/{payment_id}").json_body["status"]


def test_alipay_web_payment_opened_late_and_paid_after_our_expiry_is_credited_not_closed(shop, client):
    p = alipay_web_payment(shop)                     # expires in 30 minutes
    clock.advance(timedelta(minutes=25))
    assert open_cashier(client, p).status_code == 200   # Alipay's trade and its 30m timeout start now
    clock.advance(timedelta(minutes=10))             # minute 35: ours expired; Alipay still says "not found"
    out = scheduled(client, "chase_payments")
    assert out["checked"] == 1 and out["closed"] == 0 and out["still_pending"] == 1
    assert status(shop, p["id"]) == "pending"
    clock.advance(timedelta(minutes=5))              # minute 40: the shopper pays
    r = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"]}).encode())
    assert r.status_code == 200, r.body
    assert status(shop, p["id"]) == "succeeded"
    assert [r for r in OpsRecordModel.scan() if r.kind == "late_success_callback"] == []


def test_unopened_alipay_web_payment_is_closed_after_its_hard_deadline_and_its_link_no_longer_opens(shop, client):
    p = alipay_web_payment(shop)
    created = PaymentModel.get(p["id"])
    from chalicelib import channels

    deadline = channels.get("alipay").unknown_order_payable_until("web", created.created_at, created.expires_at)
    # 30 minutes to open the cashier, then Alipay's own 30m timeout, plus the clock margin.
    assert deadline == created.created_at + timedelta(minutes=62)
    clock.advance(timedelta(minutes=61))
    assert scheduled(client, "chase_payments")["still_pending"] == 1
    assert status(shop, p["id"]) == "pending"
    clock.advance(timedelta(minutes=5))
    out = scheduled(client, "chase_payments")
    assert out["closed"] == 1
    assert status(shop, p["id"]) == "closed"
    page = open_cashier(client, p)                   # the signed link is past its login window
    assert b"TRADE_LOGIN_WINDOW_EXPIRED" in page.body


def test_alipay_trade_opened_but_unpaid_is_closed_once_alipay_lapses_it(shop, client):
    p = alipay_web_payment(shop)
    clock.advance(timedelta(minutes=29))
    open_cashier(client, p)
    r = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"], "outcome": "fail"}).encode())
    assert r.status_code == 200                      # logged in, did not pay: the trade exists, unpaid
    clock.advance(timedelta(minutes=6))              # ours expired; Alipay's trade runs to minute 59
    out = scheduled(client, "chase_payments")
    assert out["still_pending"] == 1 and out["errors"] == 0
    clock.advance(timedelta(minutes=30))
    assert scheduled(client, "chase_payments")["closed"] == 1
    assert status(shop, p["id"]) == "closed"


@pytest.fixture
def school(client):
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.30"), now, now))
    m = merchants.create_merchant("Auckland Language School", "NZD", fee_bps=100, channels={"payease": {}})
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


def test_expired_payease_payment_is_closed_on_kauris_clock_and_leaves_the_pending_set(school, client):
    r = school.post("/v1/payments", {"amount": 250000, "currency": "NZD", "channel": "payease", "flow": "bank",
                                     "merchant_reference": "INV-1", "description": "Term 1 tuition",
                                     "return_url": "https://school.example.nz/paid"})
    p = r.json_body
    action = p["next_action"]["channel_action"]
    from urllib.parse import urlencode

    submitted = client.http.post(urlsplit(action["url"]).path,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"},
                                 body=urlencode(action["fields"]).encode())
    assert submitted.status_code == 200              # the payer submitted the form, then walked away
    clock.advance(timedelta(minutes=20))
    assert scheduled(client, "chase_payments")["still_pending"] == 1
    clock.advance(timedelta(minutes=15))             # past the payment's expiry
    out = scheduled(client, "chase_payments")
    assert out["closed"] == 1 and out["errors"] == 0
    assert status(school, p["id"]) == "closed"
    assert PaymentModel.get(p["id"]).pending_shard is None


def _old_pending_wechat(merchant_id: str, n: int, created: datetime) -> None:
    """Orders WeChat does not know yet, valid for a day: unresolvable until they expire."""
    with PaymentModel.batch_write() as batch:
        for i in range(n):
            pid = f"pay_old{i:017d}"
            batch.save(payment_store.to_item(Payment(
                id=pid, merchant_id=merchant_id, livemode=True, amount=Money(1000, "NZD"), channel="wechat",
                flow="native", status=PaymentStatus.PENDING, channel_order_id=pid, merchant_reference=f"old-{i}",
                description="old", created_at=created, expires_at=created + timedelta(hours=24),
                fee=Money(20, "NZD"), channel_merchant={"sub_mch_id": "20000100"})))


def test_a_lost_wechat_callback_is_recovered_behind_more_than_500_unresolvable_old_payments(client):
    merchant = new_merchant(client)
    _old_pending_wechat(merchant.merchant.id, 520, clock.now() - timedelta(hours=3))
    p = merchant.create_payment(amount=4200).json_body
    lose_callbacks()
    assert shopper_pays(client, p)["delivered"] is False
    clock.advance(timedelta(minutes=5))
    out = scheduled(client, "chase_payments")
    assert out["succeeded"] == 1 and out["checked"] == 521 and out["still_pending"] == 520
    assert status(merchant, p["id"]) == "succeeded"
    # The old ones were moved back (a quarter of their age): the next run does not spend itself on them.
    clock.advance(timedelta(minutes=5))
    assert scheduled(client, "chase_payments")["checked"] == 0


class _Runs:
    """A job budget with room for `n` payments."""

    def __init__(self, n):
        self.n = n

    def allows(self, ms):
        self.n -= 1
        return self.n >= 0


def test_a_run_out_of_time_leaves_the_rest_first_in_line_for_the_next_run(client):
    merchant = new_merchant(client)
    _old_pending_wechat(merchant.merchant.id, 3, clock.now() - timedelta(hours=1))
    out = chase.chase_payments(budget=_Runs(2))
    assert out["checked"] == 2 and out["out_of_time"] is True
    clock.advance(timedelta(minutes=5))
    out = chase.chase_payments(budget=_Runs(1))
    assert out["checked"] == 1
    checked_at = sorted(int(m.next_check_at) for m in PaymentModel.scan())
    # every one of the three has now been looked at once and is due again later, none left behind
    assert all(at > int(clock.now().timestamp()) for at in checked_at)


class ShopperPaysBeforeCancel(BaseAdapter):
    """The Alipay sandbox gets our cancel, and the shopper's payment lands just before it."""

    def __init__(self, client, out_trade_no):
        super().__init__()
        self.client = client
        self.inner = ChaliceAdapter(client)
        self.out_trade_no = out_trade_no
        self.fired = 0

    def send(self, request, **kwargs):
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if "alipay.acquire.cancel" in unquote_plus(body) and not self.fired:
            self.fired += 1
            r = self.client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                                      body=json.dumps({"out_trade_no": self.out_trade_no}).encode())
            assert r.status_code == 200, r.body
        return self.inner.send(request, **kwargs)

    def close(self):
        pass


def in_store_payment(shop) -> dict:
    r = shop.post("/v1/payments", {"amount": 8800, "currency": "NZD", "channel": "alipay", "flow": "qr",
                                   "merchant_reference": "Q-1", "description": "Flat white x2"})
    assert r.status_code == 201, r.body
    return r.json_body


def test_a_close_that_alipay_turns_into_a_refund_books_the_payment_paid_then_refunded(shop, client):
    p = in_store_payment(shop)
    race = ShopperPaysBeforeCancel(client, p["channel_order_id"])
    http.mount(BASE + "/sandbox/alipay", race)
    r = shop.post(f"/v1/payments/{p['id']}/close")
    assert race.fired == 1
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_refunded"
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["amount_refunded"] == 8800
    refunds = shop.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]
    assert [(x["status"], x["amount"]) for x in refunds] == [("succeeded", 8800)]
    # Paid and then refunded in the books: the merchant keeps nothing, the receivable is back to zero.
    who = shop.merchant.id
    assert BalanceModel.get(f"M:{who}:NZD:pending").balance == 0
    kinds = sorted(x.kind for x in PostingModel.scan() if x.ref in (p["id"], refunds[0]["id"]))
    assert kinds == ["payment", "refund"]
    totals: dict = {}
    for posting in PostingModel.scan():
        for account, amount, currency in posting.legs:
            totals[account] = totals.get(account, 0) + amount
    assert totals["C:alipay:receivable:NZD"] == 0 and totals["P:fee_revenue:NZD"] == 0
    assert sum(totals.values()) == 0
    events = sorted(e.type for e in EventModel.scan() if p["id"] in e.payload)
    assert events == ["payment.succeeded", "refund.succeeded"]
    # Asking again changes nothing (the refund is booked once).
    http.mount(BASE + "/sandbox/alipay", ChaliceAdapter(client))
    again = shop.post(f"/v1/payments/{p['id']}/close")
    assert again.status_code == 409
    assert len(shop.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]) == 1


def test_an_expired_in_store_payment_paid_during_the_chases_cancel_is_booked_paid_then_refunded(shop, client):
    p = in_store_payment(shop)
    clock.advance(timedelta(minutes=31))
    http.mount(BASE + "/sandbox/alipay", ShopperPaysBeforeCancel(client, p["channel_order_id"]))
    # (the sandbox's own expiry would close the trade first: give it a longer life, as a slow Alipay might)
    from chalicelib.store import sandbox as sandbox_store

    sandbox_store.update(f"alipay#trade#{p['channel_order_id']}", lambda t: {**t, "expires_at": t["expires_at"] + 3600})
    out = scheduled(client, "chase_payments")
    assert out["succeeded"] == 1 and out["closed"] == 0
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["amount_refunded"] == 8800
    assert BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance == 0


class AlipayGoesQuiet(BaseAdapter):
    """Alipay answers `single_trade_query` once (the close's own look-up) and then cannot be reached."""

    def __init__(self, client):
        super().__init__()
        self.inner = ChaliceAdapter(client)
        self.queries = 0

    def send(self, request, **kwargs):
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if "single_trade_query" in unquote_plus(body) or "single_trade_query" in unquote_plus(request.url):
            self.queries += 1
            if self.queries > 1:
                raise requests.exceptions.ConnectionError("connection reset by peer (test)")
        return self.inner.send(request, **kwargs)

    def close(self):
        pass


def test_close_of_an_alipay_trade_paid_meanwhile_whose_follow_up_query_fails_is_503_then_chased(shop, client):
    p = alipay_web_payment(shop)
    assert open_cashier(client, p).status_code == 200
    lose_callbacks()
    r = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"]}).encode())
    assert r.status_code == 200, r.body
    quiet = AlipayGoesQuiet(client)
    http.mount(BASE + "/sandbox/alipay", quiet)
    r = shop.post(f"/v1/payments/{p['id']}/close")
    assert quiet.queries == 2                                   # paid, said the close's look-up; then silence
    assert r.status_code == 503 and r.json_body["error"]["code"] == "channel_unavailable", r.body
    assert status(shop, p["id"]) == "pending"
    http.mount(BASE + "/sandbox/alipay", ChaliceAdapter(client))
    clock.advance(timedelta(minutes=5))
    assert scheduled(client, "chase_payments")["succeeded"] == 1
    assert status(shop, p["id"]) == "succeeded"
