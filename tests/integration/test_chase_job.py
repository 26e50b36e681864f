"""chase_payments every 5 minutes: payments whose callback never came, expired ones, races with late
callbacks; idempotent per 5-minute period, dry_run and merchant_id for ops."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from requests.adapters import BaseAdapter

from chalicelib import channels, clock, http
from chalicelib.channels.base import ChannelStatus, MerchantChannelConfig, OrderRef
from chalicelib.services import callbacks
from chalicelib.store import sandbox as sandbox_store
from chalicelib.store.models import EventModel, PostingModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import by_hand, scheduled
from tests.support.transport import ChaliceAdapter, FakeReceiver, Faulty

BASE = "http://kauri.test"


@pytest.fixture(autouse=True)
def _period_aligned_clock(aws):
    """Job periods are wall-clock slots: start 5 s into a 5-minute slot, so 'the same period' is certain
    (on the real clock a run near a slot boundary crossed into the next one now and then)."""
    clock.freeze(datetime(2026, 11, 25, 2, 0, 5, tzinfo=timezone.utc))


@pytest.fixture
def merchant(client):
    return new_merchant(client)


def lose_callbacks():
    """WeChat cannot reach /callbacks (our edge is down): the payment happens, the news does not."""
    dead = FakeReceiver()
    dead.down = True
    http.mount(BASE + "/callbacks", dead)


def restore_callbacks(client):
    http.mount(BASE + "/callbacks", ChaliceAdapter(client))


def effects(payment_id: str) -> dict:
    return {"postings": sum(1 for p in PostingModel.scan() if p.ref == payment_id),
            "events": sorted(e.type for e in EventModel.scan() if payment_id in e.payload)}


def status(merchant, payment_id: str) -> str:
    return merchant.get(f"/v1/payments/{payment_id}").json_body["status"]


def next_period():
    clock.advance(timedelta(minutes=5))


def test_lost_callback_is_recovered_by_the_chase_once_even_when_the_callback_arrives_later(merchant, client):
    p = merchant.create_payment(amount=4200).json_body
    lose_callbacks()
    assert shopper_pays(client, p)["delivered"] is False
    assert status(merchant, p["id"]) == "pending"
    next_period()
    out = scheduled(client, "chase_payments")
    assert out["outcome"] == "ok" and out["checked"] == 1 and out["succeeded"] == 1
    assert status(merchant, p["id"]) == "succeeded"
    assert effects(p["id"]) == {"postings": 1, "events": ["payment.succeeded"]}
    # WeChat's retry gets through later: acknowledged, changes nothing.
    restore_callbacks(client)
    clock.advance(timedelta(seconds=30))
    assert client.http.post("/sandbox/wechat/simulate/pump").json_body["tried"] == 1
    order = sandbox_store.get(f"wechat#order#10000100#{p['channel_order_id']}")
    assert order["notify"]["delivered"] is True
    assert effects(p["id"]) == {"postings": 1, "events": ["payment.succeeded"]}
    # A second run in the same 5-minute period is a cheap no-op with the first run's numbers.
    again = scheduled(client, "chase_payments")
    assert again["outcome"] == "already_done" and again["previous"]["succeeded"] == 1


def test_expired_payment_is_closed_at_the_channel_and_locally(merchant, client):
    p = merchant.create_payment(expires_in=120).json_body
    # This channel order outlives ours (the channel ignored time_expire): it would still take money.
    sandbox_store.update(f"wechat#order#10000100#{p['channel_order_id']}",
                         lambda o: {**o, "expire_at": o["expire_at"] + 3600})
    ref = OrderRef(p["channel_order_id"], MerchantChannelConfig({"sub_mch_id": "20000100"}))
    clock.advance(timedelta(minutes=3))
    assert channels.get("wechat").query(ref).status is ChannelStatus.PENDING
    out = scheduled(client, "chase_payments")
    assert out["closed"] == 1 and out["errors"] == 0
    assert channels.get("wechat").query(ref).status is ChannelStatus.CLOSED   # closed at WeChat first
    assert status(merchant, p["id"]) == "closed"
    assert effects(p["id"]) == {"postings": 0, "events": ["payment.closed"]}
    r = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                         body=f'{{"out_trade_no": "{p["channel_order_id"]}"}}'.encode())
    assert r.status_code == 409  # the shopper can no longer pay it
    next_period()
    assert scheduled(client, "chase_payments")["checked"] == 0  # closed payments are not chased again


def test_payment_the_channel_expired_itself_is_closed_with_one_event(merchant, client):
    p = merchant.create_payment(expires_in=120).json_body
    clock.advance(timedelta(minutes=3))
    assert scheduled(client, "chase_payments")["closed"] == 1
    next_period()
    assert scheduled(client, "chase_payments")["checked"] == 0
    assert status(merchant, p["id"]) == "closed"
    assert effects(p["id"]) == {"postings": 0, "events": ["payment.closed"]}


class CallbackDuringQuery(BaseAdapter):
    """The WeChat sandbox answers the chase's orderquery, and right then its notification lands."""

    def __init__(self, client):
        super().__init__()
        self.client = client
        self.inner = ChaliceAdapter(client)
        self.fired = 0

    def send(self, request, **kwargs):
        resp = self.inner.send(request, **kwargs)
        if request.url.endswith("/pay/orderquery") and not self.fired:
            self.fired += 1
            restore_callbacks(self.client)
            http.mount(BASE + "/sandbox/wechat", self)  # (re-mount: the session was rebuilt)
            clock.advance(timedelta(seconds=30))
            assert self.client.http.post("/sandbox/wechat/simulate/pump").json_body["tried"] == 1
        return resp

    def close(self):
        pass


