"""Refunds that fail, get lost or get garbled on the way (issue 7, "Refunds"): each test failed before its fix.

Everything goes through the real channel clients, their signing and the in-process sandboxes; network
trouble is a `Faulty` transport in front of the sandbox (tests/support/transport.py).
"""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from chalicelib import clock, http
from chalicelib.domain.fx import Rate
from chalicelib.services import balances, chase, fx, merchants
from chalicelib.store import balances as balance_store
from chalicelib.store.models import BalanceModel, OpsRecordModel, PaymentModel, PostingModel, RefundModel
from tests.conftest import BASE
from tests.integration.helpers import MerchantApi, new_merchant, shopper_pays
from tests.support.transport import ChaliceAdapter, Faulty

WECHAT_REFUND = "/sandbox/wechat/secapi/pay/refund"
WECHAT_REFUND_QUERY = "/sandbox/wechat/pay/refundquery"
PAYEASE_REFUND = "/sandbox/payease/merchant/refund/ref_ack_submit.jsp"


@pytest.fixture
def net(client):
    """The network between Kauri and the sandboxes, able to break on chosen paths."""
    faulty = Faulty(ChaliceAdapter(client))
    http.mount(BASE, faulty)
    return faulty


def paid(client, amount=10000, **extra):
    m = new_merchant(client, **extra)
    p = m.create_payment(amount=amount).json_body
    shopper_pays(client, p)
    return m, p


def wechat_refuses_refunds(client, p, refuse=True):
    r = client.http.post("/sandbox/wechat/simulate/refuse_refunds", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"], "refuse": refuse}).encode())
    assert r.status_code == 200, r.body


def buckets(mid, currency="NZD"):
    out = []
    for b in ("pending", "available"):
        try:
            out.append(int(BalanceModel.get(f"M:{mid}:{currency}:{b}").balance))
        except BalanceModel.DoesNotExist:
            out.append(0)
    return tuple(out)


def refund_status(m, p, refund_id):
    return m.get(f"/v1/payments/{p['id']}/refunds/{refund_id}").json_body["status"]


def test_refused_refund_on_unreleased_payment_returns_money_to_pending(client):
    m, p = paid(client)
    wechat_refuses_refunds(client, p)
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000})
    assert r.status_code == 201, r.body
    assert r.json_body["status"] == "failed"
    assert buckets(m.merchant.id) == (9800, 0)
    assert int(PaymentModel.get(p["id"]).refunded) == 0
    # and the money can be refunded again once the channel can pay it
    wechat_refuses_refunds(client, p, refuse=False)
    again = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 10000})
    assert again.status_code == 201 and again.json_body["status"] in ("processing", "succeeded")
    assert buckets(m.merchant.id) == (0, 0)


def test_one_refund_the_channel_refuses_does_not_stop_the_chase_for_the_others(client, net):
    a, pa = paid(client)
    b, pb = paid(client, name="Tui Cafe", sub_mch_id="20000101")
    net.faults[WECHAT_REFUND] = "reset"         # both refunds are lost before reaching WeChat
    ra = a.post(f"/v1/payments/{pa['id']}/refunds", {"amount": 4000}).json_body
    rb = b.post(f"/v1/payments/{pb['id']}/refunds", {"amount": 3000}).json_body
    assert (ra["status"], rb["status"]) == ("processing", "processing")
    net.faults.clear()
    wechat_refuses_refunds(client, pa)          # the first one's resend will be refused
    clock.advance(timedelta(seconds=30))
    out = chase.chase_payments()
    assert out["refunds_failed"] == 1 and out["refunds_resubmitted"] == 1
    clock.advance(timedelta(seconds=30))
    chase.chase_payments()
    assert (refund_status(a, pa, ra["id"]), refund_status(b, pb, rb["id"])) == ("failed", "succeeded")
    assert buckets(a.merchant.id) == (9800, 0)


@pytest.mark.parametrize("fault", ["404", "garble", "timeout"])
def test_an_unreadable_or_missing_wechat_refund_answer_is_not_a_refusal(client, net, fault):
    m, p = paid(client)
    net.faults[WECHAT_REFUND] = fault           # WeChat took the refund; its answer is lost or mangled
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 6000})
    assert r.status_code == 201, r.body
    assert r.json_body["status"] == "processing"
    assert buckets(m.merchant.id) == (9800 - 5880, 0)   # the merchant stays debited meanwhile
    net.faults.clear()
    clock.advance(timedelta(seconds=30))
    chase.chase_refunds()
    assert refund_status(m, p, r.json_body["id"]) == "succeeded"
    assert buckets(m.merchant.id) == (9800 - 5880, 0)


@pytest.fixture
def school(client, aws):
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.30"), now, now))
    mch = merchants.create_merchant("Auckland Language School", "NZD", fee_bps=100, channels={"payease": {}},
                                    fx_markup_bps=150)
    return MerchantApi(client, merchants.issue_key(mch.id, livemode=True), mch)


def paid_invoice(client, school, amount=250000):
    from tests.integration.test_tuition import bank_pays, submit_form

    p = school.post("/v1/payments", {"amount": amount, "currency": "NZD", "channel": "payease", "flow": "bank",
                                     "merchant_reference": "INV-1", "description": "Tuition",
                                     "return_url": "https://school.example.nz/paid"}).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    bank_pays(client, action["fields"]["v_oid"])
    assert PaymentModel.get(p["id"]).status == "succeeded"
    return p


