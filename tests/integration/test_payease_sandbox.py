"""PayEase end to end against its sandbox, through app.py: form post, bank page, notify, return, query, refund."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from chalicelib import channels, clock, http, ids
from chalicelib.channels.base import (
    ChannelError,
    ChannelStatus,
    CreateRequest,
    InvalidNotification,
    MerchantChannelConfig,
    OrderRef,
    RefundRequest,
    RefundStatus,
)
from chalicelib.channels.payease import signing
from chalicelib.money import Money
from tests.support.transport import FakeReceiver

BASE = "http://kauri.test"
MERCHANT = "http://merchant.test"
NOTIFY_URL = MERCHANT + "/payease/notify"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def receiver(client):
    r = FakeReceiver(body=b"sent")
    http.mount(MERCHANT, r)
    return r


@pytest.fixture
def payease(client):
    return channels.get("payease")


def _create(payease, amount=10000, notify_url=NOTIFY_URL, **kw):
    order_id = ids.new("pay")
    extra = {"sandbox_notify_url": notify_url} if notify_url else {}
    req = CreateRequest(
        payment_id=order_id, channel_order_id=order_id, amount=Money(amount, "CNY"), flow="bank",
        description="Tuition", notify_url=BASE + "/callbacks/payease", expires_at=clock.now() + timedelta(minutes=15),
        merchant=MerchantChannelConfig(), return_url=MERCHANT + "/return?ref=1", extra=extra, **kw)
    return order_id, payease.create(req)


def _submit_form(client, result, fields=None):
    action = result.next_action
    assert action["type"] == "form_post" and action["url"].startswith(BASE)
    body = urlencode(fields or action["fields"], encoding="gbk").encode()
    return client.http.post(action["url"][len(BASE):], headers=FORM, body=body)


def _place_order(client, payease, **kw):
    order_id, result = _create(payease, **kw)
    page = _submit_form(client, result)
    assert page.status_code == 200 and "选择银行" in page.body.decode()
    return order_id, result.next_action["fields"]["v_oid"]


def _pay(client, v_oid, outcome="success"):
    resp = client.http.post("/sandbox/payease/simulate/pay", headers={"Content-Type": "application/json"},
                            body=json.dumps({"out_trade_no": v_oid, "outcome": outcome}).encode())
    assert resp.status_code == 200, resp.body
    return resp.json_body


def _notified(payease, request):
    return payease.parse_notification(request["body"], request["headers"])


# ---- create -> form the sandbox accepts ---------------------------------------------------------

def test_create_builds_signed_form_that_sandbox_accepts_and_bank_page_is_served(client, payease):
    order_id, result = _create(payease, amount=12345)
    fields = result.next_action["fields"]
    assert result.next_action["url"] == BASE + "/sandbox/payease/prs/user_payment.checkit"
    beijing_today = clock.now().astimezone(timezone(timedelta(hours=8))).strftime("%Y%m%d")
    assert fields["v_oid"] == f"{beijing_today}-444-{order_id}"
    assert (fields["v_ymd"], fields["v_amount"], fields["v_moneytype"], fields["v_mid"]) == (beijing_today, "123.45", "0", "444")
    assert fields["v_url"] == MERCHANT + "/return?ref=1" and len(fields["v_md5info"]) == 32
    page = _submit_form(client, result)
    text = page.body.decode()
    assert page.status_code == 200
    assert "招商银行" in text and fields["v_oid"] in text and "123.45" in text and "simulate/pay" in text


def test_sandbox_rejects_a_form_with_a_changed_amount(client, payease):
    _, result = _create(payease)
    fields = dict(result.next_action["fields"], v_amount="1.00")
    page = _submit_form(client, result, fields)
    assert page.status_code == 200 and "签名错误" in page.body.decode()


def test_sandbox_answers_garbage_in_its_own_style_never_500(client):
    page = client.http.post("/sandbox/payease/prs/user_payment.checkit", headers=FORM, body=b"\xff\xfe&&==")
    assert page.status_code == 200 and "交易失败" in page.body.decode()
    missing = client.http.post("/sandbox/payease/prs/user_payment.checkit", headers=FORM, body=b"v_mid=444")
    assert "缺少参数" in missing.body.decode()
    bad_json = client.http.post("/sandbox/payease/simulate/pay", headers={"Content-Type": "application/json"}, body=b"{")
    assert bad_json.status_code == 400
    unknown = client.http.post("/sandbox/payease/simulate/pay", headers={"Content-Type": "application/json"},
                               body=json.dumps({"out_trade_no": "20240101-444-nope"}).encode())
    assert unknown.status_code == 404
    forged = client.http.post("/sandbox/payease/merchant/order/order_ack_oid_list.jsp", headers=FORM,
                              body=b"v_mid=444&v_oid=20240101-444-x&v_mac=" + b"0" * 32)
    assert forged.status_code == 200 and b"<status>2</status>" in forged.body


def test_create_refuses_non_cny_and_other_flows(payease):
    base = dict(payment_id="pay_x", channel_order_id="pay_x", description="d", notify_url="",
                expires_at=clock.now(), merchant=MerchantChannelConfig(), return_url=MERCHANT + "/r")
    with pytest.raises(ChannelError) as exc:
        payease.create(CreateRequest(amount=Money(100, "NZD"), flow="bank", **base))
    assert exc.value.code == "CURRENCY_NOT_SUPPORTED"
    with pytest.raises(ChannelError) as exc:
        payease.create(CreateRequest(amount=Money(100, "CNY"), flow="native", **base))
    assert exc.value.code == "FLOW_NOT_SUPPORTED"
    with pytest.raises(ChannelError) as exc:
        payease.close(OrderRef("pay_x", MerchantChannelConfig()))
    assert exc.value.code == "NOT_SUPPORTED"


# ---- pay -> signed server notify ----------------------------------------------------------------

def test_payment_notifies_merchant_and_notification_verifies(client, payease, receiver):
    order_id, v_oid = _place_order(client, payease)
    out = _pay(client, v_oid)
    assert out["status"] == "paid" and out["notify_state"] == "sent" and out["attempts"] == 1
    [req] = receiver.requests
    assert req["url"] == NOTIFY_URL
    note = _notified(payease, req)
    assert note.kind == "payment" and note.more == ()
    p = note.payment
    assert (p.channel_order_id, p.channel_transaction_id, p.status, p.amount) == (
        order_id, v_oid, ChannelStatus.PAID, Money(10000, "CNY"))
    assert p.raw["v_pmode"] == "招商银行" and p.raw["v_pstatus"] == "1"


def test_failed_payment_notifies_rejected(client, payease, receiver):
    _, v_oid = _place_order(client, payease)
    _pay(client, v_oid, outcome="fail")
    assert _notified(payease, receiver.requests[0]).payment.status is ChannelStatus.FAILED


def test_tampered_amount_and_forged_mac_are_rejected(client, payease, receiver):
    _, v_oid = _place_order(client, payease)
    _pay(client, v_oid)
    fields = dict(parse_qsl(receiver.requests[0]["body"].decode("ascii"), encoding="gbk"))
    for change in ({"v_amount": "1.00"}, {"v_mac": "f" * 32}, {"v_md5money": "0" * 32}, {"v_pstatus": "3"}):
        forged = urlencode({**fields, **change}, encoding="gbk").encode()
        with pytest.raises(InvalidNotification):
            payease.parse_notification(forged, {})
    assert payease.ack(True).body == "sent" and payease.ack(False).body == "error"


def test_notifications_due_together_are_batched_and_parse_into_each_order(client, payease, receiver):
    receiver.body = b"error"  # merchant failing: both notifications go into the retry queue
    first_id, first = _place_order(client, payease, amount=10000)
    second_id, second = _place_order(client, payease, amount=2550)
    _pay(client, first)
    _pay(client, second, outcome="fail")
    assert len(receiver.requests) == 2  # one inline attempt each, alone
    receiver.body = b"sent"
    clock.advance(timedelta(seconds=16))
    from chalicelib.channels.payease import sandbox

    assert sandbox.pump() == 2
    batch = receiver.requests[-1]
    assert len(receiver.requests) == 3 and b"v_count=2" in batch["body"] and b"%7C_%7C" in batch["body"]
    note = _notified(payease, batch)
    got = [(n.payment.channel_order_id, n.payment.status, n.payment.amount) for n in (note, *note.more)]
    assert sorted(got, key=lambda g: g[2]) == [(second_id, ChannelStatus.FAILED, Money(2550, "CNY")),
                                              (first_id, ChannelStatus.PAID, Money(10000, "CNY"))]
    clock.advance(timedelta(hours=1))
    assert sandbox.pump() == 0  # acknowledged: nothing left to send


def test_notify_is_retried_on_schedule_until_merchant_answers_sent(client, payease, receiver):
    receiver.down = True
    _, v_oid = _place_order(client, payease)
    assert _pay(client, v_oid)["notify_state"] == "retrying"
    pump = lambda: client.http.post("/sandbox/payease/simulate/pump", headers={"Content-Type": "application/json"},
                                    body=b"{}").json_body["attempted"]
    assert pump() == 0                      # not due yet
    clock.advance(timedelta(seconds=15))
    assert pump() == 1                      # second attempt, still down
    receiver.down = False
    receiver.body = b"ok"                   # answered, but not with `sent`: still a failure
    clock.advance(timedelta(seconds=30))
    assert pump() == 1
    receiver.body = b"sent"
    clock.advance(timedelta(seconds=60))
    assert pump() == 1
    clock.advance(timedelta(days=1))
    assert pump() == 0
    assert len(receiver.requests) == 4
    assert all(_notified(payease, r).payment.status is ChannelStatus.PAID for r in receiver.requests)


def test_console_notify_url_is_used_when_order_has_no_override(client, payease, receiver):
    console = {"v_mid": "444", "notify_url": MERCHANT + "/console"}
    console["v_mac"] = signing.mac("test", [console["v_mid"], console["notify_url"]])
    resp = client.http.post("/sandbox/payease/merchant/config", headers={"Content-Type": "application/json"},
                            body=json.dumps(console).encode())
    assert resp.status_code == 200
    _, v_oid = _place_order(client, payease, notify_url=None)
    _pay(client, v_oid)
    assert receiver.requests[0]["url"] == MERCHANT + "/console"


def test_default_notify_url_is_kauris_payease_callback(client, payease):
    adapter = http._mounts[BASE]
    _, v_oid = _place_order(client, payease, notify_url=None)
    _pay(client, v_oid)
    assert ("POST", "/callbacks/payease") in adapter.calls


# ---- browser return -----------------------------------------------------------------------------

def test_browser_is_sent_back_to_v_url_with_verifiable_return(client, payease, receiver):
    order_id, v_oid = _place_order(client, payease)
    resp = client.http.post("/sandbox/payease/simulate/pay", headers=FORM,
                            body=urlencode({"out_trade_no": v_oid, "v_pmode": "2"}).encode())
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(MERCHANT + "/return?ref=1&")
    params = dict(parse_qsl(urlsplit(location).query))
    shown = payease.verify_return(params)
    assert (shown.channel_order_id, shown.status, shown.amount) == (order_id, ChannelStatus.PAID, Money(10000, "CNY"))
    assert shown.raw["v_pmode"] == "中国工商银行" and shown.raw["mac_encoding"] == "gbk"
    for change in ({"v_pstatus": "30"}, {"v_amount": "1.00"}, {"v_md5info": "0" * 32}):
        with pytest.raises(InvalidNotification):
            payease.verify_return({**params, **change})


def test_failed_payment_returns_pstatus_30(client, payease, receiver):
    _, v_oid = _place_order(client, payease)
    out = _pay(client, v_oid, outcome="fail")
    params = dict(parse_qsl(urlsplit(out["return_url"]).query))
    assert params["v_pstatus"] == "30"
    assert payease.verify_return(params).status is ChannelStatus.FAILED


# ---- query and refunds --------------------------------------------------------------------------

def test_query_follows_the_order(client, payease, receiver):
    order_id, v_oid = _place_order(client, payease)
    ref = OrderRef(order_id, MerchantChannelConfig())
    assert payease.query(ref).status is ChannelStatus.PENDING
    _pay(client, v_oid)
    paid = payease.query(OrderRef(order_id, MerchantChannelConfig(), v_oid))
    assert (paid.status, paid.amount, paid.channel_transaction_id) == (ChannelStatus.PAID, Money(10000, "CNY"), v_oid)
    assert payease.query(OrderRef("pay_unknown", MerchantChannelConfig())).status is ChannelStatus.NOT_FOUND


def test_query_finds_an_order_created_before_beijing_midnight(client, payease, receiver):
    clock.freeze(datetime(2024, 1, 1, 15, 59, tzinfo=timezone.utc))  # 23:59 in Beijing
    order_id, v_oid = _place_order(client, payease)
    assert v_oid.startswith("20240101-")
    clock.advance(timedelta(minutes=5))
    assert payease.query(OrderRef(order_id, MerchantChannelConfig())).channel_transaction_id == v_oid


def test_refund_and_refund_query(client, payease, receiver):
    order_id, v_oid = _place_order(client, payease)
    _pay(client, v_oid)
    req = RefundRequest(refund_id="rf_1", channel_refund_id="rf_abc123",
                        payment=OrderRef(order_id, MerchantChannelConfig(), v_oid),
                        total=Money(10000, "CNY"), amount=Money(4000, "CNY"), reason="partial")
    done = payease.refund(req)
    assert done.status is RefundStatus.PROCESSING and done.channel_refund_ref
    found = payease.refund_query(req)
    assert (found.status, found.amount, found.channel_refund_ref) == (
        RefundStatus.SUCCEEDED, Money(4000, "CNY"), done.channel_refund_ref)
    too_much = RefundRequest(refund_id="rf_2", channel_refund_id="rf_def", payment=req.payment,
                             total=Money(10000, "CNY"), amount=Money(6001, "CNY"))
    with pytest.raises(ChannelError) as exc:
        payease.refund(too_much)
    assert exc.value.code == "REFUND_REJECTED"


def test_network_failure_is_retryable(client, payease):
    down = FakeReceiver()
    down.down = True
    http.mount(BASE + "/sandbox/payease/merchant/order", down)  # longest prefix wins: only the query API is down
    with pytest.raises(ChannelError) as exc:
        payease.query(OrderRef("pay_x", MerchantChannelConfig(), "20240101-444-pay_x"))
    assert exc.value.code == "NETWORK" and exc.value.retryable
    assert len(down.requests) == 1
