"""The public sandboxes never POST into our network: notify URLs obey chalicelib.egress, and only the
PayEase test merchant (with its key) may re-point its console notify URL."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib import channels, clock, egress, http, settings
from chalicelib.channels.base import ChannelError, CreateRequest, MerchantChannelConfig
from chalicelib.channels.payease import signing as payease_signing
from chalicelib.channels.wechat.client import WeChatChannel
from chalicelib.money import Money
from tests.integration.test_egress import PUBLIC_IP, Names
from tests.integration.test_payease_sandbox import _create as payease_create
from tests.integration.test_payease_sandbox import _pay as payease_pay
from tests.integration.test_payease_sandbox import _place_order, _submit_form
from tests.support.transport import FakeReceiver

INSIDE = ["http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "http://10.0.0.5/notify",
          "http://localhost/notify", "https://169.254.169.254/latest/meta-data/", "https://[::ffff:10.0.0.5]/n",
          "https://internal.test/notify"]


@pytest.fixture
def deployed(monkeypatch):
    """The public dev/sandbox stages: no local receivers; the stack's own base URL stays allowed."""
    monkeypatch.setenv("KAURI_LOCAL_RECEIVERS", "0")
    settings.reset()
    egress.use_resolver(Names(notify_example_com=[PUBLIC_IP], localhost=["127.0.0.1"],
                              internal_test=["127.0.0.1"]))
    yield
    monkeypatch.setenv("KAURI_LOCAL_RECEIVERS", "1")
    settings.reset()


def _wechat_order(no: str, notify_url: str) -> CreateRequest:
    return CreateRequest(payment_id="pay_" + no, channel_order_id=no, amount=Money(1250, "NZD"), flow="native",
                         description="Manuka honey", notify_url=notify_url, expires_at=clock.now() + timedelta(hours=1),
                         merchant=MerchantChannelConfig({"sub_mch_id": "20000100"}), client_ip="203.0.113.10")


def _alipay_order(no: str, notify_url: str, flow: str = "qr") -> CreateRequest:
    return CreateRequest(payment_id="pay_" + no, channel_order_id=no, amount=Money.from_major("25.50", "NZD"),
                         flow=flow, description="Kiwifruit", notify_url=notify_url,
                         expires_at=clock.now() + timedelta(minutes=30),
                         merchant=MerchantChannelConfig({"secondary_merchant_id": "kiwi_cafe_001",
                                                         "secondary_merchant_name": "Kiwi Cafe Ltd",
                                                         "secondary_merchant_industry": "5812"}),
                         return_url="https://shop.example.com/return")


@pytest.mark.parametrize("url", INSIDE)
def test_wechat_sandbox_refuses_notify_urls_inside_the_network(client, deployed, url):
    with pytest.raises(ChannelError):
        WeChatChannel().create(_wechat_order("NZIN0000001", url))


def test_wechat_sandbox_accepts_the_stacks_own_callback_and_public_receivers(client, deployed):
    WeChatChannel().create(_wechat_order("NZOK0000001", settings.get().public_base_url + "/callbacks/wechat"))
    WeChatChannel().create(_wechat_order("NZOK0000002", "https://notify.example.com/wx"))


def test_wechat_sandbox_checks_the_notify_address_again_when_it_sends(client, deployed):
    names = Names(notify_example_com=[PUBLIC_IP])
    egress.use_resolver(names)
    receiver = FakeReceiver()
    http.mount("https://notify.example.com", receiver)
    WeChatChannel().create(_wechat_order("NZRB0000001", "https://notify.example.com/wx"))
    names.answers["notify.example.com"] = ["10.0.0.5"]
    r = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": "NZRB0000001"}).encode())
    assert r.status_code == 200 and r.json_body["delivered"] is False
    assert receiver.requests == []


@pytest.mark.parametrize("url", INSIDE)
def test_alipay_sandbox_refuses_notify_urls_inside_the_network(client, deployed, url):
    with pytest.raises(ChannelError):  # transaction QR: the order is placed server to server
        channels.get("alipay").create(_alipay_order("ALIN0000001", url))
    redirect = channels.get("alipay").create(_alipay_order("ALIN0000002", url, flow="web")).next_action["url"]
    page = client.http.get(redirect[len(settings.get().public_base_url):])  # the shopper's browser arrives
    assert "ILLEGAL_ARGUMENT" in page.body.decode("utf-8", "replace")


def test_payease_sandbox_refuses_a_per_order_notify_url_inside_the_network(client, deployed):
    for url in INSIDE:
        _, result = payease_create(channels.get("payease"), notify_url=url)
        page = _submit_form(client, result)
        assert "选择银行" not in page.body.decode("utf-8", "replace"), url


def _console(client, fields: dict):
    return client.http.post("/sandbox/payease/merchant/config", headers={"Content-Type": "application/json"},
                            body=json.dumps(fields).encode())


def _signed_console(url: str, key: str = "test") -> dict:
    return {"v_mid": "444", "notify_url": url, "v_mac": payease_signing.mac(key, ["444", url])}


def test_payease_console_cannot_be_re_pointed_without_the_test_merchants_key(client):
    receiver = FakeReceiver(body=b"sent")
    http.mount("http://stranger.test", receiver)
    assert _console(client, {"v_mid": "444", "notify_url": "http://stranger.test/steal"}).status_code == 403
    assert _console(client, _signed_console("http://stranger.test/steal", key="guess")).status_code == 403
    _, v_oid = _place_order(client, channels.get("payease"), notify_url=None)
    payease_pay(client, v_oid)
    assert receiver.requests == []  # the notification went to Kauri's own callback, not the stranger
    assert _console(client, _signed_console("http://stranger.test/mine")).status_code == 200


def test_payease_console_refuses_a_notify_url_inside_the_network_even_when_signed(client, deployed):
    for url in INSIDE:
        r = _console(client, _signed_console(url))
        assert r.status_code != 200 or json.loads(r.body).get("notify_url") != url, url
