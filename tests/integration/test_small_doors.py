"""Small doors: the payer's upload shuts with the payment, channel free text never reaches a merchant,
pages carry the security headers."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib import clock, http
from chalicelib.store.models import PaymentModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.integration.test_tuition import bank_pays, invoice, rate, school, submit_form  # noqa: F401 (fixtures)
from tests.support.transport import FakeReceiver

DOC = {"filename": "offer.pdf", "content_type": "application/pdf", "size": 1234}


def _upload(client, payment_id: str):
    return client.http.post(f"/pay/{payment_id}/documents", headers={"Content-Type": "application/json"},
                            body=json.dumps(DOC).encode())


def test_payer_document_upload_is_open_only_while_the_quoted_payment_can_be_paid(school, client, rate):
    p = invoice(school).json_body
    assert _upload(client, p["id"]).status_code == 201
    clock.advance(timedelta(minutes=16))                       # quote expired, payment still payable after requote
    assert _upload(client, p["id"]).status_code == 201
    paid = invoice(school, merchant_reference="INV-2").json_body
    submit_form(client, paid["next_action"]["channel_action"])
    bank_pays(client, paid["next_action"]["channel_action"]["fields"]["v_oid"])
    assert PaymentModel.get(paid["id"]).status == "succeeded"
    r = _upload(client, paid["id"])
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_not_payable"
    assert school.get(f"/v1/payments/{paid['id']}/documents").json_body["data"] == []


def test_payer_document_upload_is_shut_once_the_payment_expired(school, client, rate):
    p = invoice(school).json_body
    clock.advance(timedelta(hours=2))
    r = _upload(client, p["id"])
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_not_payable"


def test_payer_document_upload_is_not_open_on_an_unquoted_payment(client):
    merchant = new_merchant(client)
    p = merchant.create_payment().json_body
    r = _upload(client, p["id"])
    assert r.status_code == 404
    shopper_pays(client, p)
    assert _upload(client, p["id"]).status_code == 404


@pytest.mark.parametrize("answer, code", [
    (b"<xml><return_code>FAIL</return_code><return_msg><![CDATA[call 0800 MALLORY, <b>now</b>]]></return_msg></xml>",
     "RETURN_FAIL"),
    (b"<xml><return_code>FAIL</return_code><return_msg>x</return_msg><err_code>see http://evil.example</err_code>"
     b"</xml>", "CHANNEL_ERROR"),
    (b"<xml><return_code>FAIL</return_code><return_msg><![CDATA[\xe7\xad\xbe\xe5\x90\x8d\xe9\x94\x99\xe8\xaf\xaf]]>"
     b"</return_msg></xml>", "SIGNERROR"),
])
def test_channel_free_text_never_reaches_the_merchant(client, answer, code, caplog):
    merchant = new_merchant(client)
    http.mount("http://kauri.test/sandbox/wechat/pay/unifiedorder", FakeReceiver(body=answer))
    r = merchant.create_payment()
    assert r.status_code == 502, r.body
    err = r.json_body["error"]
    assert err["code"] == code
    for text in ("MALLORY", "evil", "签名错误", "<b>"):
        assert text not in r.body.decode("utf-8")
    assert code == "CHANNEL_ERROR" or any("wechat_call_fail" in rec.getMessage() for rec in caplog.records)


def test_a_long_return_msg_is_logged_truncated(client, caplog):
    merchant = new_merchant(client)
    answer = b"<xml><return_code>FAIL</return_code><return_msg>" + b"A" * 5000 + b"</return_msg></xml>"
    http.mount("http://kauri.test/sandbox/wechat/pay/unifiedorder", FakeReceiver(body=answer))
    assert merchant.create_payment().status_code == 502
    logged = [rec.getMessage() for rec in caplog.records if "wechat_call_fail" in rec.getMessage()]
    assert logged and all("A" * 129 not in line for line in logged) and "A" * 128 in logged[0]


EXPECTED_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}


def _assert_secured(resp):
    for name, value in EXPECTED_HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.headers)
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


def test_pay_pages_send_the_security_headers(school, client, rate):
    p = invoice(school).json_body
    _assert_secured(client.http.get(f"/pay/{p['id']}"))
    _assert_secured(client.http.get("/pay/pay_nosuchpayment"))
    clock.advance(timedelta(minutes=16))
    r = client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                         body=b"")
    assert r.status_code == 303
    _assert_secured(r)
