"""WeChat callbacks: verified, applied exactly once, with the ledger and the outbox in the same write."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from chalicelib import clock, http
from chalicelib.channels.wechat import sandbox as wechat_sandbox
from chalicelib.channels.wechat import signing, wire
from chalicelib.services import callbacks, chase, payments
from chalicelib.store.models import BalanceModel, EntryModel, EventModel, OpsRecordModel, PaymentModel, PostingModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.transport import ChaliceAdapter, FakeReceiver

BASE = "http://kauri.test"

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


def paid_behind_our_back(client, merchant) -> dict:
    """The shopper pays at WeChat, but the notification is not delivered yet (our edge was down)."""
    p = merchant.create_payment(amount=10000).json_body
    dead = FakeReceiver()
    dead.down = True
    http.mount(BASE + "/callbacks", dead)
    shopper_pays(client, p)
    http.mount(BASE + "/callbacks", ChaliceAdapter(client))
    return p


def sandbox_notification(p: dict) -> bytes:
    """The very notification the WeChat sandbox sent for this payment (to send it once more)."""
    return wire.to_xml(wechat_sandbox._store().get(f"wechat#order#10000100#{p['channel_order_id']}")["notify"]["fields"])


def test_success_for_a_payment_only_our_clock_closed_is_applied_and_credited_once(merchant, client):
    p = paid_behind_our_back(client, merchant)
    payments.mark_closed(payments.get_for(merchant.merchant, True, p["id"]), reason="expired")
    assert PaymentModel.get(p["id"]).status == "closed"
    clock.advance(timedelta(seconds=20))
    assert wechat_sandbox.pump() == 1          # WeChat retries its notification
    assert merchant.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"
    assert BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance == 9800
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body   # a duplicate: no second effect
    assert counts(p["id"])["postings"] == 1
    assert sorted(e.type for e in EventModel.scan() if p["id"] in e.payload) == ["payment.closed", "payment.succeeded"]
    assert list(OpsRecordModel.scan()) == []   # applied by the rule, not parked in a list


def test_success_for_a_payment_the_merchant_closed_is_applied_then_refunded_in_full(merchant, client):
    p = paid_behind_our_back(client, merchant)
    payments.mark_closed(payments.get_for(merchant.merchant, True, p["id"]), reason="merchant")
    clock.advance(timedelta(seconds=20))
    wechat_sandbox.pump()
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body   # WeChat resends
    assert PaymentModel.get(p["id"]).status == "succeeded"
    refunds = merchant.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]
    assert [(r["amount"], r["reason"]) for r in refunds] == [(10000, "paid after the merchant closed it")]
    assert BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance == 0
    assert sorted(pp.posting_id.split(":")[0] for pp in PostingModel.scan()) == ["payment", "refund"]
    assert list(OpsRecordModel.scan()) == []


def test_failed_wechat_attempt_leaves_the_payment_open_and_a_later_success_is_applied(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    shopper_pays(client, p, outcome="fail")          # NOTENOUGH: the shopper can try again
    got = merchant.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "pending" and got["failure_code"] == "NOTENOUGH"
    assert [e.type for e in EventModel.scan()] == []
    shopper_pays(client, p)                          # ...and does, with another card
    got = merchant.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded"
    assert [e.type for e in EventModel.scan()] == ["payment.succeeded"]
    assert counts(p["id"])["postings"] == 1
    assert list(OpsRecordModel.scan()) == []


def test_failed_attempt_ends_the_payment_as_failed_once_nobody_can_pay_it(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    shopper_pays(client, p, outcome="fail")
    clock.advance(timedelta(minutes=31))             # past expires_at: WeChat's order is closed too
    assert chase.chase_payments()["failed"] == 1
    got = merchant.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "failed" and got["failure_code"] == "NOTENOUGH"
    assert [e.type for e in EventModel.scan()] == ["payment.failed"]
    assert counts(p["id"])["postings"] == 0


def test_failed_notification_after_expiry_fails_the_payment_at_once(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    clock.advance(timedelta(minutes=31))
    body = notification(p, result_code="FAIL", err_code="NOTENOUGH", err_code_des="x")
    assert b"SUCCESS" in post_callback(client, body).body
    assert merchant.get(f"/v1/payments/{p['id']}").json_body["status"] == "failed"
    assert [e.type for e in EventModel.scan()] == ["payment.failed"]