def test_chase_and_callback_racing_have_one_effect(merchant, client, caplog):
    caplog.set_level(logging.INFO)
    p = merchant.create_payment(amount=5000).json_body
    lose_callbacks()
    shopper_pays(client, p)
    next_period()
    racer = CallbackDuringQuery(client)
    http.mount(BASE + "/sandbox/wechat", racer)
    out = scheduled(client, "chase_payments")
    assert racer.fired == 1
    assert out["succeeded"] == 1 and out["errors"] == 0  # the callback won; the chase saw it was done
    assert '"event": "payment_transition_conflict"' in caplog.text  # the chase's write lost the race
    assert effects(p["id"]) == {"postings": 1, "events": ["payment.succeeded"]}


def test_chase_and_callbacks_in_parallel_threads_have_one_effect(merchant, client):
    from tests.integration.test_callbacks_exactly_once import notification

    p = merchant.create_payment(amount=10000).json_body
    lose_callbacks()
    shopper_pays(client, p)
    body = notification(p)  # the same order's notification, signed with the institution key
    next_period()
    barrier = threading.Barrier(4)
    results = []

    def callback():
        barrier.wait()
        results.append(callbacks.handle("wechat", body, {"Content-Type": "text/xml"}).body)

    def chase():
        barrier.wait()
        results.append(scheduled(client, "chase_payments"))

    threads = [threading.Thread(target=callback) for _ in range(3)] + [threading.Thread(target=chase)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert effects(p["id"]) == {"postings": 1, "events": ["payment.succeeded"]}
    assert status(merchant, p["id"]) == "succeeded"


def test_dry_run_changes_nothing_and_merchant_id_scopes_the_run(client):
    a = new_merchant(client, name="A Ltd", sub_mch_id="20000100")
    b = new_merchant(client, name="B Ltd", sub_mch_id="20000200")
    pa = a.create_payment().json_body
    pb = b.create_payment().json_body
    lose_callbacks()
    shopper_pays(client, pa)
    shopper_pays(client, pb)
    next_period()
    look = by_hand(client, "chase_payments", {"dry_run": True})
    assert look["outcome"] == "ok" and look["dry_run"] is True and look["succeeded"] == 2
    assert status(a, pa["id"]) == status(b, pb["id"]) == "pending"
    only_a = by_hand(client, "chase_payments", {"merchant_id": a.merchant.id})
    assert only_a["merchant_id"] == a.merchant.id and only_a["succeeded"] == 1
    assert status(a, pa["id"]) == "succeeded" and status(b, pb["id"]) == "pending"
    everyone = scheduled(client, "chase_payments")  # the period's own run is separate from a scoped one
    assert everyone["outcome"] == "ok" and everyone["succeeded"] == 1
    assert status(b, pb["id"]) == "succeeded"
    assert by_hand(client, "chase_payments", {"merchant_id": "nope"})["outcome"] == "bad_params"


def test_close_of_an_order_paid_meanwhile_whose_follow_up_query_fails_is_503_and_the_chase_books_it(merchant, client):
    """WeChat answers the close with ORDERPAID (the shopper paid; the callback never came), then cannot be
    asked: a clear 503 in our error shape, nothing changed here, and the chase books the payment later."""
    p = merchant.create_payment(amount=4200).json_body
    lose_callbacks()
    shopper_pays(client, p)
    net = Faulty(ChaliceAdapter(client))
    http.mount(BASE + "/sandbox/wechat", net)
    net.faults["/sandbox/wechat/pay/orderquery"] = "reset"
    r = merchant.post(f"/v1/payments/{p['id']}/close")
    assert r.status_code == 503, r.body
    assert r.json_body["error"]["code"] == "channel_unavailable" and r.json_body["error"]["type"]
    assert status(merchant, p["id"]) == "pending" and effects(p["id"]) == {"postings": 0, "events": []}
    net.faults.clear()
    next_period()
    assert scheduled(client, "chase_payments")["succeeded"] == 1
    assert status(merchant, p["id"]) == "succeeded"
    assert effects(p["id"]) == {"postings": 1, "events": ["payment.succeeded"]}
    again = merchant.post(f"/v1/payments/{p['id']}/close")
    assert again.status_code == 409 and again.json_body["error"]["code"] == "payment_succeeded"
