"""The WeChat sandbox never loses a notification: paying and scheduling it are one step, also under load."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from chalicelib import clock, settings
from chalicelib.channels.base import CreateRequest, MerchantChannelConfig
from chalicelib.channels.wechat import sandbox, wire
from chalicelib.channels.wechat.client import WeChatChannel
from chalicelib.money import Money
from chalicelib.store import sandbox as sandbox_store
from chalicelib.store.models import PaymentModel
from tests.integration.helpers import new_merchant

PAYMENTS = 80
THREADS = 16


def test_concurrent_simulated_payments_are_each_paid_and_notified_exactly_once(client):
    # The run was 300 payments on 16 threads over HTTP; 80 on 16 threads in process show the
    # same contention on the day's bill record (the old code lost 1-17 of these notifications per run).
    wechat = WeChatChannel()
    orders = [f"NZLOAD{n:06d}" for n in range(PAYMENTS)]
    for no in orders:
        wechat.create(CreateRequest(
            payment_id="pay_" + no, channel_order_id=no, amount=Money(1250, "NZD"), flow="native",
            description="Manuka honey", notify_url=settings.get().public_base_url + "/callbacks/wechat",
            expires_at=clock.now() + timedelta(hours=1), merchant=MerchantChannelConfig({"sub_mch_id": "20000100"}),
            client_ip="203.0.113.10"))
    now = clock.now()

    def pay(out_trade_no):
        try:
            sandbox._pay(out_trade_no, True, now)  # what simulate/pay does first, on 16 threads at once
            return None
        except Exception as exc:  # noqa: BLE001 - any failure here is what the test counts
            return f"{out_trade_no}: {type(exc).__name__}"

    with ThreadPoolExecutor(THREADS) as pool:
        failures = [f for f in pool.map(pay, orders) if f]
    assert failures == []

    due = {pk for pk, _ in sandbox_store.due(sandbox.NOTIFY_QUEUE, int(now.timestamp()) + 1, limit=1000)}
    paid = {no for no in orders if sandbox_store.get(sandbox._pk("order", no))["trade_state"] == "SUCCESS"}
    assert paid == set(orders)
    assert due == {sandbox._pk("order", no) for no in orders}  # every paid order owes its notification
    bill = sandbox._day(wire.china_date(now))
    assert sorted(bill["orders"]) == orders                        # and is on the day's bill once


def test_paid_sandbox_orders_reach_kauri_through_the_pump(client):
    merchant = new_merchant(client)
    created = [merchant.create_payment(merchant_reference=f"load-{n}").json_body for n in range(4)]
    now = clock.now()
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda p: sandbox._pay(p["channel_order_id"], True, now)["trade_state"], created)) == \
            ["SUCCESS"] * 4
    assert sandbox.pump(now) == 4 and sandbox.pump(now) == 0
    assert {PaymentModel.get(p["id"]).status for p in created} == {"succeeded"}


def test_a_payment_that_cannot_be_scheduled_is_not_paid(client, monkeypatch):
    merchant = new_merchant(client)
    no = merchant.create_payment().json_body["channel_order_id"]
    real = sandbox_store.change_together

    def failing(changes, queues=None, attempts=10):  # e.g. the bill shard conflicts every time
        raise RuntimeError("sandbox records kept changing under us")
    monkeypatch.setattr(sandbox_store, "change_together", failing)
    r = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                         body=('{"out_trade_no": "%s"}' % no).encode())
    assert r.status_code == 503
    monkeypatch.setattr(sandbox_store, "change_together", real)
    order = sandbox_store.get(sandbox._pk("order", no))
    assert order["trade_state"] == "NOTPAY" and "notify" not in order  # neither paid nor owed
    r = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                         body=('{"out_trade_no": "%s"}' % no).encode())
    assert r.status_code == 200 and r.json_body["delivered"] is True


def test_payease_sandbox_pays_and_owes_its_notification_in_one_write(client, monkeypatch):
    from chalicelib import channels, http
    from chalicelib.channels.payease import sandbox as payease_sandbox
    from tests.integration.test_payease_sandbox import MERCHANT, _pay, _place_order
    from tests.support.transport import FakeReceiver

    receiver = FakeReceiver(body=b"sent")
    http.mount(MERCHANT, receiver)
    _, v_oid = _place_order(client, channels.get("payease"))
    real = sandbox_store.change_together
    monkeypatch.setattr(sandbox_store, "change_together", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("busy")))
    r = client.http.post("/sandbox/payease/simulate/pay", headers={"Content-Type": "application/json"},
                         body=('{"out_trade_no": "%s"}' % v_oid).encode())
    assert r.status_code == 503
    order = sandbox_store.get(payease_sandbox._order_pk(v_oid))
    assert order["status"] == "pending" and sandbox_store.due(payease_sandbox.QUEUE, 2**40) == []
    monkeypatch.setattr(sandbox_store, "change_together", real)
    assert receiver.requests == []
    assert _pay(client, v_oid)["notify_state"] == "sent" and len(receiver.requests) == 1


def test_alipay_sandbox_pays_and_owes_its_notification_in_one_transaction(client, monkeypatch):
    from chalicelib import channels, http
    from chalicelib.channels.alipay import sandbox as alipay_sandbox
    from tests.integration.test_sandbox_egress import _alipay_order
    from tests.support.transport import FakeReceiver

    receiver = FakeReceiver(body=b"success")
    http.mount("http://merchant.test", receiver)
    channels.get("alipay").create(_alipay_order("ALONE0000001", "http://merchant.test/alipay"))
    real = sandbox_store.change_together
    monkeypatch.setattr(sandbox_store, "change_together", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("busy")))
    with pytest.raises(RuntimeError):
        alipay_sandbox.simulate("ALONE0000001")
    assert alipay_sandbox._load_trade("ALONE0000001")["status"] == "WAIT_BUYER_PAY"
    assert sandbox_store.due(alipay_sandbox.NOTIFY_QUEUE, 2**40) == [] and receiver.requests == []
    monkeypatch.setattr(sandbox_store, "change_together", real)
    result = alipay_sandbox.simulate("ALONE0000001")
    assert result["trade_status"] == "TRADE_SUCCESS" and result["notified"] is True
    assert len(receiver.requests) == 1
