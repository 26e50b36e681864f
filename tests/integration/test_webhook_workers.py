"""Webhook and staff-alert workers under slow receivers and killed runs (issue 13): one worker per event
and endpoint, each 2xx kept as it comes, an attempt counts when it starts, and the run stops in time."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from requests.adapters import BaseAdapter

from chalicelib import clock, http
from chalicelib.services import notifications
from chalicelib.store.alerts import AlertModel
from chalicelib.store.models import EventModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import scheduled
from tests.support.transport import ChaliceAdapter, _response

HOOKS = "https://hooks.merchant.test"
OA = "http://kauri.test/sandbox/wechat_oa"
ALICE = "oAlice_5mT2qG9xW3rY7uP1sK4dH8"


class LambdaKilled(BaseException):
    """Lambda's timeout: the run stops mid-send, nothing after it runs."""


class Receivers(BaseAdapter):
    """Every endpoint of the merchant; each answer takes `seconds` (Kauri's clock moves on meanwhile)."""

    def __init__(self, seconds: int = 0):
        super().__init__()
        self.seconds = seconds
        self.hits: Counter = Counter()
        self.on_request = None
        self.kill = False

    def send(self, request, **kwargs):
        self.hits[request.url] += 1
        if self.kill:
            raise LambdaKilled()
        clock.advance(timedelta(seconds=self.seconds))
        if self.on_request:
            self.on_request(self)
        return _response(request, 200, {"Content-Type": "text/plain"}, b"ok")

    def close(self):
        pass


@pytest.fixture
def receivers(client):
    r = Receivers()
    http.mount(HOOKS, r)
    return r


def merchant_with_endpoints(client, n: int):
    merchant = new_merchant(client)
    for i in range(n):
        assert merchant.post("/v1/webhook_endpoints", {"url": f"{HOOKS}/ep{i}"}).status_code == 201
    return merchant


def one_event(merchant, client) -> EventModel:
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    [event] = [e for e in EventModel.scan() if p["id"] in e.payload]
    return event


def test_seven_slow_receivers_get_the_event_once_even_when_the_next_worker_comes(client, receivers):
    merchant = merchant_with_endpoints(client, 7)
    receivers.seconds = 9                            # 7 x 9 s outlives a 60-second lease
    second_worker = []

    def next_minute_worker(r):
        if sum(r.hits.values()) == 7:
            second_worker.append(notifications.deliver_due())
    receivers.on_request = next_minute_worker
    event = one_event(merchant, client)
    assert notifications.deliver_due() == 1
    assert second_worker == [0]                      # the lease, renewed per send, was still held
    assert sorted(receivers.hits.values()) == [1] * 7
    done = EventModel.get(event.event_id)
    assert done.status == "delivered" and len(done.delivered_endpoints) == 7 and done.attempts == 1


def test_a_run_killed_mid_send_counts_its_attempt_and_the_event_ends_failed(client, receivers):
    merchant = merchant_with_endpoints(client, 3)
    receivers.kill = True
    event = one_event(merchant, client)
    killed_at = clock.epoch()
    with pytest.raises(LambdaKilled):
        notifications.deliver_due()
    first = EventModel.get(event.event_id)
    assert first.attempts == 1
    assert first.next_attempt_at - killed_at == max(notifications.LEASE_SECONDS, notifications.BACKOFF[0])
    runs = 1
    while first.status == "pending" and runs < 3 * notifications.MAX_ATTEMPTS:
        clock.advance(timedelta(seconds=int(first.next_attempt_at) - clock.epoch()))
        try:
            notifications.deliver_due()
        except LambdaKilled:
            pass
        runs += 1
        first = EventModel.get(event.event_id)
    assert first.status == "failed" and first.attempts == notifications.MAX_ATTEMPTS
    assert sum(receivers.hits.values()) == notifications.MAX_ATTEMPTS  # each attempt died on its first send


class SendsLeft:
    """A run's budget with time for `n` sends."""

    def __init__(self, n):
        self.n = n

    def left_ms(self):
        return 10_000 if self.n > 0 else 0

    def allows(self, ms):
        return self.n > 0


def test_a_run_stops_before_the_lambda_times_out_and_keeps_what_it_delivered(client, receivers):
    merchant = merchant_with_endpoints(client, 5)
    event = one_event(merchant, client)
    budget = SendsLeft(3)

    def spend(r):
        budget.n -= 1
    receivers.on_request = spend
    assert notifications.deliver(EventModel.get(event.event_id), budget) is True
    partial = EventModel.get(event.event_id)
    assert len(partial.delivered_endpoints) == 3 and partial.status == "pending" and partial.attempts == 1
    clock.advance(timedelta(seconds=int(partial.next_attempt_at) - clock.epoch()))
    receivers.on_request = None
    assert notifications.deliver_due() == 1
    assert sorted(receivers.hits.values()) == [1] * 5   # the second run sent only to the two left
    assert EventModel.get(event.event_id).status == "delivered"


class OfficialAccountDiesOnSend(BaseAdapter):
    """WeChat's token call answers; the run is killed while the template message is being sent."""

    def __init__(self, client):
        super().__init__()
        self.inner = ChaliceAdapter(client)
        self.sends = 0

    def send(self, request, **kwargs):
        if "/message/template/send" in request.url:
            self.sends += 1
            raise LambdaKilled()
        return self.inner.send(request, **kwargs)

    def close(self):
        pass


def test_a_staff_alert_run_killed_mid_send_counts_its_attempt_and_the_alert_ends_failed(client):
    merchant = new_merchant(client, live=False)
    assert merchant.post("/v1/alert_bindings", {"openid": ALICE, "store_name": "Ponsonby"}).status_code == 201
    oa = OfficialAccountDiesOnSend(client)
    http.mount(OA, oa)
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    [alert] = [a for a in AlertModel.scan() if a.payment_id == p["id"]]
    runs = 0
    while alert.status == "pending" and runs < 3 * notifications.MAX_ATTEMPTS:
        clock.advance(timedelta(seconds=max(60, int(alert.next_attempt_at) - clock.epoch())))
        try:
            scheduled(client, "merchant_alerts")
        except LambdaKilled:
            pass
        runs += 1
        alert = AlertModel.get(alert.alert_id)
        if runs == 1:
            assert alert.attempts == 1
    assert alert.status == "failed" and alert.attempts == notifications.MAX_ATTEMPTS
    assert oa.sends == notifications.MAX_ATTEMPTS
