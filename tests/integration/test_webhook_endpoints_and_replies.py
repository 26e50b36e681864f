"""Webhook endpoints: a documented limit per merchant, enforced atomically; delete and disable. And every
POST stores its reply in the transaction of its change, so a crash between the two never repeats it."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from chalicelib import clock, http
from chalicelib.services import merchants, notifications
from chalicelib.store import idempotency as idempotency_store
from chalicelib.store.models import EventModel, WebhookEndpointModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.transport import FakeReceiver

HOOK = "https://hooks.merchant.test"


@pytest.fixture
def merchant(client):
    return new_merchant(client)


@pytest.fixture
def receiver(client):
    r = FakeReceiver()
    http.mount(HOOK, r)
    return r


def listed(merchant) -> list[dict]:
    return merchant.get("/v1/webhook_endpoints").json_body["data"]


def test_at_most_the_documented_number_of_endpoints_and_a_deleted_one_frees_its_place(merchant):
    made = [merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/{i}"}) for i in range(merchants.MAX_WEBHOOK_ENDPOINTS)]
    assert all(r.status_code == 201 for r in made)
    over = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/one-too-many"})
    assert over.status_code == 400 and over.json_body["error"]["code"] == "too_many_webhook_endpoints"
    gone = merchant.client.http.delete(f"/v1/webhook_endpoints/{made[0].json_body['id']}",
                                       headers={"Authorization": f"Bearer {merchant.key}"})
    assert gone.status_code == 200 and gone.json_body["deleted"] is True
    assert len(listed(merchant)) == merchants.MAX_WEBHOOK_ENDPOINTS - 1
    again = merchant.client.http.delete(f"/v1/webhook_endpoints/{made[0].json_body['id']}",
                                        headers={"Authorization": f"Bearer {merchant.key}"})
    assert again.status_code == 404
    assert merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/fits-now"}).status_code == 201


def test_endpoints_made_before_the_counter_existed_count_toward_the_limit(merchant):
    from chalicelib.store import merchants as store

    for i in range(merchants.MAX_WEBHOOK_ENDPOINTS):
        store.new_endpoint(merchant.merchant.id, f"we_old{i:012d}", f"{HOOK}/old{i}", "whsec_old", True).save()
    over = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/new"})
    assert over.status_code == 400 and over.json_body["error"]["code"] == "too_many_webhook_endpoints"
    gone = merchant.client.http.delete("/v1/webhook_endpoints/we_old000000000003",
                                       headers={"Authorization": f"Bearer {merchant.key}"})
    assert gone.status_code == 200
    assert merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/new"}).status_code == 201
    assert merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/newer"}).status_code == 400
    assert len(listed(merchant)) == merchants.MAX_WEBHOOK_ENDPOINTS


def test_concurrent_registrations_never_pass_the_limit(merchant):
    merchants.add_webhook_endpoint(merchant.merchant, True, f"{HOOK}/first")
    results, lock = ["created"], threading.Lock()

    def register(i):
        try:
            merchants.add_webhook_endpoint(merchant.merchant, True, f"{HOOK}/{i}")
            outcome = "created"
        except Exception as exc:  # the limit, or a transaction conflict with a concurrent twin
            outcome = getattr(exc, "code", type(exc).__name__)
        with lock:
            results.append(outcome)
    threads = [threading.Thread(target=register, args=(i,)) for i in range(merchants.MAX_WEBHOOK_ENDPOINTS + 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [e for e in WebhookEndpointModel.query(merchant.merchant.id) if e.endpoint_id.startswith("we_")]
    assert len(stored) == results.count("created") <= merchants.MAX_WEBHOOK_ENDPOINTS
    assert "too_many_webhook_endpoints" in results


def test_a_disabled_endpoint_gets_nothing_until_enabled_again(merchant, client, receiver):
    ep = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/a"}).json_body
    r = merchant.post(f"/v1/webhook_endpoints/{ep['id']}", {"disabled": True})
    assert r.status_code == 200 and r.json_body["enabled"] is False
    assert listed(merchant) == [{"id": ep["id"], "object": "webhook_endpoint", "livemode": True, "url": f"{HOOK}/a",
                               "enabled": False}]
    shopper_pays(client, merchant.create_payment().json_body)
    notifications.deliver_due()
    assert receiver.requests == []
    assert merchant.post(f"/v1/webhook_endpoints/{ep['id']}", {"disabled": False}).json_body["enabled"] is True
    shopper_pays(client, merchant.create_payment(merchant_reference="order-2").json_body)
    notifications.deliver_due()
    assert len(receiver.requests) == 1
    bad = merchant.post(f"/v1/webhook_endpoints/{ep['id']}", {"disabled": "yes"})
    assert bad.status_code == 400
    assert merchant.post("/v1/webhook_endpoints/we_nope", {"disabled": True}).status_code == 404


@pytest.fixture
def reply_write_crashes(monkeypatch):
    """The Lambda dies right after the change, when a separate write would store the reply."""
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("Lambda timed out (test)")
    monkeypatch.setattr(idempotency_store, "complete", crash)
    return calls


def retry_after_the_lock(merchant, path, body, key):
    clock.advance(timedelta(seconds=idempotency_store.LOCK_SECONDS + 1))
    return merchant.post(path, body, headers={"Idempotency-Key": key})


def test_a_webhook_endpoint_post_replays_its_secret_after_a_crash(merchant, reply_write_crashes):
    first = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/a"}, headers={"Idempotency-Key": "ep-1"})
    assert first.status_code == 201 and reply_write_crashes == []
    again = retry_after_the_lock(merchant, "/v1/webhook_endpoints", {"url": f"{HOOK}/a"}, "ep-1")
    assert again.status_code == 201 and again.json_body == first.json_body
    assert len(listed(merchant)) == 1


def test_an_alert_binding_post_replays_its_201_after_a_crash(merchant, reply_write_crashes):
    body = {"openid": "oAlice_5mT2qG9xW3rY7uP1sK4dH8", "store_name": "Ponsonby"}
    first = merchant.post("/v1/alert_bindings", body, headers={"Idempotency-Key": "alb-1"})
    assert first.status_code == 201 and reply_write_crashes == []
    again = retry_after_the_lock(merchant, "/v1/alert_bindings", body, "alb-1")
    assert again.status_code == 201 and again.json_body == first.json_body


def test_a_close_replays_its_reply_after_a_crash(merchant, reply_write_crashes):
    p = merchant.create_payment().json_body
    first = merchant.post(f"/v1/payments/{p['id']}/close", {}, headers={"Idempotency-Key": "close-1"})
    assert first.status_code == 200 and first.json_body["status"] == "closed" and reply_write_crashes == []
    again = retry_after_the_lock(merchant, f"/v1/payments/{p['id']}/close", {}, "close-1")
    assert again.status_code == 200 and again.json_body == first.json_body


def test_a_resend_is_queued_once_however_often_the_crashed_request_is_retried(merchant, client, receiver, monkeypatch):
    merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/a"})
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    notifications.deliver_due()
    [event] = [e for e in EventModel.scan() if p["id"] in e.payload]
    assert len(receiver.requests) == 1

    def crash(*args, **kwargs):
        raise RuntimeError("Lambda timed out (test)")
    monkeypatch.setattr(idempotency_store, "complete", crash)
    path = f"/v1/events/{event.event_id}/resend"
    first = merchant.post(path, {}, headers={"Idempotency-Key": "resend-1"})
    assert len(receiver.requests) == 2          # resent once (the crash came after, updating the reply)
    again = retry_after_the_lock(merchant, path, {}, "resend-1")
    assert again.status_code == 200 and again.json_body["id"] == event.event_id
    assert len(receiver.requests) == 2          # the retry replays; nothing is sent a third time
    assert first.status_code == 500


def test_a_test_key_can_neither_see_disable_nor_delete_a_live_endpoint(merchant):
    from tests.integration.helpers import MerchantApi

    ep = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/live"}).json_body
    test_key = MerchantApi(merchant.client, merchants.issue_key(merchant.merchant.id, livemode=False), merchant.merchant)
    assert listed(test_key) == []
    assert test_key.post(f"/v1/webhook_endpoints/{ep['id']}", {"disabled": True}).status_code == 404
    gone = test_key.client.http.delete(f"/v1/webhook_endpoints/{ep['id']}",
                                       headers={"Authorization": f"Bearer {test_key.key}"})
    assert gone.status_code == 404
    assert listed(merchant)[0]["enabled"] is True


def test_the_stored_reply_of_a_new_endpoint_never_holds_its_secret_in_clear(merchant):
    from chalicelib.store.models import IdempotencyModel

    first = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/sealed"}, headers={"Idempotency-Key": "ep-s"})
    assert first.status_code == 201
    secret = first.json_body["secret"]
    stored = [r.response_body or "" for r in IdempotencyModel.scan()]
    assert stored and not any(secret in body for body in stored)
    again = merchant.post("/v1/webhook_endpoints", {"url": f"{HOOK}/sealed"}, headers={"Idempotency-Key": "ep-s"})
    assert again.status_code == 201 and again.json_body["secret"] == secret
