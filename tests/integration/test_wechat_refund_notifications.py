"""WeChat's refund result notifications (unsigned, result AES-encrypted in req_info): understood,
checked against our refund, applied exactly once like a refund query's answer, acknowledged."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib import clock, settings
from chalicelib.channels.wechat import sandbox, signing, wire
from chalicelib.services import balances
from chalicelib.store import sandbox as sandbox_store
from chalicelib.store.models import BalanceModel, EventModel, OpsRecordModel, RefundModel
from tests.integration.helpers import new_merchant, paid_payment


@pytest.fixture(autouse=True)
def frozen_clock(aws):
    clock.freeze()


@pytest.fixture
def merchant(client):
    return new_merchant(client)


@pytest.fixture
def paid(merchant, client):
    return paid_payment(client, merchant)


def refund_of(merchant, paid, amount=4000) -> dict:
    r = merchant.post(f"/v1/payments/{paid['id']}/refunds", {"amount": amount, "reason": "broken jar"})
    assert r.status_code == 201, r.body
    assert r.json_body["status"] == "processing"   # the sandbox settles refunds 10 s later
    return r.json_body


def refund_events(refund_id: str) -> list[str]:
    return sorted(e.type for e in EventModel.scan() if refund_id in e.payload and e.type.startswith("refund."))


def notify_state(refund_id: str) -> dict:
    return sandbox_store.get(f"wechat#refund#{settings.get().wechat.mch_id}#{refund_id}")["notify"]


def pending_balance(merchant) -> int:
    return BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance


def post_notification(client, inner: dict, api_key: str | None = None, **outer):
    cfg = settings.get().wechat
    body = {"return_code": "SUCCESS", "appid": cfg.appid, "mch_id": cfg.mch_id, "nonce_str": "n0nce",
            "req_info": signing.encrypt_req_info(wire.to_xml(inner, root_tag="root"), api_key or cfg.api_key)}
    body.update(outer)
    resp = client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=wire.to_xml(body))
    assert resp.status_code == 200
    return wire.from_xml(resp.body)["return_code"]


def test_refund_success_notification_from_the_sandbox_settles_the_refund_once(merchant, paid, client):
    refund = refund_of(merchant, paid)
    clock.advance(timedelta(seconds=11))
    assert sandbox.pump() == 1                  # WeChat posts the result to the refund's notify_url
    assert notify_state(refund["id"])["delivered"] is True   # ...and we answered SUCCESS
    got = merchant.get(f"/v1/payments/{paid['id']}/refunds/{refund['id']}").json_body
    assert got["status"] == "succeeded"
    assert RefundModel.get(refund["id"]).channel_refund_ref.startswith("5030")
    assert refund_events(refund["id"]) == ["refund.succeeded"]

    # WeChat resends (it never saw our answer): acknowledged again, applied once.
    order = sandbox_store.get(f"wechat#order#{settings.get().wechat.mch_id}#{paid['channel_order_id']}")
    again = sandbox._refund_notification(order, order["refunds"][0], "SUCCESS")
    resp = client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=wire.to_xml(again))
    assert wire.from_xml(resp.body)["return_code"] == "SUCCESS"
    assert refund_events(refund["id"]) == ["refund.succeeded"]


def available_balance(merchant) -> int:
    return BalanceModel.get(f"M:{merchant.merchant.id}:NZD:available").balance


def test_refund_closed_by_wechat_fails_the_refund_and_gives_the_money_back(client):
    # Funds released first: the unreleased case of refunds.fail is helper A's fix (issue 7, Refunds).
    merchant = new_merchant(client, holding_days=0)
    paid = paid_payment(client, merchant)
    assert balances.release_funds()["released"] == 1
    before = available_balance(merchant)
    refund = refund_of(merchant, paid)
    assert available_balance(merchant) < before
    closed = client.http.post("/sandbox/wechat/simulate/refund", headers={"Content-Type": "application/json"},
                              body=json.dumps({"out_refund_no": refund["id"]}).encode())
    assert closed.status_code == 200, closed.body
    assert closed.json_body["notify"]["delivered"] is True
    got = merchant.get(f"/v1/payments/{paid['id']}/refunds/{refund['id']}").json_body
    assert got["status"] == "failed"
    assert available_balance(merchant) == before
    assert refund_events(refund["id"]) == ["refund.failed"]


def test_refund_notification_under_another_key_is_answered_fail_and_changes_nothing(merchant, paid, client):
    refund = refund_of(merchant, paid)
    inner = {"out_refund_no": refund["id"], "out_trade_no": paid["channel_order_id"], "refund_status": "SUCCESS",
             "refund_fee": 4000, "total_fee": 10000, "refund_id": "50300000000000000000000000001"}
    assert post_notification(client, inner, api_key="f" * 32) == "FAIL"
    assert post_notification(client, inner, req_info="bm90IGJsb2Nrcw==") == "FAIL"
    assert RefundModel.get(refund["id"]).status == "processing"
    assert refund_events(refund["id"]) == []


def test_refund_notification_that_is_not_ours_is_answered_fail_and_recorded(merchant, paid, client):
    refund = refund_of(merchant, paid)
    base = {"out_refund_no": refund["id"], "out_trade_no": paid["channel_order_id"], "refund_status": "SUCCESS",
            "refund_fee": 4000, "total_fee": 10000}
    assert post_notification(client, {**base, "out_refund_no": "re_00000000000000000000"}) == "FAIL"
    assert post_notification(client, {**base, "refund_fee": 9999}) == "FAIL"
    assert post_notification(client, {**base, "out_trade_no": "pay_00000000000000000000"}) == "FAIL"
    assert RefundModel.get(refund["id"]).status == "processing"
    assert [r.kind for r in OpsRecordModel.scan() if r.ref == refund["id"]] == ["refund_notify_mismatch"]
    assert post_notification(client, base) == "SUCCESS"   # the genuine one still applies
    assert RefundModel.get(refund["id"]).status == "succeeded"
