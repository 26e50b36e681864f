"""Regression tests for money-safety defects found in review: each failed before its fix."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

from chalicelib import clock
from chalicelib.channels.base import ChannelError, ChannelStatus, OrderRef, MerchantChannelConfig
from chalicelib.channels.wechat.client import WeChatChannel
from chalicelib.domain.fx import Rate
from chalicelib.services import callbacks, chase, fx, merchants, refunds
from chalicelib.store import payments as payment_store
from chalicelib.store.models import BalanceModel, PaymentModel, PostingModel, RefundModel
from tests.integration.helpers import MerchantApi, new_merchant, shopper_pays


def paid_payment(client, amount=10000, **extra):
    m = new_merchant(client, **extra)
    p = m.create_payment(amount=amount).json_body
    shopper_pays(client, p)
    return m, p


def sandbox_order_state(p):
    return WeChatChannel().query(OrderRef(p["channel_order_id"], MerchantChannelConfig({"sub_mch_id": "20000100"})))


def test_a_refund_the_channel_accepted_is_never_failed_by_a_query_error(client, monkeypatch):
    m, p = paid_payment(client)
    real = WeChatChannel.refund_query
    calls = {"n": 0}

    def first_query_errors(self, req):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ChannelError("HTTP_429", "throttled", retryable=False)
        return real(self, req)
    monkeypatch.setattr(WeChatChannel, "refund_query", first_query_errors)
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 10000}).json_body
    assert r["status"] == "processing"
    assert PaymentModel.get(p["id"]).refunded == 10000
    clock.advance(timedelta(seconds=30))
    assert chase.chase_refunds()["refunds_succeeded"] == 1
    assert sandbox_order_state(p).status is ChannelStatus.REFUNDED
    # and the merchant cannot refund the same money a second time
    assert m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 1}).status_code == 400


def test_retrying_a_refund_that_crashed_after_the_channel_took_it_replays_not_repeats(client, monkeypatch):
    m, p = paid_payment(client)
    real = WeChatChannel.refund

    def sends_then_crashes(self, req):
        real(self, req)
        raise ValueError("crashed after sending")
    monkeypatch.setattr(WeChatChannel, "refund", sends_then_crashes)
    h = {"Idempotency-Key": "refund-half"}
    first = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000}, headers=h)
    assert first.status_code == 500
    monkeypatch.setattr(WeChatChannel, "refund", real)
    again = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000}, headers=h)
    assert again.status_code == 201
    assert len(list(RefundModel.scan())) == 1 and PaymentModel.get(p["id"]).refunded == 5000


def test_concurrent_partial_refunds_return_exactly_the_whole_fee(client):
    m, p = paid_payment(client, amount=999)  # fee 20 at 200 bps
    payment = payment_store.get(p["id"])
    assert payment.fee.amount == 20
    results, failures = [], []
    barrier = threading.Barrier(2)

    def refund(amount):
        barrier.wait()
        try:
            results.append(refunds.create(m.merchant, True, p["id"], amount, "race"))
        except Exception as exc:  # surfaced below with its reason
            failures.append(repr(exc))
    threads = [threading.Thread(target=refund, args=(a,)) for a in (500, 499)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(results) == 2 and PaymentModel.get(p["id"]).refunded == 999
    fee_back = sum(dict((a, n) for a, n, _ in PostingModel.get(f"refund:{r.id}").legs).get("P:fee_revenue:NZD", 0)
                   for r in results)
    assert fee_back == 20
    assert BalanceModel.get(f"M:{m.merchant.id}:NZD:pending").balance == 0


def test_a_callback_verified_against_a_replaced_quote_is_not_applied(client):
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.30"), now, now))
    mch = merchants.create_merchant("School", "NZD", fee_bps=100, channels={"payease": {}}, fx_markup_bps=150)
    school = MerchantApi(client, merchants.issue_key(mch.id, livemode=True), mch)
    p = school.post("/v1/payments", {"amount": 250000, "currency": "NZD", "channel": "payease", "flow": "bank",
                                     "merchant_reference": "INV-1", "description": "Tuition",
                                     "return_url": "https://school.example.nz/paid"}).json_body
    before = payment_store.get(p["id"])
    clock.advance(timedelta(minutes=16))
    fx.record(Rate("wechat", "NZD", Decimal("4.40"), clock.now(), clock.now()))
    client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                     body=b"")
    assert payment_store.get(p["id"]).channel_order_id != before.channel_order_id
    from chalicelib.channels.base import ChannelPayment
    from chalicelib.money import Money
    old_order_paid = ChannelPayment(channel_order_id=before.channel_order_id, status=ChannelStatus.PAID,
                                    amount=Money(1091125, "CNY"), channel_transaction_id="x")
    callbacks.apply_channel_payment(before, old_order_paid, source="test")  # verified on the old read
    assert PaymentModel.get(p["id"]).status == "pending"
    assert list(PostingModel.scan()) == []


def test_absurdly_long_ids_in_paths_are_404_not_500(client):
    m = new_merchant(client)
    h = {"Idempotency-Key": "k" * 200}
    assert m.post("/v1/events/evt_" + "a" * 3000 + "/resend", headers=h).status_code == 404
    assert m.post("/v1/payments/pay_" + "a" * 3000 + "/refunds", {"amount": 1}, headers=h).status_code == 404
    assert m.get("/v1/payments/pay_" + "a" * 3000 + "/refunds/re_" + "b" * 3000).status_code == 404
    assert m.get("/v1/events/" + "x" * 3000).status_code == 404


def test_a_refund_failing_after_release_returns_to_available_not_stranded_in_pending(client, monkeypatch):
    m, p = paid_payment(client, holding_days=0)

    def channel_unreachable(self, req):
        raise ChannelError("NETWORK", "timeout", retryable=True)
    monkeypatch.setattr(WeChatChannel, "refund", channel_unreachable)
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000}).json_body
    assert r["status"] == "processing"
    from chalicelib.services import balances
    clock.advance(timedelta(days=5))
    balances.release_funds()
    assert PaymentModel.get(p["id"]).released
    refund, _ = payment_store.get_refund(r["id"])
    refunds.fail(payment_store.get(p["id"]), refund, refunds.posting_of(refund), "test_refused")
    mid = m.merchant.id
    pending = BalanceModel.get(f"M:{mid}:NZD:pending").balance
    available = BalanceModel.get(f"M:{mid}:NZD:available").balance
    assert (pending, available) == (0, 9800)


def test_a_refund_lost_before_reaching_the_channel_is_sent_again_by_the_chase(client, monkeypatch):
    m, p = paid_payment(client)
    real = WeChatChannel.refund

    def lost_on_the_way(self, req):
        raise ChannelError("NETWORK", "connection reset", retryable=True)
    monkeypatch.setattr(WeChatChannel, "refund", lost_on_the_way)
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 3000}).json_body
    assert r["status"] == "processing"
    monkeypatch.setattr(WeChatChannel, "refund", real)
    clock.advance(timedelta(seconds=30))
    out = chase.chase_refunds()
    assert out.get("refunds_resubmitted") == 1
    clock.advance(timedelta(seconds=30))
    chase.chase_refunds()
    assert m.get(f"/v1/payments/{p['id']}/refunds/{r['id']}").json_body["status"] == "succeeded"
    assert sandbox_order_state(p).status is ChannelStatus.REFUNDED
