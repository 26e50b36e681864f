"""WeChatChannel against the WeChat sandbox, through app.py: real signing, XML and parsing both ways."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chalicelib import clock, http, settings
from chalicelib.channels.base import (
    ChannelError, ChannelStatus, CreateRequest, InvalidNotification, MerchantChannelConfig, OrderRef,
    RefundRequest, RefundStatus,
)
from chalicelib.channels.wechat import sandbox, signing, statement, wire
from chalicelib.channels.wechat.client import WeChatChannel
from chalicelib.money import Money
from tests.support.transport import ChaliceAdapter, FakeReceiver

SANDBOX = "http://kauri.test/sandbox/wechat"
MERCHANT = MerchantChannelConfig({"sub_mch_id": "20000100"})
NOTIFY_URL = "http://merchant.test/notify"
ACK_OK = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
ACK_FAIL = b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>"


@pytest.fixture(autouse=True)
def frozen_clock():
    """Time moves only when a test says so: retry and settle boundaries are exact."""
    clock.freeze()
    yield
    clock.reset()


@pytest.fixture
def wechat(client):
    return WeChatChannel()


@pytest.fixture
def receiver(client):
    r = FakeReceiver(body=ACK_OK)
    http.mount("http://merchant.test", r)
    return r


def order(no: str, flow: str = "native", amount: int = 1250, **kw) -> CreateRequest:
    fields = dict(payment_id="pay_" + no, channel_order_id=no, amount=Money(amount, "NZD"), flow=flow,
                  description="新西兰蜂蜜 Manuka honey 500g", notify_url=NOTIFY_URL,
                  expires_at=clock.now() + timedelta(hours=1), merchant=MERCHANT, client_ip="203.0.113.10")
    fields.update(kw)
    return CreateRequest(**fields)


def ref(no: str) -> OrderRef:
    return OrderRef(channel_order_id=no, merchant=MERCHANT)


def pay(client, no: str, outcome: str = "success"):
    return client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                            body=f'{{"out_trade_no": "{no}", "outcome": "{outcome}"}}')


def raw_post(path: str, fields: dict) -> dict:
    resp = http.session().post(SANDBOX + path, data=wire.to_xml(fields), headers={"Content-Type": "text/xml"})
    assert resp.status_code == 200
    return wire.from_xml(resp.content)


def refund_req(no: str, rf: str, amount: int, total: int = 1250) -> RefundRequest:
    return RefundRequest(refund_id="re_" + rf, channel_refund_id=rf, payment=ref(no),
                         total=Money(total, "NZD"), amount=Money(amount, "NZD"), reason="customer changed mind")


# ---- create ----------------------------------------------------------------------------------

def test_native_order_returns_a_weixin_qr_code(wechat):
    result = wechat.create(order("NZ0000000001"))
    assert result.next_action["type"] == "qr_code"
    assert result.next_action["qr_code"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert result.channel_data["prepay_id"].startswith("wx") and len(result.channel_data["prepay_id"]) == 36


def test_jsapi_order_returns_bridge_params_with_a_verifiable_pay_sign(wechat):
    result = wechat.create(order("NZ0000000002", flow="jsapi", payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}))
    params = result.next_action["jsapi"]
    assert result.next_action["type"] == "jsapi"
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"] == "prepay_id=" + result.channel_data["prepay_id"]
    cfg = settings.get().wechat
    unsigned = {k: v for k, v in params.items() if k != "paySign"}
    assert params["paySign"] == signing.sign(unsigned, cfg.api_key, params["signType"])


def test_jsapi_without_openid_is_refused(wechat):
    with pytest.raises(ChannelError) as err:
        wechat.create(order("NZ0000000003", flow="jsapi"))
    assert err.value.code == "PARAM_ERROR" and not err.value.retryable


def test_h5_order_redirects_to_mweb_url_with_our_return_url(wechat):
    result = wechat.create(order("NZ0000000004", flow="h5", return_url="https://shop.example/done?x=1"))
    url = result.next_action["url"]
    assert result.next_action["type"] == "redirect"
    assert url.startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=")
    assert url.endswith("&redirect_url=https%3A%2F%2Fshop.example%2Fdone%3Fx%3D1")


def test_identical_reentry_gives_a_fresh_prepay_id(wechat):
    req = order("NZ0000000005")
    first, second = wechat.create(req), wechat.create(req)
    assert first.channel_data["prepay_id"] != second.channel_data["prepay_id"]


def test_same_out_trade_no_with_changed_amount_is_out_trade_no_used(wechat):
    wechat.create(order("NZ0000000006"))
    with pytest.raises(ChannelError) as err:
        wechat.create(order("NZ0000000006", amount=1300))
    assert err.value.code == "OUT_TRADE_NO_USED"


def test_reentry_after_payment_is_orderpaid(client, wechat):
    req = order("NZ0000000007")
    wechat.create(req)
    assert pay(client, "NZ0000000007").status_code == 200
    with pytest.raises(ChannelError) as err:
        wechat.create(req)
    assert err.value.code == "ORDERPAID"


def test_md5_institution_works_end_to_end(client):
    md5 = WeChatChannel(dataclasses.replace(settings.get().wechat, sign_type="MD5"))
    result = md5.create(order("NZ0000000008", flow="jsapi", payer={"openid": "o1"}))
    assert result.next_action["jsapi"]["signType"] == "MD5"
    assert md5.query(ref("NZ0000000008")).status is ChannelStatus.PENDING


# ---- authentication and bad input ------------------------------------------------------------

def test_request_signed_with_the_wrong_key_gets_unsigned_fail(client):
    bad = WeChatChannel(dataclasses.replace(settings.get().wechat, api_key="0" * 32))
    with pytest.raises(ChannelError) as err:
        bad.query(ref("NZ0000000009"))
    assert err.value.code == "SIGNERROR" and err.value.message == "签名失败"  # the free text never is the code
    fields = {"appid": settings.get().wechat.appid, "mch_id": settings.get().wechat.mch_id,
              "sub_mch_id": "20000100", "nonce_str": "abc", "out_trade_no": "NZ0000000009", "sign": "0" * 32}
    answer = raw_post("/pay/orderquery", fields)
    assert answer == {"return_code": "FAIL", "return_msg": "签名失败"}


@pytest.mark.parametrize("body", [
    b"",
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><appid>&xxe;</appid></xml>',
    b"<xml>" + b"<a>x</a>" * 10000 + b"</xml>",
])
def test_garbage_gets_a_wechat_fail_body_never_a_500(client, body):
    resp = client.http.post("/sandbox/wechat/pay/unifiedorder", headers={"Content-Type": "text/xml"}, body=body)
    assert resp.status_code == 200
    fields = wire.from_xml(resp.body)
    assert fields["return_code"] == "FAIL" and "sign" not in fields


def test_a_validation_refusal_is_signed_and_names_the_field(client):
    cfg = settings.get().wechat
    fields = {"appid": cfg.appid, "mch_id": cfg.mch_id, "sub_mch_id": "20000100", "nonce_str": "n1",
              "body": "x", "out_trade_no": "bad no!", "fee_type": "NZD", "total_fee": "12.50",
              "spbill_create_ip": "203.0.113.10", "notify_url": NOTIFY_URL, "trade_type": "NATIVE", "product_id": "p"}
    fields["sign"] = signing.sign(fields, cfg.api_key)
    answer = raw_post("/pay/unifiedorder", fields)
    assert answer["return_code"] == "SUCCESS" and answer["result_code"] == "FAIL"
    assert answer["err_code"] == "PARAM_ERROR"
    assert signing.verify(answer, cfg.api_key)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain",
                                          "text/plain; charset=utf-8", "application/octet-stream"])
def test_xml_sent_without_an_xml_content_type_is_read_as_xml_like_wechat_does(client, wechat, content_type):
    wechat.create(order("NZCT00000001"))
    cfg = settings.get().wechat
    fields = {"appid": cfg.appid, "mch_id": cfg.mch_id, "sub_mch_id": "20000100", "nonce_str": "ct1",
              "out_trade_no": "NZCT00000001"}
    fields["sign"] = signing.sign(fields, cfg.api_key)
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = client.http.post("/sandbox/wechat/pay/orderquery", headers=headers, body=wire.to_xml(fields))
    assert resp.status_code == 200, resp.body
    answer = wire.from_xml(resp.body)
    assert answer["result_code"] == "SUCCESS" and answer["trade_state"] == "NOTPAY"
    assert signing.verify(answer, cfg.api_key)


# ---- query / close ---------------------------------------------------------------------------

def test_query_before_and_after_payment(client, wechat, receiver):
    wechat.create(order("NZ0000000010"))
    before = wechat.query(ref("NZ0000000010"))
    assert before.status is ChannelStatus.PENDING and before.amount == Money(1250, "NZD")
    assert before.channel_transaction_id is None and before.paid_at is None

    clock.advance(timedelta(minutes=3))
    assert pay(client, "NZ0000000010").status_code == 200
    after = wechat.query(ref("NZ0000000010"))
    assert after.status is ChannelStatus.PAID
    assert after.payer_amount == Money(5375, "CNY") and str(after.rate) == "4.3"
    assert after.channel_transaction_id.startswith("4200") and len(after.channel_transaction_id) == 28
    assert abs((after.paid_at - clock.now()).total_seconds()) < 2
    assert after.merchant_channel_id == "20000100"
    by_txn = wechat.query(OrderRef("NZ0000000010", MERCHANT, channel_transaction_id=after.channel_transaction_id))
    assert by_txn.status is ChannelStatus.PAID


def test_query_of_an_unknown_order_is_not_found(wechat):
    assert wechat.query(ref("NZ0000000099")).status is ChannelStatus.NOT_FOUND


def test_query_with_another_sub_merchant_does_not_see_the_order(wechat):
    wechat.create(order("NZ0000000011"))
    other = OrderRef("NZ0000000011", MerchantChannelConfig({"sub_mch_id": "20000999"}))
    assert wechat.query(other).status is ChannelStatus.NOT_FOUND


def test_close_then_pay_is_refused_and_close_is_idempotent(client, wechat):
    wechat.create(order("NZ0000000012"))
    wechat.close(ref("NZ0000000012"))
    wechat.close(ref("NZ0000000012"))  # ORDERCLOSED is fine
    assert wechat.query(ref("NZ0000000012")).status is ChannelStatus.CLOSED
    assert pay(client, "NZ0000000012").status_code == 409


def test_closing_a_paid_order_raises_orderpaid(client, wechat, receiver):
    wechat.create(order("NZ0000000013"))
    pay(client, "NZ0000000013")
    with pytest.raises(ChannelError) as err:
        wechat.close(ref("NZ0000000013"))
    assert err.value.code == "ORDERPAID"


def test_unpaid_order_past_time_expire_reads_closed(wechat):
    wechat.create(order("NZ0000000014", expires_at=clock.now() + timedelta(minutes=10)))
    clock.advance(timedelta(minutes=11))
    assert wechat.query(ref("NZ0000000014")).status is ChannelStatus.CLOSED


# ---- refunds ---------------------------------------------------------------------------------

class CertRecordingAdapter(ChaliceAdapter):
    def __init__(self, client):
        super().__init__(client)
        self.certs = []

    def send(self, request, **kwargs):
        self.certs.append((request.url, kwargs.get("cert")))
        return super().send(request, **kwargs)


def test_refund_uses_client_cert_and_settles_via_refund_query(client, receiver):
    adapter = CertRecordingAdapter(client)
    http.mount("http://kauri.test", adapter)
    wechat = WeChatChannel(dataclasses.replace(settings.get().wechat, cert_path="/certs/apiclient_cert.pem",
                                               key_path="/certs/apiclient_key.pem"))
    wechat.create(order("NZ0000000020"))
    pay(client, "NZ0000000020")

    accepted = wechat.refund(refund_req("NZ0000000020", "RF0000000020", 500))
    assert accepted.status is RefundStatus.PROCESSING and accepted.amount == Money(500, "NZD")
    assert accepted.channel_refund_ref
    refund_calls = [c for c in adapter.certs if c[0].endswith("/secapi/pay/refund")]
    assert refund_calls == [(SANDBOX + "/secapi/pay/refund", ("/certs/apiclient_cert.pem", "/certs/apiclient_key.pem"))]
    assert all(cert is None for url, cert in adapter.certs if "/secapi/" not in url)

    assert wechat.refund_query(refund_req("NZ0000000020", "RF0000000020", 500)).status is RefundStatus.PROCESSING
    clock.advance(timedelta(seconds=15))
    done = wechat.refund_query(refund_req("NZ0000000020", "RF0000000020", 500))
    assert done.status is RefundStatus.SUCCEEDED and done.channel_refund_ref == accepted.channel_refund_ref
    assert wechat.query(ref("NZ0000000020")).status is ChannelStatus.REFUNDED


def test_refund_retry_with_same_number_is_idempotent_and_over_refund_is_refused(client, wechat, receiver):
    wechat.create(order("NZ0000000021"))
    pay(client, "NZ0000000021")
    first = wechat.refund(refund_req("NZ0000000021", "RF0000000021a", 1000))
    again = wechat.refund(refund_req("NZ0000000021", "RF0000000021a", 1000))
    assert first.channel_refund_ref == again.channel_refund_ref
    with pytest.raises(ChannelError) as err:
        wechat.refund(refund_req("NZ0000000021", "RF0000000021a", 900))
    assert err.value.code == "PARAM_ERROR"
    with pytest.raises(ChannelError) as err:
        wechat.refund(refund_req("NZ0000000021", "RF0000000021b", 251))
    assert err.value.code == "ERROR" and not err.value.retryable
    wechat.refund(refund_req("NZ0000000021", "RF0000000021c", 250))  # exactly the rest is fine


def test_refund_of_an_unpaid_order_is_refused(wechat):
    wechat.create(order("NZ0000000022"))
    with pytest.raises(ChannelError):
        wechat.refund(refund_req("NZ0000000022", "RF0000000022", 100))


def test_refund_query_of_an_unknown_refund(wechat):
    with pytest.raises(ChannelError) as err:
        wechat.refund_query(refund_req("NZ0000000023", "RF_nope", 100))
    assert err.value.code == "REFUNDNOTEXIST"


# ---- exchange rate and bills -----------------------------------------------------------------

def test_exchange_rate(wechat):
    today = clock.now().astimezone(wire.CHINA_TZ).date()
    assert str(wechat.exchange_rate("NZD", today, sub_mch_id="20000100")) == "4.3"
    with pytest.raises(ChannelError):
        wechat.exchange_rate("XXX", today)


def test_bill_lists_the_days_payments_and_refunds_and_parses(client, wechat, receiver):
    wechat.create(order("NZ0000000030"))
    wechat.create(order("NZ0000000031", amount=999))
    wechat.create(order("NZ0000000032"))  # never paid: not in the bill
    pay(client, "NZ0000000030")
    pay(client, "NZ0000000031")
    wechat.refund(refund_req("NZ0000000030", "RF0000000030", 250))
    day = clock.now().astimezone(wire.CHINA_TZ).date()

    text = wechat.download_bill(day, sub_mch_id="20000100")
    assert text.splitlines()[0].startswith("交易时间,公众账号ID,商户号,子商户号")
    records = list(statement.parse(text))
    by_no = {r["our_no"]: r for r in records}
    assert set(by_no) == {"NZ0000000030", "NZ0000000031", "RF0000000030"}
    assert by_no["NZ0000000031"]["amount_minor"] == 999 and by_no["NZ0000000031"]["fee_minor"] == 20
    assert by_no["RF0000000030"]["record_type"] == "REFUND" and by_no["RF0000000030"]["amount_minor"] == 250
    assert all(r["bill_date"] == day.isoformat() and r["currency"] == "NZD" for r in records)
    assert [r["our_no"] for r in statement.parse(wechat.download_bill(day, bill_type="REFUND"))] == ["RF0000000030"]


def test_bill_for_a_day_without_orders_is_no_bill_exist(wechat):
    with pytest.raises(ChannelError) as err:
        wechat.download_bill(clock.now().date() - timedelta(days=30))
    assert err.value.code == "20002"


# ---- notifications ---------------------------------------------------------------------------

def test_simulated_payment_notifies_the_merchant_and_the_notification_verifies(client, wechat, receiver):
    wechat.create(order("NZ0000000040"))
    resp = pay(client, "NZ0000000040")
    assert resp.status_code == 200
    import json

    answer = json.loads(resp.body)
    assert answer["delivered"] is True and answer["attempts"] == 1
    assert answer["notification"]["rate"] == "430000000" and answer["notification"]["cash_fee"] == 5375

    (delivery,) = receiver.requests
    assert delivery["url"] == NOTIFY_URL
    note = wechat.parse_notification(delivery["body"], delivery["headers"])
    assert note.kind == "payment" and note.payment.status is ChannelStatus.PAID
    assert note.payment.channel_order_id == "NZ0000000040"
    assert note.payment.amount == Money(1250, "NZD") and note.payment.payer_amount == Money(5375, "CNY")
    assert note.payment.merchant_channel_id == "20000100" and "sign" not in note.payment.raw
    assert sandbox.pump() == 0  # delivered: nothing left to retry


def test_failed_payment_notification_parses_as_failed(client, wechat, receiver):
    wechat.create(order("NZ0000000041"))
    assert pay(client, "NZ0000000041", outcome="fail").status_code == 200
    note = wechat.parse_notification(receiver.requests[0]["body"], {})
    assert note.payment.status is ChannelStatus.FAILED
    assert wechat.query(ref("NZ0000000041")).status is ChannelStatus.FAILED


def test_receiver_failing_gets_retries_on_wechats_schedule_until_it_says_success(client, wechat, receiver):
    receiver.body = ACK_FAIL
    wechat.create(order("NZ0000000042"))
    pay(client, "NZ0000000042")
    assert len(receiver.requests) == 1

    clock.advance(timedelta(seconds=14))
    assert sandbox.pump() == 0
    clock.advance(timedelta(seconds=1))
    assert sandbox.pump() == 1                      # 15 s
    clock.advance(timedelta(seconds=15))
    assert sandbox.pump() == 1                      # +15 s
    receiver.down = True
    clock.advance(timedelta(seconds=30))
    assert sandbox.pump() == 1                      # +30 s, times out
    receiver.down = False
    receiver.body = ACK_OK
    clock.advance(timedelta(seconds=179))
    assert sandbox.pump() == 0
    clock.advance(timedelta(seconds=1))
    assert sandbox.pump() == 1                      # +3 min, answered SUCCESS
    clock.advance(timedelta(hours=7))
    assert sandbox.pump() == 0
    assert len(receiver.requests) == 5
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1                          # the same signed notification every time
    assert wechat.parse_notification(receiver.requests[-1]["body"], {}).payment.status is ChannelStatus.PAID


def test_notifications_stop_after_the_last_scheduled_retry(client, wechat, receiver):
    receiver.body = ACK_FAIL
    wechat.create(order("NZ0000000043"))
    pay(client, "NZ0000000043")
    for interval in sandbox.RETRY_SCHEDULE:
        clock.advance(timedelta(seconds=interval))
        assert sandbox.pump() == 1
    clock.advance(timedelta(days=2))
    assert sandbox.pump() == 0
    assert len(receiver.requests) == 1 + len(sandbox.RETRY_SCHEDULE)


def test_tampered_notification_is_rejected(client, wechat, receiver):
    wechat.create(order("NZ0000000044"))
    pay(client, "NZ0000000044")
    body = receiver.requests[0]["body"]
    assert b"<total_fee>1250</total_fee>" in body
    with pytest.raises(InvalidNotification):
        wechat.parse_notification(body.replace(b"<total_fee>1250</total_fee>", b"<total_fee>1</total_fee>"), {})
    fields = wire.from_xml(body)
    with pytest.raises(InvalidNotification):
        wechat.parse_notification(wire.to_xml({k: v for k, v in fields.items() if k != "sign"}), {})
    foreign = {**fields, "mch_id": "99999999"}
    foreign["sign"] = signing.sign({k: v for k, v in foreign.items() if k != "sign"}, settings.get().wechat.api_key,
                                   settings.get().wechat.sign_type)
    with pytest.raises(InvalidNotification):
        wechat.parse_notification(wire.to_xml(foreign), {})
    with pytest.raises(InvalidNotification):
        wechat.parse_notification(b"<xml><a>1</a>", {})


def test_ack_bodies(wechat):
    ok, fail = wechat.ack(True), wechat.ack(False, "busy")
    assert ok.content_type == "text/xml" and wire.from_xml(ok.body) == {"return_code": "SUCCESS", "return_msg": "OK"}
    assert wire.from_xml(fail.body) == {"return_code": "FAIL", "return_msg": "busy"}


def test_simulate_endpoints_validate_their_input(client):
    assert pay(client, "NZ_does_not_exist").status_code == 404
    bad = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"}, body=b"[1]")
    assert bad.status_code == 400
    pumped = client.http.post("/sandbox/wechat/simulate/pump")
    assert pumped.status_code == 200


# ---- client error mapping against a misbehaving server ----------------------------------------

def _server(client, body: bytes = b"", down: bool = False) -> WeChatChannel:
    fake = FakeReceiver(body=body)
    fake.down = down
    http.mount("http://wechat.test", fake)
    return WeChatChannel(dataclasses.replace(settings.get().wechat, base_url="http://wechat.test"))


def _signed_answer(**fields) -> bytes:
    cfg = settings.get().wechat
    out = {"return_code": "SUCCESS", "appid": cfg.appid, "mch_id": cfg.mch_id, "nonce_str": "n", **fields}
    out["sign"] = signing.sign(out, cfg.api_key, cfg.sign_type)
    return wire.to_xml(out)


def test_network_failure_is_a_retryable_network_error(client):
    with pytest.raises(ChannelError) as err:
        _server(client, down=True).query(ref("NZ0000000050"))
    assert err.value.code == "NETWORK" and err.value.retryable


def test_systemerror_is_retryable_and_other_refusals_are_not(client):
    with pytest.raises(ChannelError) as err:
        _server(client, _signed_answer(result_code="FAIL", err_code="SYSTEMERROR")).query(ref("NZ0000000051"))
    assert err.value.code == "SYSTEMERROR" and err.value.retryable
    with pytest.raises(ChannelError) as err:
        _server(client, _signed_answer(result_code="FAIL", err_code="NOAUTH")).query(ref("NZ0000000051"))
    assert not err.value.retryable


def test_forged_or_foreign_responses_are_not_trusted(client):
    forged = _signed_answer(result_code="SUCCESS", trade_state="SUCCESS").replace(
        b"<trade_state><![CDATA[SUCCESS]]>", b"<trade_state><![CDATA[REFUND]]>")
    with pytest.raises(ChannelError) as err:
        _server(client, forged).query(ref("NZ0000000052"))
    assert err.value.code == "INVALID_SIGNATURE"
    with pytest.raises(ChannelError) as err:
        _server(client, _signed_answer(result_code="SUCCESS", trade_state="SUCCESS", appid="wxsomeoneelse")).query(
            ref("NZ0000000052"))
    assert err.value.code == "ID_MISMATCH"


def test_link_local_notify_url_is_refused(wechat):
    with pytest.raises(ChannelError) as err:
        wechat.create(order("NZ0000000053", notify_url="http://169.254.169.254/latest"))
    assert err.value.code == "PARAM_ERROR"
