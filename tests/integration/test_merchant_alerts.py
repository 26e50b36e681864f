"""Staff alerts in WeChat: bind an Official Account openid, get a template message per successful
payment; written with the payment's success, sent by merchant_alerts, retried, never twice."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import botocore.endpoint
import pytest
import requests
from requests.adapters import BaseAdapter

from chalicelib import clock, http, settings
from chalicelib.channels.wechat_oa import client as oa_client
from chalicelib.services import notifications
from chalicelib.store.alerts import AlertModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.integration.test_callbacks_exactly_once import notification
from tests.support.jobs import by_hand, scheduled
from tests.support.transport import ChaliceAdapter, FakeReceiver

BASE = "http://kauri.test"
OA = BASE + "/sandbox/wechat_oa"
ALICE = "oAlice_5mT2qG9xW3rY7uP1sK4dH8"
BOB = "oBob_9nQ3wE6rT1yU4iO7pA2sD5fG"


@pytest.fixture(autouse=True)
def _slot_aligned_clock(aws):
    """Time moves only when a test moves it (chalicelib/clock.py): backoffs and due times are exact however
    slow the box, and the per-minute job periods start 5 s into a slot. On the running clock a second
    passing between a send and the check made a 15 s backoff read 14 s under load."""
    clock.freeze(datetime(2026, 11, 25, 2, 0, 5, tzinfo=timezone.utc))


@pytest.fixture(autouse=True)
def fresh_tokens():
    oa_client.forget_tokens()
    yield
    oa_client.forget_tokens()


@pytest.fixture
def merchant(client):
    return new_merchant(client, live=False)  # test mode: alerts mark the reference TEST-


def bind(merchant, openid, store_name="Ponsonby store"):
    return merchant.post("/v1/alert_bindings", {"openid": openid, "store_name": store_name})


def inbox(client, openid) -> list[dict]:
    return client.http.get(f"/sandbox/wechat_oa/simulate/inbox/{openid}").json_body["messages"]


def alerts_of(payment_id) -> list:
    return [a for a in AlertModel.scan() if a.payment_id == payment_id]


def tick(client) -> dict:
    clock.advance(timedelta(minutes=1))
    return scheduled(client, "merchant_alerts")


def test_staff_bind_list_and_unbind_their_openid(merchant, client):
    r = bind(merchant, ALICE, "Ponsonby store")
    assert r.status_code == 201, r.body
    b = r.json_body
    assert b["id"].startswith("alb_") and b["object"] == "alert_binding" and b["openid"] == ALICE
    assert bind(merchant, BOB, "Newmarket").status_code == 201
    listed = merchant.get("/v1/alert_bindings").json_body["data"]
    assert {x["openid"]: x["store_name"] for x in listed} == {ALICE: "Ponsonby store", BOB: "Newmarket"}
    assert bind(merchant, ALICE, "Another").status_code == 409                       # one binding per openid
    assert bind(merchant, "not an openid!").status_code == 400
    assert bind(merchant, BOB + "x", "S" * 21).status_code == 400                   # the template's 20 chars
    assert merchant.post("/v1/alert_bindings", {"openid": BOB + "y", "store_name": "x", "x": 1}).status_code == 400
    assert client.http.get("/v1/alert_bindings").status_code == 401
    other = new_merchant(client, name="Other", sub_mch_id="20000200")
    assert other.get("/v1/alert_bindings").json_body["data"] == []
    assert client.http.delete(f"/v1/alert_bindings/{b['id']}", headers=other._headers()).status_code == 404
    assert client.http.delete(f"/v1/alert_bindings/{b['id']}", headers=merchant._headers()).status_code == 200
    assert client.http.delete(f"/v1/alert_bindings/{b['id']}", headers=merchant._headers()).status_code == 404
    assert [x["openid"] for x in merchant.get("/v1/alert_bindings").json_body["data"]] == [BOB]


def test_each_bound_openid_gets_one_template_message_per_successful_payment(merchant, client):
    bind(merchant, ALICE, "Ponsonby store")
    bind(merchant, BOB, "Newmarket")
    p = merchant.create_payment(amount=1250, merchant_reference="order-77").json_body
    shopper_pays(client, p)
    # Written with the payment's success, before any job ran.
    queued = alerts_of(p["id"])
    assert sorted(a.openid for a in queued) == sorted([ALICE, BOB]) and {a.status for a in queued} == {"pending"}

    out = tick(client)
    assert out["outcome"] == "ok" and out["delivered"] == 2 and out["failed"] == 0
    paid_at = merchant.get(f"/v1/payments/{p['id']}").json_body["paid_at"]
    local = datetime.strptime(paid_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC")) \
        .astimezone(ZoneInfo("Pacific/Auckland")).strftime("%Y-%m-%d %H:%M")
    [to_alice] = inbox(client, ALICE)
    assert to_alice["data"] == {"amount1": "NZD 12.50", "thing2": "Ponsonby store", "time3": local,
                                "character_string4": "TEST-order-77"}
    [to_bob] = inbox(client, BOB)
    assert to_bob["data"]["thing2"] == "Newmarket"
    assert {a.status for a in alerts_of(p["id"])} == {"delivered"}
    assert {a.msgid for a in alerts_of(p["id"])} == {to_alice["msgid"], to_bob["msgid"]}
    # Later runs and a duplicate callback send nothing more.
    for _ in range(3):
        assert tick(client)["due"] == 0
    r = client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=notification(p))
    assert b"SUCCESS" in r.body
    assert len(alerts_of(p["id"])) == 2 and tick(client)["due"] == 0
    assert len(inbox(client, ALICE)) == 1 and len(inbox(client, BOB)) == 1


def test_payments_recovered_by_the_chase_alert_too_and_failed_ones_do_not(merchant, client):
    bind(merchant, ALICE)
    lost = merchant.create_payment(merchant_reference="lost-callback").json_body
    dead = FakeReceiver()
    dead.down = True
    http.mount(BASE + "/callbacks", dead)
    shopper_pays(client, lost)
    http.mount(BASE + "/callbacks", ChaliceAdapter(client))
    failed = merchant.create_payment(merchant_reference="declined").json_body
    shopper_pays(client, failed, outcome="fail")
    clock.advance(timedelta(minutes=5))
    assert scheduled(client, "chase_payments")["succeeded"] == 1
    assert len(alerts_of(lost["id"])) == 1 and alerts_of(failed["id"]) == []
    tick(client)
    assert [m["data"]["character_string4"] for m in inbox(client, ALICE)] == ["TEST-lost-callback"]


def test_access_token_is_fetched_once_and_renewed_before_it_expires(merchant, client):
    bind(merchant, ALICE)
    for n in range(3):
        shopper_pays(client, merchant.create_payment(merchant_reference=f"o-{n}").json_body)
        assert tick(client)["delivered"] == 1
    assert client.http.get("/sandbox/wechat_oa/simulate/stats").json_body["tokens_issued"] == 1
    clock.advance(timedelta(seconds=7200 - 200))    # within our 5-minute renewal margin
    shopper_pays(client, merchant.create_payment(merchant_reference="o-late").json_body)
    assert tick(client)["delivered"] == 1
    assert client.http.get("/sandbox/wechat_oa/simulate/stats").json_body["tokens_issued"] == 2
    assert len(inbox(client, ALICE)) == 4


def test_official_account_down_is_retried_with_backoff_and_delivered_once(merchant, client):
    bind(merchant, ALICE)
    down = FakeReceiver()
    down.down = True
    http.mount(OA, down)
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    assert tick(client)["retrying"] == 1
    [alert] = alerts_of(p["id"])
    assert alert.attempts == 1 and alert.last_error == "NETWORK"
    assert alert.next_attempt_at - clock.epoch() == notifications.BACKOFF[0]
    assert by_hand(client, "merchant_alerts", {"force": True})["due"] == 0    # not before its backoff
    for wait in notifications.BACKOFF[:3]:   # the schedule fires each minute: at least a minute apart
        clock.advance(timedelta(seconds=max(wait, 60)))
        assert scheduled(client, "merchant_alerts")["retrying"] == 1
    http.mount(OA, ChaliceAdapter(client))                            # WeChat is back
    clock.advance(timedelta(seconds=notifications.BACKOFF[3]))
    assert scheduled(client, "merchant_alerts")["delivered"] == 1
    assert len(inbox(client, ALICE)) == 1 and alerts_of(p["id"])[0].attempts == 5
    for _ in range(3):
        assert tick(client)["due"] == 0
    assert len(inbox(client, ALICE)) == 1


class LostAnswer(BaseAdapter):
    """WeChat receives and sends the first template message, but its answer never reaches us."""

    def __init__(self, client):
        super().__init__()
        self.inner = ChaliceAdapter(client)
        self.lost = 0

    def send(self, request, **kwargs):
        resp = self.inner.send(request, **kwargs)
        if "/message/template/send" in request.url and not self.lost:
            self.lost += 1
            raise requests.exceptions.ReadTimeout("answer lost (test)")
        return resp

    def close(self):
        pass


def test_a_resend_after_a_lost_answer_is_deduplicated_by_client_msg_id(merchant, client):
    bind(merchant, ALICE)
    lossy = LostAnswer(client)
    http.mount(OA, lossy)
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    assert tick(client)["retrying"] == 1 and lossy.lost == 1
    assert len(inbox(client, ALICE)) == 1                 # it did arrive
    assert tick(client)["delivered"] == 1
    [msg] = inbox(client, ALICE)                           # same client_msg_id: WeChat sent nothing new
    [alert] = alerts_of(p["id"])
    assert msg["client_msg_id"] == alert.alert_id and alert.msgid == msg["msgid"]


def test_an_openid_that_unfollowed_fails_at_once_and_is_not_retried(merchant, client, caplog):
    caplog.set_level(logging.INFO)
    bind(merchant, ALICE)
    client.http.post("/sandbox/wechat_oa/simulate/unfollow", headers={"Content-Type": "application/json"},
                     body=json.dumps({"openid": ALICE}).encode())
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    assert tick(client)["failed"] == 1
    [alert] = alerts_of(p["id"])
    assert alert.status == "failed" and alert.last_error == "43004" and alert.attempts == 1
    assert '"event": "merchant_alert_failed"' in caplog.text
    clock.advance(timedelta(days=1))
    assert scheduled(client, "merchant_alerts")["due"] == 0


def test_unbinding_cancels_alerts_not_yet_sent(merchant, client):
    b = bind(merchant, ALICE).json_body
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    client.http.delete(f"/v1/alert_bindings/{b['id']}", headers=merchant._headers())
    assert tick(client)["cancelled"] == 1
    assert inbox(client, ALICE) == [] and alerts_of(p["id"])[0].status == "cancelled"


def test_dry_run_and_merchant_scope(client):
    a = new_merchant(client, name="A Ltd", sub_mch_id="20000100")
    b = new_merchant(client, name="B Ltd", sub_mch_id="20000200")
    bind(a, ALICE)
    bind(b, BOB)
    shopper_pays(client, a.create_payment().json_body)
    shopper_pays(client, b.create_payment().json_body)
    clock.advance(timedelta(minutes=1))
    look = by_hand(client, "merchant_alerts", {"dry_run": True})
    assert look["due"] == 2 and look["delivered"] == 0 and inbox(client, ALICE) == []
    only_a = by_hand(client, "merchant_alerts", {"merchant_id": a.merchant.id})
    assert only_a["delivered"] == 1 and len(inbox(client, ALICE)) == 1 and inbox(client, BOB) == []
    assert scheduled(client, "merchant_alerts")["delivered"] == 1 and len(inbox(client, BOB)) == 1


class DynamoCalls:
    """Every DynamoDB request our code sends (the sandbox's own table left out: it is WeChat's side)."""

    def __init__(self):
        self.calls: list[str] = []
        self._real = botocore.endpoint.Endpoint.make_request

    def make_request(self, endpoint, operation_model, request_dict):
        body = request_dict.get("body") or b"{}"
        text = body.decode() if isinstance(body, bytes) else body
        if endpoint._endpoint_prefix == "dynamodb" and "kauri-test-sandbox" not in text:
            self.calls.append(operation_model.name)
        return self._real(endpoint, operation_model, request_dict)


def test_the_callback_stays_at_two_dynamodb_round_trips_with_alerts(merchant, client, monkeypatch):
    bind(merchant, ALICE)
    bind(merchant, BOB)
    shopper_pays(client, merchant.create_payment(merchant_reference="warm-up").json_body)
    p = merchant.create_payment(merchant_reference="counted").json_body
    counter = DynamoCalls()
    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request",
                        lambda self, om, rd: counter.make_request(self, om, rd))
    r = client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=notification(p))
    monkeypatch.undo()
    assert b"SUCCESS" in r.body
    # The payment (which carries the bindings it was created with), then everything at once.
    assert counter.calls == ["GetItem", "TransactWriteItems"]
    assert len(alerts_of(p["id"])) == 2


def test_appsecret_and_access_tokens_never_reach_logs_or_job_output(merchant, client, caplog):
    caplog.set_level(logging.INFO)
    bind(merchant, ALICE)
    shopper_pays(client, merchant.create_payment().json_body)
    out = tick(client)
    assert out["delivered"] == 1
    secret = settings.get().wechat_oa.appsecret
    [(token, _)] = oa_client._tokens.values()
    for text in (caplog.text, json.dumps(out), json.dumps(merchant.get("/v1/alert_bindings").json_body)):
        assert secret not in text and token not in text
