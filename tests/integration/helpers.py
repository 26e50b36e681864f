"""Helpers for driving Kauri through app.py like a merchant, a shopper and a channel would."""
from __future__ import annotations

import json

from chalicelib.services import merchants


class MerchantApi:
    """A merchant calling the API with its secret key."""

    def __init__(self, client, key: str, merchant):
        self.client = client
        self.key = key
        self.merchant = merchant

    def _headers(self, extra=None, key=None):
        h = {"Authorization": f"Bearer {key or self.key}", "Content-Type": "application/json"}
        h.update(extra or {})
        return h

    def post(self, path, body=None, raw: bytes | None = None, headers=None, key=None):
        data = raw if raw is not None else json.dumps(body or {}).encode()
        return self.client.http.post(path, headers=self._headers(headers, key), body=data)

    def get(self, path, key=None):
        return self.client.http.get(path, headers=self._headers(key=key))

    def create_payment(self, **overrides):
        body = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
                "merchant_reference": "order-1", "description": "Manuka honey"}
        body.update(overrides)
        return self.post("/v1/payments", body)


def new_merchant(client, name="Kiwi Honey Ltd", currency="NZD", sub_mch_id="20000100", live=True,
                 **extra) -> MerchantApi:
    """A merchant with a secret key. Live by default: the money tests look at the live books (in the
    test stage every channel is its sandbox either way); test-mode books are tested on their own."""
    m = merchants.create_merchant(name, currency, fee_bps=200, channels={"wechat": {"sub_mch_id": sub_mch_id}},
                                  **extra)
    key = merchants.issue_key(m.id, livemode=live)
    return MerchantApi(client, key, m)


def paid_payment(client, merchant: MerchantApi, amount: int = 10000) -> dict:
    """A WeChat payment the shopper has paid (and we have been told of)."""
    payment = merchant.create_payment(amount=amount).json_body
    shopper_pays(client, payment)
    return payment


def shopper_pays(client, payment: dict, outcome: str = "success"):
    """The shopper pays in the WeChat sandbox; the sandbox sends its signed notification to us."""
    resp = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                            body=json.dumps({"out_trade_no": payment["channel_order_id"], "outcome": outcome}).encode())
    assert resp.status_code == 200, resp.body
    return resp.json_body
