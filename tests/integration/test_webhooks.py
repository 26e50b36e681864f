"""Merchant webhooks: signed, delivered from the outbox, retried for about two days, resendable."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib import clock, http
from chalicelib.services import notifications
from chalicelib.store.models import EventModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import scheduled
from tests.support.transport import FakeReceiver

HOOK = "https://hooks.merchant.test"


@pytest.fixture
def receiver(client):
    r = FakeReceiver()
    http.mount(HOOK, r)
    return r


@pytest.fixture
def merchant(client):
    return new_merchant(client)


@pytest.fixture
def endpoint(merchant, receiver):
    r = merchant.post("/v1/webhook_endpoints", {"url": HOOK + "/kauri"})
    assert r.status_code == 201
    return r.json_body


def test_endpoint_secret_is_shown_once(merchant, endpoint):
    assert endpoint["secret"].startswith("whsec_")
    listed = merchant.get("/v1/webhook_endpoints").json_body["data"]
    assert listed and "secret" not in listed[0]
    assert endpoint["secret"] not in json.dumps(listed)


def test_payment_succeeded_webhook_is_signed_and_carries_the_payment(merchant, client, endpoint, receiver):
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    assert notifications.deliver_due() == 1
    [req] = receiver.requests
    body = req["body"].decode()
    assert notifications.verify_signature(endpoint["secret"], req["headers"]["Kauri-Signature"], body)
    assert not notifications.verify_signature("whsec_wrong", req["headers"]["Kauri-Signature"], body)
    event = json.loads(body)
    assert event["id"].startswith("evt_") and event["type"] == "payment.succeeded"
    assert event["data"]["object"]["id"] == p["id"] and event["data"]["object"]["status"] == "succeeded"
    assert isinstance(event["created"], int)
    assert notifications.deliver_due() == 0  # delivered: never sent again


def test_signature_header_format(endpoint):
    sig = notifications.signature("whsec_x", 1700000000, '{"a":1}')
    import hashlib
    import hmac
    expected = hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sig == f"t=1700000000,v1={expected}"


def test_receiver_down_is_retried_with_backoff_then_marked_failed(merchant, client, endpoint, receiver):
    receiver.down = True
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    notifications.deliver_due()
    elapsed = timedelta(0)
    for wait in notifications.BACKOFF:
        assert notifications.deliver_due() == 0  # not due yet
        clock.advance(timedelta(seconds=wait))
        elapsed += timedelta(seconds=wait)
        assert notifications.deliver_due() == 1
    assert timedelta(days=1, hours=12) < elapsed < timedelta(days=3)
    [item] = list(EventModel.scan())
    assert item.status == "failed" and item.attempts == notifications.MAX_ATTEMPTS
    assert len(receiver.requests) == notifications.MAX_ATTEMPTS
    # Ops (or the merchant) resends by hand once the receiver is back.
    receiver.down = False
    r = merchant.post(f"/v1/events/{item.event_id}/resend")
    assert r.status_code == 200 and r.json_body["status"] == "delivered"
    assert receiver.requests[-1]["answered"]


def test_non_2xx_is_a_failure_and_recovers(merchant, client, endpoint, receiver):
    receiver.status = 500
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    notifications.deliver_due()
    receiver.status = 200
    clock.advance(timedelta(seconds=notifications.BACKOFF[0]))
    assert notifications.deliver_due() == 1
    assert [e.status for e in EventModel.scan()] == ["delivered"]
    assert len(receiver.requests) == 2


def test_scheduled_retry_function_delivers(merchant, client, endpoint, receiver):
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    # With the function's configured timeout in its context, as Lambda gives it: chalice's test client
    # always says 3 s, and a loaded machine spent more than 1 s of that before the send (out_of_time).
    out = scheduled(client, "retry_webhooks")
    assert out["attempted"] == 1 and out["outcome"] == "ok"  # the job's one summary
    assert len(receiver.requests) == 1


def test_other_merchants_events_are_invisible(merchant, client, endpoint):
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    [item] = list(EventModel.scan())
    other = new_merchant(client, name="Other", sub_mch_id="20000200")
    assert other.get(f"/v1/events/{item.event_id}").status_code == 404
    assert other.post(f"/v1/events/{item.event_id}/resend").status_code == 404
    assert merchant.get(f"/v1/events/{item.event_id}").status_code == 200
