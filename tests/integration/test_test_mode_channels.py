"""Test mode (sk_test_ keys) never reaches a live channel, and sees only test events and endpoints."""
from __future__ import annotations

import functools
import os

import pytest

from chalicelib import channels, http, settings
from chalicelib.channels.wechat import signing, wire
from chalicelib.services import chase, merchants, notifications
from tests.integration.helpers import MerchantApi, shopper_pays
from tests.support.transport import FakeReceiver

LIVE_WECHAT = "https://live-wechat.test"
WECHAT_TEST_ENV = "https://apitest-wechat.test"


@pytest.fixture
def stage_env(client, monkeypatch):
    """The stage's settings with some environment variables changed, for one test. (The chalice test
    client re-applies the stage's own variables on every request, so the settings are pinned instead.)"""
    def apply(**values):
        pinned = settings.load({**os.environ, **values})
        monkeypatch.setattr(settings, "get", functools.lru_cache(maxsize=1)(lambda: pinned))
        channels.reset()
    yield apply
    monkeypatch.undo()
    channels.reset()


@pytest.fixture
def live_wechat(client):
    """The live WeChat API (a fake host here): it must never hear of a test-mode payment."""
    r = FakeReceiver(body=b"not a wechat answer")
    http.mount(LIVE_WECHAT, r)
    return r


@pytest.fixture
def both(client):
    m = merchants.create_merchant("Both Modes Ltd", "NZD", fee_bps=200, channels={"wechat": {"sub_mch_id": "20000100"}})
    return (MerchantApi(client, merchants.issue_key(m.id, livemode=True), m),
            MerchantApi(client, merchants.issue_key(m.id, livemode=False), m))


def test_test_key_payment_refund_and_chase_use_the_sandbox_never_the_live_channel(both, client, stage_env,
                                                                                 live_wechat):
    stage_env(KAURI_WECHAT_BASE_URL=LIVE_WECHAT)     # live mode points at the real channel
    live, test = both
    p = test.create_payment(amount=1000).json_body
    assert p["livemode"] is False and p["status"] == "pending"
    shopper_pays(client, p)                           # in the sandbox, which notifies us
    assert test.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"
    r = test.post(f"/v1/payments/{p['id']}/refunds", {"amount": 400})
    assert r.status_code == 201, r.body
    chase.chase_payments()
    assert live_wechat.requests == []                # not one call reached live WeChat

    # the contrast: a live key's payment does go to the live channel
    assert live.create_payment(amount=1000).status_code == 502
    assert [req["url"] for req in live_wechat.requests] == [LIVE_WECHAT + "/pay/unifiedorder"]


def test_test_mode_uses_the_channels_own_test_environment_when_one_is_configured(both, stage_env, live_wechat):
    test_env = FakeReceiver(body=b"not a wechat answer")
    http.mount(WECHAT_TEST_ENV, test_env)
    stage_env(KAURI_WECHAT_BASE_URL=LIVE_WECHAT, KAURI_TEST_WECHAT_BASE_URL=WECHAT_TEST_ENV,
              KAURI_TEST_WECHAT_API_KEY="t" * 32, KAURI_TEST_WECHAT_MCH_ID="10000999")
    _, test = both
    test.create_payment(amount=1000)
    assert [req["url"] for req in test_env.requests] == [WECHAT_TEST_ENV + "/pay/unifiedorder"]
    assert b"<mch_id><![CDATA[10000999]]></mch_id>" in test_env.requests[0]["body"]
    assert live_wechat.requests == []


def test_test_mode_is_refused_where_there_is_no_test_environment(both, stage_env, live_wechat):
    stage_env(KAURI_WECHAT_BASE_URL=LIVE_WECHAT, KAURI_SANDBOX_ENABLED="0")
    _, test = both
    r = test.create_payment(amount=1000)
    assert r.status_code == 400 and r.json_body["error"]["code"] == "test_mode_unavailable"
    assert live_wechat.requests == []


def test_notification_signed_by_the_live_account_never_moves_a_test_payment(both, client, stage_env):
    # Live and test are different WeChat accounts here: the live key's signature cannot pay a test order.
    from tests.integration.test_callbacks_exactly_once import notification, post_callback

    stage_env(KAURI_WECHAT_BASE_URL=LIVE_WECHAT, KAURI_WECHAT_API_KEY="e" * 32)   # live: the real account
    _, test = both
    p = test.create_payment(amount=1000).json_body
    by_test_account = notification(p)                # signed with the sandbox's key: the test account
    fields = wire.from_xml(by_test_account)
    fields.pop("sign")
    fields["sign"] = signing.sign(fields, "e" * 32, "MD5")
    assert b"FAIL" in post_callback(client, wire.to_xml(fields)).body   # genuine for live, but not a live order
    assert test.get(f"/v1/payments/{p['id']}").json_body["status"] == "pending"
    assert b"SUCCESS" in post_callback(client, by_test_account).body
    assert test.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"


def test_a_test_key_never_lists_gets_or_resends_live_events_and_the_reverse(both, client):
    live, test = both
    pl = live.create_payment(amount=1000).json_body
    pt = test.create_payment(amount=1000, merchant_reference="t-1").json_body
    shopper_pays(client, pl)
    shopper_pays(client, pt)
    [live_event] = live.get("/v1/events").json_body["data"]
    [test_event] = test.get("/v1/events").json_body["data"]
    assert live_event["livemode"] is True and test_event["livemode"] is False
    assert live.get(f"/v1/events/{test_event['id']}").status_code == 404
    assert test.get(f"/v1/events/{live_event['id']}").status_code == 404
    assert test.post(f"/v1/events/{live_event['id']}/resend", headers={"Idempotency-Key": "r1"}).status_code == 404
    assert live.post(f"/v1/events/{test_event['id']}/resend", headers={"Idempotency-Key": "r2"}).status_code == 404
    assert test.post(f"/v1/events/{test_event['id']}/resend", headers={"Idempotency-Key": "r3"}).status_code == 200


def test_webhook_endpoints_have_a_mode_and_test_events_go_to_test_endpoints_only(both, client):
    live, test = both
    live_hook, test_hook = FakeReceiver(), FakeReceiver()
    http.mount("https://live-hooks.test", live_hook)
    http.mount("https://test-hooks.test", test_hook)
    assert live.post("/v1/webhook_endpoints", {"url": "https://live-hooks.test/k"}).json_body["livemode"] is True
    assert test.post("/v1/webhook_endpoints", {"url": "https://test-hooks.test/k"}).json_body["livemode"] is False
    assert [e["url"] for e in live.get("/v1/webhook_endpoints").json_body["data"]] == ["https://live-hooks.test/k"]
    assert [e["url"] for e in test.get("/v1/webhook_endpoints").json_body["data"]] == ["https://test-hooks.test/k"]
    pl = live.create_payment(amount=1000).json_body
    pt = test.create_payment(amount=1000, merchant_reference="t-1").json_body
    shopper_pays(client, pl)
    shopper_pays(client, pt)
    assert notifications.deliver_due() == 2
    assert [req["body"].decode().count(pl["id"]) > 0 for req in live_hook.requests] == [True]
    assert [req["body"].decode().count(pt["id"]) > 0 for req in test_hook.requests] == [True]
    assert b'"livemode":false' in test_hook.requests[0]["body"]