@pytest.mark.parametrize("fault", ["garble", "404"])
def test_a_payease_refund_whose_answer_a_proxy_garbled_stays_processing_until_the_list_decides(
        client, school, net, fault):
    p = paid_invoice(client, school)
    net.faults[PAYEASE_REFUND] = fault          # forwarded to PayEase, answer garbled on the way back
    r = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100000})
    assert r.status_code == 201, r.body
    assert r.json_body["status"] == "processing"
    net.faults.clear()
    clock.advance(timedelta(seconds=30))
    assert chase.chase_refunds()["refunds_succeeded"] == 1
    assert refund_status(school, p, r.json_body["id"]) == "succeeded"
    assert buckets(school.merchant.id)[0] == 247500 - (100000 - 1000)


def test_a_payease_refund_lost_on_the_way_is_failed_with_an_ops_record_after_the_limit(client, school, net):
    p = paid_invoice(client, school)
    net.faults[PAYEASE_REFUND] = "reset"        # never reached PayEase
    r = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100000}).json_body
    net.faults.clear()
    clock.advance(timedelta(minutes=10))
    chase.chase_refunds()                       # not listed yet: PayEase's list may lag
    assert refund_status(school, p, r["id"]) == "processing"
    clock.advance(chase.REFUND_NOT_AT_CHANNEL_AFTER)
    assert chase.chase_refunds()["refunds_failed"] == 1
    assert refund_status(school, p, r["id"]) == "failed"
    assert buckets(school.merchant.id)[0] == 247500
    records = [o for o in OpsRecordModel.scan() if o.ref == r["id"]]
    assert [o.kind for o in records] == ["refund_not_at_channel"]


def test_no_refund_stays_processing_past_the_limit_without_an_ops_record(client, net):
    m, p = paid(client)
    net.faults[WECHAT_REFUND] = "timeout"
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 2000}).json_body
    net.faults[WECHAT_REFUND_QUERY] = "timeout"   # and WeChat cannot be asked for a day
    for _ in range(4):
        clock.advance(chase.REFUND_STUCK_AFTER / 4)
        chase.chase_refunds()
    assert refund_status(m, p, r["id"]) == "processing"
    assert [o.kind for o in OpsRecordModel.scan() if o.ref == r["id"]] == ["refund_stuck"]


def test_a_refund_failing_while_the_release_runs_does_not_strand_its_draw_in_pending(client, net, monkeypatch):
    m, p = paid(client, holding_days=0)
    net.faults[WECHAT_REFUND] = "reset"
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000}).json_body
    net.faults.clear()
    wechat_refuses_refunds(client, p)
    real_get = balance_store.get
    raced = []

    def refund_fails_between_read_and_commit(account):
        if not raced:   # the release has read the payment; the chase fails the refund now
            raced.append(chase.chase_refunds())
        return real_get(account)
    monkeypatch.setattr(balance_store, "get", refund_fails_between_read_and_commit)
    clock.advance(timedelta(days=5))
    summary = balances.release_funds()
    assert raced[0]["refunds_failed"] == 1 and summary["released"] == 1
    assert buckets(m.merchant.id) == (0, 9800)


def test_fee_and_cny_shares_of_partial_refunds_add_up_exactly_after_a_failure(client, school, net):
    p = paid_invoice(client, school)            # 2500.00 NZD, fee 25.00, 10911.25 CNY received
    net.faults[PAYEASE_REFUND] = "reset"
    a = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 98}).json_body
    net.faults.clear()
    b = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 2}).json_body
    clock.advance(chase.REFUND_NOT_AT_CHANNEL_AFTER + timedelta(minutes=1))
    chase.chase_refunds()                       # a never reached PayEase: failed
    assert refund_status(school, p, a["id"]) == "failed"
    c = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 249998})
    assert c.status_code == 201, c.body
    clock.advance(timedelta(seconds=30))
    chase.chase_refunds()
    assert [refund_status(school, p, x) for x in (b["id"], c.json_body["id"])] == ["succeeded", "succeeded"]
    live = [x for x in RefundModel.scan() if x.status == "succeeded"]
    assert sum(int(x.channel_amount) for x in live) == 1091125
    fee_back = sum(n for x in live for acc, n, _ in PostingModel.get(f"refund:{x.refund_id}").legs
                   if acc == "P:fee_revenue:NZD")
    assert fee_back == 2500
    assert buckets(school.merchant.id) == (0, 0)


@pytest.mark.parametrize("fault", ["404", "garble", "timeout"])
def test_an_alipay_refund_whose_answer_is_lost_stays_processing_and_its_resend_is_the_same_refund(
        client, net, fault):
    from tests.integration.test_alipay_payments import ALIPAY_IDS, create, pay

    mch = merchants.create_merchant("Kiwi Wool Shop", "NZD", fee_bps=250, channels={"alipay": ALIPAY_IDS})
    m = MerchantApi(client, merchants.issue_key(mch.id, livemode=True), mch)
    p = create(m)
    pay(client, p)
    net.faults["/sandbox/alipay/gateway.do"] = fault    # the refund reached Alipay; its answer did not reach us
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 3000})
    net.faults.clear()
    assert r.status_code == 201, r.body
    assert r.json_body["status"] == "processing"
    clock.advance(timedelta(seconds=30))
    assert chase.chase_refunds()["refunds_succeeded"] == 1
    assert refund_status(m, p, r.json_body["id"]) == "succeeded"
    assert int(PaymentModel.get(p["id"]).refunded) == 3000
