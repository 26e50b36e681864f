"""AlipayChannel against the Alipay sandbox, through app.py (moto + chalice test client)."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest

from chalicelib import channels, clock, http, settings
from chalicelib.channels.alipay.client import AlipayChannel
from chalicelib.channels.alipay.statement import parse_compare_file
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
from chalicelib.money import Money
from tests.support.transport import FakeReceiver

NOTIFY_URL = "http://merchant.test/alipay/notify"
RETURN_URL = "http://shop.test/alipay/return"
MERCHANT = MerchantChannelConfig({"secondary_merchant_id": "kiwi_cafe_001",
                                  "secondary_merchant_name": "Kiwi Cafe Ltd",
                                  "secondary_merchant_industry": "5812"})
GATEWAY_PATH = "/sandbox/alipay/gateway.do"


@pytest.fixture
def receiver(client):
    r = FakeReceiver(body=b"success")
    http.mount("http://merchant.test", r)
    return r


@pytest.fixture
def alipay(client) -> AlipayChannel:
    return channels.get("alipay")


@pytest.fixture
def rsa2(monkeypatch):
    monkeypatch.setenv("KAURI_ALIPAY_SIGN_TYPE", "RSA2")
    settings.reset()
    yield
    monkeypatch.delenv("KAURI_ALIPAY_SIGN_TYPE")
    settings.reset()


def _create(order: str, flow: str = "web", amount: str = "25.50", minutes: int = 30) -> CreateRequest:
    return CreateRequest(payment_id="pay_" + order, channel_order_id=order, amount=Money.from_major(amount, "NZD"),
                         flow=flow, description="奇异果 Kiwifruit x2", notify_url=NOTIFY_URL,
                         expires_at=clock.now() + timedelta(minutes=minutes), merchant=MERCHANT,
                         return_url=RETURN_URL)


def _ref(order: str) -> OrderRef:
    return OrderRef(channel_order_id=order, merchant=MERCHANT)


def _refund(order: str, refund_no: str, amount: str, total: str = "25.50") -> RefundRequest:
    return RefundRequest(refund_id="rf_" + refund_no, channel_refund_id=refund_no, payment=_ref(order),
                         total=Money.from_major(total, "NZD"), amount=Money.from_major(amount, "NZD"),
                         reason="customer changed mind")


def _open_cashier(client, url: str):
    parts = urlsplit(url)
    assert parts.netloc == "kauri.test" and parts.path == GATEWAY_PATH
    return client.http.get(parts.path + "?" + parts.query)


def _pay(client, order: str, outcome: str = "success"):
    import json

    resp = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                            body=json.dumps({"out_trade_no": order, "outcome": outcome}))
    assert resp.status_code == 200, resp.body
    return json.loads(resp.body)


def _web_order_paid(client, alipay, order: str, amount: str = "25.50"):
    result = alipay.create(_create(order, amount=amount))
    assert _open_cashier(client, result.next_action["url"]).status_code == 200
    return _pay(client, order)


# ---- create --------------------------------------------------------------------------------------

def test_web_redirect_url_is_signed_and_opens_the_sandbox_cashier(client, alipay):
    result = alipay.create(_create("NZWEB0001"))
    assert result.next_action["type"] == "redirect"
    params = dict(parse_qsl(urlsplit(result.next_action["url"]).query))
    assert params["service"] == "create_forex_trade" and params["product_code"] == "NEW_OVERSEAS_SELLER"
    assert params["total_fee"] == "25.50" and params["currency"] == "NZD" and params["timeout_rule"] == "30m"
    assert params["secondary_merchant_id"] == "kiwi_cafe_001" and params["secondary_merchant_industry"] == "5812"
    assert params["sign_type"] == "MD5" and params["notify_url"] == NOTIFY_URL

    page = _open_cashier(client, result.next_action["url"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode("utf-8")
    assert "NZD 25.50" in text and "奇异果 Kiwifruit x2" in text and 'id="pay"' in text
    assert "http://kauri.test/sandbox/alipay/simulate/pay" in text


def test_wap_flow_uses_the_wap_service_and_product(client, alipay):
    result = alipay.create(_create("NZWAP0001", flow="wap", minutes=90))
    params = dict(parse_qsl(urlsplit(result.next_action["url"]).query))
    assert params["service"] == "create_forex_trade_wap" and params["product_code"] == "NEW_WAP_OVERSEAS_SELLER"
    assert params["timeout_rule"] == "1h"
    page = _open_cashier(client, result.next_action["url"])
    assert 'data-service="create_forex_trade_wap"' in page.body.decode("utf-8")


def test_tampered_redirect_url_is_refused_with_illegal_sign(client, alipay):
    url = alipay.create(_create("NZWEB0002")).next_action["url"].replace("total_fee=25.50", "total_fee=0.01")
    page = _open_cashier(client, url)
    assert page.status_code == 200
    assert b"<is_success>F</is_success><error>ILLEGAL_SIGN</error>" in page.body


def test_channel_with_the_wrong_key_is_refused(client, alipay):
    wrong = AlipayChannel(dataclasses.replace(settings.get().alipay, md5_key="0" * 32))
    with pytest.raises(ChannelError) as err:
        wrong.query(_ref("NZWEB0003"))
    assert err.value.code == "ILLEGAL_SIGN" and not err.value.retryable


def test_missing_secondary_merchant_is_refused_before_any_call(client, alipay):
    req = dataclasses.replace(_create("NZWEB0004"), merchant=MerchantChannelConfig({}))
    with pytest.raises(ChannelError) as err:
        alipay.create(req)
    assert err.value.code == "SECONDARY_MERCHANT_MISSING"


def test_qr_precreate_returns_an_alipay_qr_code(client, alipay):
    result = alipay.create(_create("NZQR0001", flow="qr"))
    assert result.next_action["type"] == "qr_code"
    assert result.next_action["qr_code"].startswith("https://qr.alipay.com/bax")
    assert alipay.query(_ref("NZQR0001")).status == ChannelStatus.PENDING


# ---- query ---------------------------------------------------------------------------------------

def test_online_query_not_found_before_login_then_paid_after_pay(client, alipay, receiver):
    result = alipay.create(_create("NZWEB0010"))
    _open_cashier(client, result.next_action["url"])
    assert alipay.query(_ref("NZWEB0010")).status == ChannelStatus.NOT_FOUND

    paid = _pay(client, "NZWEB0010")
    got = alipay.query(_ref("NZWEB0010"))
    assert got.status == ChannelStatus.PAID and got.amount == Money(2550, "NZD")
    assert got.channel_transaction_id == paid["trade_no"] and got.paid_at is not None


def test_qr_query_after_pay_is_paid(client, alipay, receiver):
    alipay.create(_create("NZQR0002", flow="qr", amount="12.00"))
    _pay(client, "NZQR0002")
    got = alipay.query(_ref("NZQR0002"))
    assert got.status == ChannelStatus.PAID and got.amount == Money(1200, "NZD")
    assert got.rate == Decimal("4.35120000")


def test_unknown_order_is_not_found(client, alipay):
    assert alipay.query(_ref("NZNOPE0001")).status == ChannelStatus.NOT_FOUND


def test_unpaid_online_trade_closes_when_its_timeout_passes(client, alipay):
    result = alipay.create(_create("NZWEB0011", minutes=10))
    _open_cashier(client, result.next_action["url"])
    _pay(client, "NZWEB0011", outcome="fail")  # logged in, did not pay
    assert alipay.query(_ref("NZWEB0011")).status == ChannelStatus.PENDING
    clock.advance(timedelta(minutes=11))
    assert alipay.query(_ref("NZWEB0011")).status == ChannelStatus.CLOSED


# ---- refund --------------------------------------------------------------------------------------

def test_refund_then_over_refund_is_refused(client, alipay, receiver):
    _web_order_paid(client, alipay, "NZWEB0020")
    first = alipay.refund(_refund("NZWEB0020", "NZRF0001", "10.00"))
    assert first.status == RefundStatus.SUCCEEDED and first.amount == Money(1000, "NZD")

    clock.advance(timedelta(seconds=3))
    with pytest.raises(ChannelError) as err:
        alipay.refund(_refund("NZWEB0020", "NZRF0002", "15.51"))
    assert err.value.code == "RETURN_AMOUNT_EXCEED" and not err.value.retryable

    # refund_query re-sends under the same out_return_no: answered, never refunded twice
    assert alipay.refund_query(_refund("NZWEB0020", "NZRF0001", "10.00")).status == RefundStatus.SUCCEEDED
    clock.advance(timedelta(seconds=3))
    assert alipay.refund(_refund("NZWEB0020", "NZRF0003", "15.50")).status == RefundStatus.SUCCEEDED


def test_refunds_closer_than_three_seconds_are_refused(client, alipay, receiver):
    clock.freeze()
    _web_order_paid(client, alipay, "NZWEB0021")
    alipay.refund(_refund("NZWEB0021", "NZRF0010", "1.00"))
    with pytest.raises(ChannelError) as err:
        alipay.refund(_refund("NZWEB0021", "NZRF0011", "1.00"))
    assert err.value.code == "REFUND_TOO_FREQUENT"


def test_refund_of_unknown_order_is_refused(client, alipay):
    with pytest.raises(ChannelError) as err:
        alipay.refund(_refund("NZNOPE0002", "NZRF0020", "1.00"))
    assert err.value.code == "TRADE_NOT_EXIST"


def test_qr_order_refunds_through_spot_refund(client, alipay, receiver):
    alipay.create(_create("NZQR0020", flow="qr"))
    _pay(client, "NZQR0020")
    refund = alipay.refund(_refund("NZQR0020", "NZRF0030", "25.50"))
    assert refund.status == RefundStatus.SUCCEEDED and refund.raw["refund_amount_cny"] == "110.96"
    clock.advance(timedelta(seconds=3))
    with pytest.raises(ChannelError) as err:
        alipay.refund(_refund("NZQR0020", "NZRF0031", "0.01"))
    assert err.value.code == "RETURN_AMOUNT_EXCEED"


# ---- close ---------------------------------------------------------------------------------------

def test_close_cancels_an_unpaid_qr_order(client, alipay):
    alipay.create(_create("NZQR0030", flow="qr"))
    alipay.close(_ref("NZQR0030"))
    assert alipay.query(_ref("NZQR0030")).status == ChannelStatus.CLOSED
    resp = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                            body='{"out_trade_no": "NZQR0030"}')
    assert resp.status_code == 409


def test_close_refuses_a_paid_order(client, alipay, receiver):
    alipay.create(_create("NZQR0031", flow="qr"))
    _pay(client, "NZQR0031")
    with pytest.raises(ChannelError) as err:
        alipay.close(_ref("NZQR0031"))
    assert err.value.code == "TRADE_PAID"
    assert alipay.query(_ref("NZQR0031")).status == ChannelStatus.PAID


def test_close_of_an_online_order_is_refused_because_it_lapses_by_timeout(client, alipay):
    # Alipay has no close service for create_forex_trade (spec §5.3): the trade stays payable until its
    # timeout_rule, so "closed" would be a promise we cannot keep.
    alipay.create(_create("NZWEB0030"))
    with pytest.raises(ChannelError) as exc:
        alipay.close(_ref("NZWEB0030"))
    assert exc.value.code == "NOT_SUPPORTED"


# ---- notifications -------------------------------------------------------------------------------

def test_pay_delivers_a_signed_notification_that_parse_accepts(client, alipay, receiver):
    paid = _web_order_paid(client, alipay, "NZWEB0040")
    assert paid["notified"] is True and len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert sent["url"] == NOTIFY_URL
    note = alipay.parse_notification(sent["body"], sent["headers"])
    assert note.kind == "payment"
    p = note.payment
    assert p.channel_order_id == "NZWEB0040" and p.status == ChannelStatus.PAID
    assert p.amount == Money(2550, "NZD") and p.channel_transaction_id == paid["trade_no"]
    assert "sign" not in p.raw and p.raw["notify_type"] == "trade_status_sync"
    assert alipay.ack(True).body == "success" and alipay.ack(False).body == "fail"


def test_rsa2_merchant_round_trip(client, alipay, receiver, rsa2):
    result = alipay.create(_create("NZWEB0041"))
    assert "sign_type=RSA2" in result.next_action["url"]
    assert _open_cashier(client, result.next_action["url"]).headers["Content-Type"].startswith("text/html")
    _pay(client, "NZWEB0041")
    body = receiver.requests[0]["body"]
    assert b"sign_type=RSA2" in body
    assert alipay.parse_notification(body, {}).payment.status == ChannelStatus.PAID
    assert alipay.query(_ref("NZWEB0041")).status == ChannelStatus.PAID


def test_tampered_notification_is_rejected(client, alipay, receiver):
    _web_order_paid(client, alipay, "NZWEB0042")
    body = receiver.requests[0]["body"].replace(b"total_fee=25.50", b"total_fee=2.50")
    assert body != receiver.requests[0]["body"]
    with pytest.raises(InvalidNotification):
        alipay.parse_notification(body, {})


def test_notification_signed_with_another_key_is_rejected(client, alipay, receiver):
    from urllib.parse import urlencode

    from chalicelib.channels.alipay import signing

    _web_order_paid(client, alipay, "NZWEB0043")
    fields = dict(parse_qsl(receiver.requests[0]["body"].decode()))
    forged = signing.signed(fields, "MD5", md5_key="f" * 32)
    with pytest.raises(InvalidNotification):
        alipay.parse_notification(urlencode(forged).encode(), {})


def test_replayed_notify_id_is_refused_by_notify_verify(client, alipay, receiver):
    _web_order_paid(client, alipay, "NZWEB0044")
    body = receiver.requests[0]["body"]
    alipay.parse_notification(body, {})
    with pytest.raises(InvalidNotification) as err:
        alipay.parse_notification(body, {})
    assert "notify_verify" in err.value.reason


def test_notify_id_is_only_good_for_a_minute(client, alipay, receiver):
    _web_order_paid(client, alipay, "NZWEB0045")
    clock.advance(timedelta(seconds=61))
    with pytest.raises(InvalidNotification):
        alipay.parse_notification(receiver.requests[0]["body"], {})


def test_notify_verify_answers_invalid_or_false(client):
    assert client.http.get(GATEWAY_PATH + "?service=notify_verify&partner=2088101122136241").body == b"invalid"
    assert client.http.get(GATEWAY_PATH + "?service=notify_verify&partner=2088101122136241"
                           "&notify_id=abc123").body == b"false"


def test_garbage_notification_is_rejected(client, alipay):
    for body in (b"", b"sign=x&sign_type=MD5", b"\xff\xfe", b"a=1&a=2", b"x=" + b"9" * 20000):
        with pytest.raises(InvalidNotification):
            alipay.parse_notification(body, {})


def test_notification_retries_follow_alipays_schedule_until_success(client, alipay):
    from chalicelib.channels.alipay import sandbox

    clock.freeze()  # to the second: the retry gaps are checked one second either side
    receiver = FakeReceiver(body=b"ok")  # anything but exactly `success` means "try again"
    http.mount("http://merchant.test", receiver)
    _web_order_paid(client, alipay, "NZWEB0050")
    assert len(receiver.requests) == 1

    for gap in (120, 600, 600, 3600):
        clock.advance(timedelta(seconds=gap - 1))
        assert sandbox.pump() == 0
        clock.advance(timedelta(seconds=1))
        assert sandbox.pump() == 1
    assert len(receiver.requests) == 5
    ids = {dict(parse_qsl(r["body"].decode()))["notify_id"] for r in receiver.requests}
    assert len(ids) == 5  # every delivery carries a fresh notify_id

    receiver.body = b"success"
    clock.advance(timedelta(hours=2))
    assert sandbox.pump() == 1
    assert alipay.parse_notification(receiver.requests[-1]["body"], {}).payment.status == ChannelStatus.PAID
    clock.advance(timedelta(days=2))
    assert sandbox.pump() == 0
    assert len(receiver.requests) == 6


def test_retries_give_up_after_eight_deliveries(client, alipay):
    receiver = FakeReceiver(body=b"success ")
    receiver.down = True
    http.mount("http://merchant.test", receiver)
    _web_order_paid(client, alipay, "NZWEB0051")
    resp = None
    for _ in range(10):
        clock.advance(timedelta(hours=16))
        resp = client.http.post("/sandbox/alipay/simulate/pump", headers={"Content-Type": "application/json"},
                                body="{}")
        assert resp.status_code == 200
    assert len(receiver.requests) == 8


def test_browser_return_is_signed_and_only_verified(client, alipay, receiver):
    result = alipay.create(_create("NZWEB0060"))
    _open_cashier(client, result.next_action["url"])
    resp = client.http.post("/sandbox/alipay/simulate/pay",
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                            body=b"out_trade_no=NZWEB0060&outcome=success")
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(RETURN_URL + "?")
    params = dict(parse_qsl(urlsplit(location).query))
    shown = alipay.verify_return(params)
    assert shown["trade_status"] == "TRADE_FINISHED" and "sign" not in shown
    with pytest.raises(InvalidNotification):
        alipay.verify_return(dict(params, total_fee="0.01"))


# ---- files and errors ----------------------------------------------------------------------------

def test_forex_rates_are_decimals_per_currency(client, alipay):
    rates = alipay.forex_rates()
    assert rates["NZD"] == Decimal("4.35120000") and all(isinstance(v, Decimal) for v in rates.values())


def test_compare_file_lists_yesterdays_payments_and_refunds(client, alipay, receiver):
    _web_order_paid(client, alipay, "NZWEB0070")
    alipay.refund(_refund("NZWEB0070", "NZRF0070", "5.00"))
    day = clock.now().astimezone(__import__("chalicelib.channels.alipay", fromlist=["BEIJING"]).BEIJING).date()
    with pytest.raises(ChannelError) as err:
        alipay.download_statement("transactions", day, day)
    assert err.value.code == "STATEMENT_UNAVAILABLE" and "not ahead of today" in err.value.message

    clock.advance(timedelta(days=1))
    records = list(parse_compare_file(alipay.download_statement("transactions", day, day)))
    pay = next(r for r in records if r["record_type"] == "PAY")
    refund = next(r for r in records if r["record_type"] == "REFUND")
    assert pay["our_no"] == "NZWEB0070" and pay["amount_minor"] == 2550 and pay["fee_minor"] == 46
    assert refund["our_no"] == "NZRF0070" and refund["original_our_no"] == "NZWEB0070"
    assert refund["amount_minor"] == 500
    assert alipay.download_statement("transactions", day - timedelta(days=5), day - timedelta(days=1)) == ""
    with pytest.raises(ChannelError):
        alipay.download_statement("transactions", day - timedelta(days=12), day)

    clock.advance(timedelta(days=2))
    settled = list(parse_compare_file(alipay.download_statement("settlement", day + timedelta(days=2),
                                                                day + timedelta(days=2))))
    assert {r["status"] for r in settled} == {"SETTLED"}


@pytest.mark.parametrize("query,error", [
    ("service=nope&partner=2088101122136241", b"ILLEGAL_SERVICE"),
    ("service=single_trade_query&partner=2088000000000000&out_trade_no=A&sign=x&sign_type=MD5", b"ILLEGAL_PARTNER"),
    ("service=single_trade_query&partner=2088101122136241&out_trade_no=A&sign=x&sign_type=DSA", b"ILLEGAL_SIGN_TYPE"),
    ("service=single_trade_query&partner=2088101122136241&out_trade_no=A&sign=x&sign_type=MD5", b"ILLEGAL_SIGN"),
    ("service=single_trade_query&service=forex_refund", b"ILLEGAL_ARGUMENT"),
])
def test_sandbox_answers_errors_in_alipays_format(client, query, error):
    resp = client.http.get(GATEWAY_PATH + "?" + query)
    assert resp.status_code == 200 and b"<is_success>F</is_success><error>" + error + b"</error>" in resp.body


def test_sandbox_never_answers_500_to_junk_posts(client):
    for body in (b"\xff\xfe\x00", b"a=1&a=2", b"x" * 70000, b"service=forex_refund&partner=2088101122136241"):
        resp = client.http.post(GATEWAY_PATH, headers={"Content-Type": "application/x-www-form-urlencoded"},
                                body=body)
        assert resp.status_code == 200 and b"<is_success>F</is_success>" in resp.body


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded; charset=utf-8"])
def test_gateway_reads_a_form_body_whatever_the_content_type_like_alipay(client, alipay, content_type):
    from urllib.parse import urlencode

    body = urlencode(alipay._signed({**alipay._base("single_trade_query"), "out_trade_no": "NZCT0001"})).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = client.http.post(GATEWAY_PATH, headers=headers, body=body)
    assert resp.status_code == 200, resp.body
    assert b"<is_success>F</is_success>" in resp.body and b"TRADE_NOT_EXIST" in resp.body
