"""WeChat callbacks: verified, applied exactly once, with the ledger and the outbox in the same write."""
from __future__ import annotations

import threading

import pytest

from chalicelib.channels.wechat import signing, wire
from chalicelib.services import callbacks
from chalicelib.store.models import BalanceModel, EntryModel, EventModel, OpsRecordModel, PaymentModel, PostingModel
from tests.integration.helpers import new_merchant, shopper_pays

KEY = "192006250b4c09247ec02edce69f6a2d"


@pytest.fixture
def merchant(client):
    return new_merchant(client)


def notification(payment: dict, **changes) -> bytes:
    """A WeChat payment notification for our order, signed with the institution key (the real signer)."""
    fields = {
        "return_code": "SUCCESS", "return_msg": "OK", "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100",
        "sub_mch_id": "20000100", "nonce_str": "Qk3Zp9dR7sT1uV5w", "result_code": "SUCCESS",
        "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "is_subscribe": "N", "trade_type": "NATIVE",
        "bank_type": "OTHERS", "total_fee": str(payment["amount"]), "fee_type": payment["currency"],
        "cash_fee": str(payment["amount"] * 43 // 10), "cash_fee_type": "CNY", "rate": "430000000",
        "transaction_id": "4200000000202611250000000001", "out_trade_no": payment["channel_order_id"],
        "time_end": "20261125120501",
    }
    fields.update(changes)
    sign_after = fields.pop("_sign_after", None)
    fields["sign"] = signing.sign(fields, KEY, "MD5")
    if sign_after:
        fields.update(sign_after)
    return wire.to_xml(fields)


def post_callback(client, body: bytes):
    return client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=body)


def counts(payment_id):
    return {
        "postings": sum(1 for p in PostingModel.scan() if p.ref == payment_id),
        "events": sum(1 for e in EventModel.scan() if payment_id in e.payload),
    }


def test_sandbox_payment_posts_the_ledger_and_queues_one_webhook(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    shopper_pays(client, p)
    posting = PostingModel.get(f"payment:{p['id']}")
    legs = {a: amt for a, amt, _ in posting.legs}
    assert legs == {"C:wechat:receivable:NZD": 10000, f"M:{merchant.merchant.id}:NZD:pending": -9800,
                    "P:fee_revenue:NZD": -200}
    assert BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance == 9800
    entries = list(EntryModel.query(f"M:{merchant.merchant.id}:NZD:pending"))
    assert [e.amount for e in entries] == [-9800]
    events = [e for e in EventModel.scan() if p["id"] in e.payload]
    assert [e.type for e in events] == ["payment.succeeded"]


def test_five_identical_callbacks_in_parallel_apply_once(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    body = notification(p)
    acks = []
    barrier = threading.Barrier(5)

    def send():
        barrier.wait()
        acks.append(callbacks.handle("wechat", body, {"Content-Type": "text/xml"}))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acks) == 5 and all(b"SUCCESS" in a.body.encode() for a in acks)
    assert counts(p["id"]) == {"postings": 1, "events": 1}
    assert BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance == 9800
    for _ in range(3):  # and sequential repeats through the route change nothing either
        r = post_callback(client, body)
        assert r.status_code == 200 and b"<return_code><![CDATA[SUCCESS]]>" in r.body
    assert counts(p["id"]) == {"postings": 1, "events": 1}


def test_tampered_amount_is_refused_and_recorded_for_ops(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    r = post_callback(client, notification(p, total_fee="1"))  # validly signed, but not our amount
    assert b"FAIL" in r.body
    assert PaymentModel.get(p["id"]).status == "pending"
    assert counts(p["id"]) == {"postings": 0, "events": 0}
    assert [o.kind for o in OpsRecordModel.scan()] == ["callback_mismatch"]


def test_wrong_currency_is_refused(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    assert b"FAIL" in post_callback(client, notification(p, fee_type="AUD")).body
    assert PaymentModel.get(p["id"]).status == "pending"


def test_edited_field_after_signing_is_a_forgery(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    forged = notification(p, _sign_after={"total_fee": "10000", "cash_fee": "1"})
    r = post_callback(client, forged)
    assert b"FAIL" in r.body
    assert PaymentModel.get(p["id"]).status == "pending"
    assert counts(p["id"]) == {"postings": 0, "events": 0}


def test_callback_signed_with_another_key_changes_nothing(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    fields = wire.from_xml(notification(p))
    fields.pop("sign")
    fields["sign"] = signing.sign(fields, "0" * 32, "MD5")
    assert b"FAIL" in post_callback(client, wire.to_xml(fields)).body
    assert PaymentModel.get(p["id"]).status == "pending"


def test_another_institution_or_sub_merchant_is_refused(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    assert b"FAIL" in post_callback(client, notification(p, mch_id="99999999")).body
    assert b"FAIL" in post_callback(client, notification(p, sub_mch_id="29999999")).body
    assert PaymentModel.get(p["id"]).status == "pending"


def test_unknown_order_and_garbage_are_refused(client):
    assert b"FAIL" in post_callback(client, notification({"amount": 100, "currency": "NZD",
                                                          "channel_order_id": "pay_doesnotexist0000000"})).body
    assert b"FAIL" in post_callback(client, b"<xml><a>1</a>").body
    assert b"FAIL" in post_callback(client, b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>&e;</xml>').body


def test_success_callback_for_a_closed_payment_is_recorded_not_applied(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    assert merchant.post(f"/v1/payments/{p['id']}/close").json_body["status"] == "closed"
    body = notification(p)
    for _ in range(2):
        r = post_callback(client, body)
        assert b"SUCCESS" in r.body  # received and handed to ops; WeChat need not retry
    assert PaymentModel.get(p["id"]).status == "closed"
    assert counts(p["id"])["postings"] == 0
    assert [o.kind for o in OpsRecordModel.scan()] == ["late_success_callback"]


def test_failed_payment_moves_to_failed_once_with_its_event(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    shopper_pays(client, p, outcome="fail")
    got = merchant.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "failed" and got["failure_code"]
    assert [e.type for e in EventModel.scan()] == ["payment.failed"]
    assert counts(p["id"])["postings"] == 0
    assert b"SUCCESS" in post_callback(client, notification(p)).body  # a later success is recorded, not applied
    assert merchant.get(f"/v1/payments/{p['id']}").json_body["status"] == "failed"
    assert [o.kind for o in OpsRecordModel.scan()] == ["late_success_callback"]
