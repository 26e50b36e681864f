"""A merchant's webhook receiver is down for a day: the retry_webhooks schedule keeps every event,
delivers each once the receiver is back, and never sends one again after a 2xx."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import clock, http
from chalicelib.services import notifications
from chalicelib.store.models import EventModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import scheduled
from tests.support.transport import FakeReceiver

HOOK = "https://hooks.kiwi-honey.test"
TICK = timedelta(minutes=10)   # EventBridge fires every minute; the test samples every tenth


@pytest.fixture(autouse=True)
def _period_aligned_clock(aws):
    """Job periods are wall-clock slots: start 5 s into a slot, so 'the same minute' is certain (on the
    real clock a run near a slot boundary crossed into the next one now and then)."""
    clock.freeze(datetime(2026, 11, 25, 2, 0, 5, tzinfo=timezone.utc))


def event_id(request) -> str:
    return json.loads(request["body"])["id"]


def test_receiver_down_for_a_day_then_every_event_arrives_exactly_once(client):
    receiver = FakeReceiver()
    receiver.down = True
    http.mount(HOOK, receiver)
    merchant = new_merchant(client)
    secret = merchant.post("/v1/webhook_endpoints", {"url": HOOK + "/kauri"}).json_body["secret"]

    # A day of trade while the receiver is down: a payment now, one after 1 h, one after 5 h.
    paid_at = {0: "order-a", 6: "order-b", 30: "order-c"}            # tick number -> reference
    for tick in range(24 * 6):
        if tick in paid_at:
            p = merchant.create_payment(merchant_reference=paid_at[tick]).json_body
            shopper_pays(client, p)
        out = scheduled(client, "retry_webhooks")
        assert out["outcome"] == "ok"
        clock.advance(TICK)
    assert len(receiver.requests) > 3 and not any(r["answered"] for r in receiver.requests)
    pending = list(EventModel.scan())
    assert len(pending) == 3 and {e.status for e in pending} == {"pending"}
    assert all(1 < e.attempts < notifications.MAX_ATTEMPTS for e in pending)  # still within the 2-day series

    # The receiver comes back. Each event is delivered at its next scheduled retry (<= 12 h away).
    receiver.down = False
    back = clock.now()
    for _ in range(13 * 6):
        scheduled(client, "retry_webhooks")
        if all(e.status == "delivered" for e in EventModel.scan()):
            break
        clock.advance(TICK)
    assert clock.now() - back <= timedelta(hours=12, minutes=10)
    assert {e.status for e in EventModel.scan()} == {"delivered"}

    answered = [r for r in receiver.requests if r["answered"]]
    assert Counter(event_id(r) for r in answered) == {e.event_id: 1 for e in EventModel.scan()}
    for r in answered:  # what the merchant got is signed and verifiable at the time it was sent
        sig = r["headers"][notifications.SIGNATURE_HEADER]
        t = int(sig.split(",")[0][2:])
        assert notifications.verify_signature(secret, sig, r["body"].decode(), now=t)
    assert sorted(json.loads(r["body"])["data"]["object"]["merchant_reference"] for r in answered) == \
        ["order-a", "order-b", "order-c"]

    # Two more days of ticks: nothing is ever sent again.
    sent = len(receiver.requests)
    for _ in range(12):
        clock.advance(timedelta(hours=4))
        assert scheduled(client, "retry_webhooks")["due"] == 0
    assert len(receiver.requests) == sent

    # Business as usual: a new payment's event goes out on the next tick, once.
    p = merchant.create_payment(merchant_reference="order-d").json_body
    shopper_pays(client, p)
    clock.advance(timedelta(minutes=1))
    assert scheduled(client, "retry_webhooks")["attempted"] == 1
    clock.advance(timedelta(minutes=1))
    assert scheduled(client, "retry_webhooks")["attempted"] == 0
    assert [json.loads(r["body"])["data"]["object"]["merchant_reference"]
            for r in receiver.requests[sent:]] == ["order-d"]


def test_a_second_run_in_the_same_minute_sends_nothing(client):
    receiver = FakeReceiver()
    http.mount(HOOK, receiver)
    merchant = new_merchant(client)
    merchant.post("/v1/webhook_endpoints", {"url": HOOK + "/kauri"})
    shopper_pays(client, merchant.create_payment().json_body)
    first = scheduled(client, "retry_webhooks")
    second = scheduled(client, "retry_webhooks")
    assert first["attempted"] == 1 and second["outcome"] in ("already_done", "ok")
    assert second.get("attempted", 0) == 0
    assert len(receiver.requests) == 1
