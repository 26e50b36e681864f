"""The merchant API end to end through app.py, against moto and the WeChat sandbox."""
from __future__ import annotations

import json

import pytest

from chalicelib.channels.wechat import signing
from chalicelib.store.models import ApiKeyModel
from tests.integration.helpers import new_merchant, shopper_pays


@pytest.fixture
def merchant(client):
    return new_merchant(client)


def test_native_payment_returns_a_wechat_qr_and_the_channel_order(merchant):
    r = merchant.create_payment()
    assert r.status_code == 201, r.body
    p = r.json_body
    assert p["id"].startswith("pay_") and p["status"] == "pending"
    assert p["amount"] == 1250 and p["currency"] == "NZD" and p["fee"] == 25
    assert p["next_action"]["type"] == "qr_code"
    assert p["next_action"]["qr_code"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert p["channel_order_id"] and p["channel_transaction_id"] is None
    assert p["expires_at"] > p["created"]


def test_jsapi_payment_needs_an_openid_and_returns_signed_bridge_parameters(merchant):
    r = merchant.create_payment(flow="jsapi")
    assert r.status_code == 400 and r.json_body["error"]["param"] == "payer.openid"
    r = merchant.create_payment(flow="jsapi", payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    assert r.status_code == 201, r.body
    params = r.json_body["next_action"]["jsapi"]
    assert params["package"].startswith("prepay_id=")
    signed = {k: v for k, v in params.items() if k != "paySign"}
    assert signing.sign(signed, "192006250b4c09247ec02edce69f6a2d", params["signType"]) == params["paySign"]


def test_h5_payment_redirects_to_wechat(merchant):
    r = merchant.create_payment(flow="h5", return_url="https://shop.example.nz/done")
    assert r.status_code == 201, r.body
    assert r.json_body["next_action"]["type"] == "redirect"
    assert "redirect_url=https%3A%2F%2Fshop.example.nz%2Fdone" in r.json_body["next_action"]["url"]


def test_payment_is_visible_by_id_and_by_merchant_reference(merchant):
    p = merchant.create_payment(merchant_reference="inv-77").json_body
    got = merchant.get(f"/v1/payments/{p['id']}")
    assert got.status_code == 200 and got.json_body["id"] == p["id"]
    listed = merchant.get("/v1/payments?merchant_reference=inv-77").json_body["data"]
    assert [x["id"] for x in listed] == [p["id"]]


def test_wrong_or_missing_key_is_401(merchant, client):
    assert client.http.get("/v1/payments/pay_x").status_code == 401
    bad = merchant.key[:-4] + "AAAA"
    r = merchant.get("/v1/payments/pay_x", key=bad)
    assert r.status_code == 401 and r.json_body["error"]["type"] == "authentication_error"
    assert merchant.get("/v1/payments/pay_x", key="sk_test_nonsense").status_code == 401


def test_another_merchants_payment_is_404_never_visible(merchant, client):
    p = merchant.create_payment().json_body
    other = new_merchant(client, name="Other Co", sub_mch_id="20000200")
    for path in (f"/v1/payments/{p['id']}", f"/v1/payments/{p['id']}/refunds"):
        r = other.get(path)
        assert r.status_code == 404 and r.json_body["error"]["code"] == "resource_missing"
    assert other.post(f"/v1/payments/{p['id']}/close").status_code == 404
    assert other.get("/v1/payments?merchant_reference=order-1").json_body["data"] == []


def test_secret_keys_are_stored_hashed_only(merchant):
    items = list(ApiKeyModel.scan())
    assert items and all(merchant.key not in json.dumps(i.attribute_values, default=str) for i in items)


@pytest.mark.parametrize("raw,code", [
    (b"{not json", "body_invalid"),
    (b"[1,2]", "body_invalid"),
    (json.dumps({"amount": 12.5, "currency": "NZD"}).encode(), "body_invalid"),
])
def test_malformed_bodies_are_400(merchant, raw, code):
    r = merchant.post("/v1/payments", raw=raw)
    assert r.status_code == 400 and r.json_body["error"]["code"] == code


@pytest.mark.parametrize("overrides,param", [
    ({"amount": "1250"}, "amount"),
    ({"amount": -5}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": 10 ** 12}, "amount"),
    ({"amount": True}, "amount"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "nzd"}, "currency"),
    ({"currency": "AUD"}, "currency"),
    ({"channel": "paypal"}, "channel"),
    ({"flow": "web"}, "flow"),
    ({"merchant_reference": ""}, "merchant_reference"),
    ({"description": "x" * 500}, "description"),
    ({"return_url": "javascript:alert(1)"}, "return_url"),
    ({"metadata": {"a": 1}}, "metadata"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_fields_are_400_with_the_param_named(merchant, overrides, param):
    r = merchant.create_payment(**overrides)
    assert r.status_code == 400, r.body
    assert r.json_body["error"]["param"] == param


def test_oversized_body_is_413(merchant):
    r = merchant.post("/v1/payments", raw=b'{"description": "' + b"x" * 70000 + b'"}')
    assert r.status_code == 413 and r.json_body["error"]["code"] == "body_too_large"


def test_paid_payment_succeeds_once_and_shows_the_channel_transaction(merchant, client):
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    got = merchant.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded"
    assert got["channel_transaction_id"] and got["payer_amount"]["currency"] == "CNY"
    assert got["next_action"] is None


def test_close_pending_payment_then_409_once_succeeded(merchant, client):
    p = merchant.create_payment().json_body
    r = merchant.post(f"/v1/payments/{p['id']}/close")
    assert r.status_code == 200 and r.json_body["status"] == "closed"
    q = merchant.create_payment(merchant_reference="order-2").json_body
    shopper_pays(client, q)
    r = merchant.post(f"/v1/payments/{q['id']}/close")
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_succeeded"


def test_non_json_body_is_415_in_our_error_shape(merchant):
    r = merchant.client.http.post("/v1/payments", headers={"Authorization": f"Bearer {merchant.key}",
                                                           "Content-Type": "text/plain"}, body=b"amount=1")
    assert r.status_code == 415 and r.json_body["error"]["code"] == "unsupported_media_type"
