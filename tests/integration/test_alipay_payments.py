"""Alipay through the merchant API: redirect/QR, the shopper pays in the sandbox, exactly-once callbacks."""
from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from chalicelib import clock, http
from chalicelib.channels.alipay import sandbox as alipay_sandbox
from chalicelib.services import merchants
from chalicelib.store.models import BalanceModel, OpsRecordModel, PaymentModel, PostingModel
from tests.integration.helpers import MerchantApi
from tests.support.transport import ChaliceAdapter, FakeReceiver

ALIPAY_IDS = {"secondary_merchant_id": "NZSHOP0001", "secondary_merchant_name": "Kiwi Wool Shop",
              "secondary_merchant_industry": "5699"}


@pytest.fixture
def shop(client):
    m = merchants.create_merchant("Kiwi Wool Shop", "NZD", fee_bps=250, channels={"alipay": ALIPAY_IDS})
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


def create(shop, flow="web", **extra):
    body = {"amount": 8800, "currency": "NZD", "channel": "alipay", "flow": flow, "merchant_reference": "W-1",
            "description": "Merino scarf", "return_url": "https://shop.example.nz/thanks"}
    body.update(extra)
    r = shop.post("/v1/payments", body)
    assert r.status_code == 201, r.body
    return r.json_body


def pay(client, payment):
    """The shopper opens Alipay's page (web/wap) or scans the QR, then pays in the sandbox."""
    if payment["next_action"]["type"] == "redirect":
        url = urlsplit(payment["next_action"]["url"])
        assert client.http.get(url.path + "?" + url.query).status_code == 200
    r = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": payment["channel_order_id"]}).encode())
    assert r.status_code == 200, r.body


def post_callback(client, body: bytes):
    return client.http.post("/callbacks/alipay", headers={"Content-Type": "application/x-www-form-urlencoded"},
                            body=body)


def test_web_payment_redirects_to_the_signed_gateway_page_and_succeeds_once_paid(shop, client):
    p = create(shop)
    action = p["next_action"]
    assert action["type"] == "redirect"
    url = urlsplit(action["url"])
    params = dict(parse_qsl(url.query))
    assert params["service"] == "create_forex_trade" and params["out_trade_no"] == p["channel_order_id"]
    assert params["total_fee"] == "88.00" and params["currency"] == "NZD"
    page = client.http.get(url.path + "?" + url.query)  # the shopper's browser lands on Alipay's page
    assert page.status_code == 200 and b"88.00" in page.body
    pay(client, p)
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["channel_transaction_id"]
    assert BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance == 8800 - 220


def test_wap_and_qr_flows(shop, client):
    wap = create(shop, flow="wap")
    assert "create_forex_trade_wap" in wap["next_action"]["url"]
    qr = create(shop, flow="qr", merchant_reference="W-2")
    assert qr["next_action"]["type"] == "qr_code" and qr["next_action"]["qr_code"].startswith("https://qr.alipay.com/")
    pay(client, qr)
    assert shop.get(f"/v1/payments/{qr['id']}").json_body["status"] == "succeeded"


class LosesFirstAnswers(ChaliceAdapter):
    """Delivers to our callback route, but the first `n` answers never make it back to Alipay."""

    def __init__(self, client, n):
        super().__init__(client)
        self.n = n
        self.bodies = []
        self.answers = []

    def send(self, request, **kwargs):
        self.bodies.append(request.body if isinstance(request.body, bytes) else request.body.encode())
        resp = super().send(request, **kwargs)
        self.answers.append(resp.content)
        if self.n > 0:
            self.n -= 1
            resp._content = b""
        return resp


def test_alipay_retries_apply_once_and_replays_are_refused(shop, client):
    p = create(shop)
    relay = LosesFirstAnswers(client, n=2)
    http.mount("http://kauri.test/callbacks/alipay", relay)
    pay(client, p)
    for wait in (3, 11):  # Alipay's schedule: 2 min, then 10 min
        clock.advance(timedelta(minutes=wait))
        alipay_sandbox.pump()
    assert relay.answers == [b"success", b"success", b"success"]
    assert len({dict(parse_qsl(b.decode()))["notify_id"] for b in relay.bodies}) == 3
    assert sum(1 for x in PostingModel.scan() if x.ref == p["id"]) == 1
    assert BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance == 8800 - 220
    clock.advance(timedelta(hours=2))
    alipay_sandbox.pump()
    assert len(relay.bodies) == 3  # the 'success' got through: Alipay stops
    assert post_callback(client, relay.bodies[0]).body == b"fail"  # a replayed notify_id is not Alipay's


def test_tampered_forged_and_unknown_alipay_notifications_change_nothing(shop, client):
    p = create(shop)
    catcher = FakeReceiver(status=200, body=b"fail")
    http.mount("http://kauri.test/callbacks/alipay", catcher)
    pay(client, p)
    http.unmount_all()
    from tests.support.transport import ChaliceAdapter
    http.mount("http://kauri.test", ChaliceAdapter(client))
    fields = dict(parse_qsl(catcher.requests[0]["body"].decode()))
    tampered = {**fields, "total_fee": "1.00"}
    from urllib.parse import urlencode
    assert post_callback(client, urlencode(tampered).encode()).body == b"fail"
    assert PaymentModel.get(p["id"]).status == "pending"
    unknown = {**fields, "out_trade_no": "pay_unknownunknown00000"}
    assert post_callback(client, urlencode(unknown).encode()).body == b"fail"
    assert post_callback(client, b"sign=abc&notify_id=x").body == b"fail"
    assert list(PostingModel.scan()) == [] and list(OpsRecordModel.scan()) == []


def test_return_url_never_changes_state(shop, client):
    p = create(shop)
    # A shopper (or anyone) hitting our site with success parameters proves nothing: only callbacks count.
    assert PaymentModel.get(p["id"]).status == "pending"
    r = client.http.get(f"/v1/payments/{p['id']}", headers={"Authorization": f"Bearer {shop.key}"})
    assert r.json_body["status"] == "pending"


def test_refund_of_an_alipay_payment(shop, client):
    p = create(shop)
    pay(client, p)
    r = shop.post(f"/v1/payments/{p['id']}/refunds", {"amount": 3000, "reason": "size"})
    assert r.status_code == 201, r.body
    assert r.json_body["status"] in ("succeeded", "processing")
    assert PaymentModel.get(p["id"]).refunded == 3000


def test_merchant_close_of_a_web_payment_is_refused_while_alipay_can_still_take_it(shop, client):
    p = create(shop)
    r = shop.post(f"/v1/payments/{p['id']}/close")
    assert r.status_code == 409 and r.json_body["error"]["code"] == "close_not_supported"
    assert PaymentModel.get(p["id"]).status == "pending"
