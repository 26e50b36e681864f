"""Refunds never exceed the payment and post reversing entries; Idempotency-Key has one effect."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib import clock
from chalicelib.services import chase

from chalicelib.store import idempotency as idem_store
from chalicelib.store.models import BalanceModel, PaymentModel, PostingModel, RefundModel
from tests.integration.helpers import new_merchant, shopper_pays


@pytest.fixture
def merchant(client):
    return new_merchant(client)


@pytest.fixture
def paid(merchant, client):
    p = merchant.create_payment(amount=10000).json_body
    shopper_pays(client, p)
    return p


def pending_balance(merchant):
    return BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance


def settle_refunds():
    """WeChat finishes refunds a little later; the chase job asks and settles them."""
    clock.advance(timedelta(seconds=30))
    return chase.chase_refunds()


def test_partial_refunds_up_to_the_payment_then_refused(merchant, paid):
    r1 = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 4000, "reason": "broken jar"})
    assert r1.status_code == 201, r1.body
    assert r1.json_body["status"] == "processing" and r1.json_body["amount"] == 4000
    r2 = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 6000})
    assert r2.status_code == 201 and r2.json_body["status"] == "processing"
    assert settle_refunds()["refunds_succeeded"] == 2
    assert {x["status"] for x in merchant.get(f"/v1/payments/{paid['id']}/refunds").json_body["data"]} == {
        "succeeded"}
    assert settle_refunds()["refunds_checked"] == 0
    r3 = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 1})
    assert r3.status_code == 400 and r3.json_body["error"]["code"] == "amount_exceeds_refundable"
    assert PaymentModel.get(paid["id"]).refunded == 10000
    listed = merchant.get(f"/v1/payments/{paid['id']}/refunds").json_body["data"]
    assert sorted(x["amount"] for x in listed) == [4000, 6000]
    one = merchant.get(f"/v1/payments/{paid['id']}/refunds/{r1.json_body['id']}")
    assert one.status_code == 200 and one.json_body["id"] == r1.json_body["id"]
    assert pending_balance(merchant) == 0  # 9800 credited, 3920 + 5880 returned (fee given back pro rata)


def test_refund_posts_balanced_reversing_entries(merchant, paid):
    r = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 2500}).json_body
    posting = PostingModel.get(f"refund:{r['id']}")
    legs = {a: amt for a, amt, _ in posting.legs}
    assert sum(legs.values()) == 0
    assert legs["C:wechat:receivable:NZD"] == -2500
    assert legs["P:fee_revenue:NZD"] == 50
    assert legs[f"M:{merchant.merchant.id}:NZD:pending"] == 2450
    assert pending_balance(merchant) == 9800 - 2450


def test_refund_larger_than_the_payment_is_refused_outright(merchant, paid):
    r = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 10001})
    assert r.status_code == 400 and r.json_body["error"]["code"] == "amount_exceeds_refundable"
    assert list(RefundModel.scan()) == []


def test_refund_of_an_unpaid_payment_is_409(merchant):
    p = merchant.create_payment().json_body
    r = merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100})
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_not_succeeded"


def test_bad_refund_bodies_are_400(merchant, paid):
    for body in ({"amount": -1}, {"amount": "10"}, {"amount": 1.5}, {}, {"amount": 10, "x": 1}):
        assert merchant.post(f"/v1/payments/{paid['id']}/refunds", body).status_code == 400


def test_same_idempotency_key_and_body_replays_the_first_response(merchant):
    body = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
            "merchant_reference": "o-9", "description": "Honey"}
    h = {"Idempotency-Key": "create-o-9"}
    a = merchant.post("/v1/payments", body, headers=h)
    b = merchant.post("/v1/payments", body, headers=h)
    assert a.status_code == b.status_code == 201
    assert a.json_body == b.json_body
    assert len(list(PaymentModel.scan())) == 1


def test_same_idempotency_key_with_another_body_is_422(merchant):
    body = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
            "merchant_reference": "o-9", "description": "Honey"}
    h = {"Idempotency-Key": "k1"}
    assert merchant.post("/v1/payments", body, headers=h).status_code == 201
    r = merchant.post("/v1/payments", {**body, "amount": 9999}, headers=h)
    assert r.status_code == 422 and r.json_body["error"]["code"] == "idempotency_key_reused"
    assert len(list(PaymentModel.scan())) == 1


def test_concurrent_duplicate_is_409_and_creates_nothing(merchant):
    body = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
            "merchant_reference": "o-9", "description": "Honey"}
    raw = json.dumps(body).encode()
    # The first request holds the claim (still talking to the channel) when its twin arrives.
    import hashlib
    from chalicelib.services.idempotency import record_key

    scope = record_key(f"{merchant.merchant.id}:live", "POST /v1/payments", "race-1")
    assert idem_store.claim(scope, hashlib.sha256(raw).hexdigest()).kind == "claimed"
    r = merchant.post("/v1/payments", raw=raw, headers={"Idempotency-Key": "race-1"})
    assert r.status_code == 409 and r.json_body["error"]["code"] == "idempotency_request_in_progress"
    assert list(PaymentModel.scan()) == []


def test_idempotent_refund_replays_and_refunds_once(merchant, paid):
    h = {"Idempotency-Key": "refund-1"}
    a = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 1000}, headers=h)
    b = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 1000}, headers=h)
    assert a.status_code == b.status_code == 201 and a.json_body == b.json_body
    assert PaymentModel.get(paid["id"]).refunded == 1000


def test_keys_are_scoped_per_merchant(merchant, client):
    other = new_merchant(client, name="Other", sub_mch_id="20000200")
    body = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
            "merchant_reference": "o-9", "description": "Honey"}
    a = merchant.post("/v1/payments", body, headers={"Idempotency-Key": "same"})
    b = other.post("/v1/payments", body, headers={"Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 201 and a.json_body["id"] != b.json_body["id"]


def test_refund_succeeded_event_is_queued_once_when_the_channel_finishes(merchant, paid):
    from chalicelib.store.models import EventModel

    r = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 500}).json_body
    settle_refunds()
    settle_refunds()
    events = [e for e in EventModel.scan() if e.type == "refund.succeeded"]
    assert len(events) == 1 and r["id"] in events[0].payload
