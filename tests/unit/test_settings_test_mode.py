"""Settings per mode: test mode has its own channel environments, or none (then it is refused)."""
from __future__ import annotations

from chalicelib import settings

# Prod takes channel keys from Secrets Manager only (chalicelib.secrets): the settings name the secrets.
PROD_LIVE = {"KAURI_STAGE": "prod", "KAURI_WECHAT_BASE_URL": "https://api.mch.weixin.qq.com"}


def test_prod_has_no_test_environment_unless_one_is_configured():
    s = settings.load(PROD_LIVE)
    assert [s.channel_config(c, livemode=False) for c in ("wechat", "alipay", "payease")] == [None, None, None]
    assert s.channel_config("wechat", livemode=True).secret_id == "kauri-prod-wechat"


def test_a_configured_test_environment_borrows_nothing_from_live():
    s = settings.load({**PROD_LIVE, "KAURI_TEST_WECHAT_BASE_URL": "https://apitest.mch.weixin.qq.com",
                       "KAURI_TEST_WECHAT_SECRET_ID": "kauri-prod-wechat-apitest"})
    test = s.channel_config("wechat", livemode=False)
    assert test.base_url == "https://apitest.mch.weixin.qq.com" and test.secret_id == "kauri-prod-wechat-apitest"
    assert s.channel_config("payease", livemode=False) is None
    half = settings.load({**PROD_LIVE, "KAURI_TEST_WECHAT_BASE_URL": "https://apitest.mch.weixin.qq.com"})
    test = half.channel_config("wechat", livemode=False)
    assert test.api_key == "" and test.secret_id == "kauri-prod-wechat-test"   # never the live key or secret
    assert not settings.same_credentials(test, half.wechat)


def test_a_sandbox_stage_runs_test_mode_on_the_sandboxes_even_when_live_talks_to_a_real_channel():
    s = settings.load({"KAURI_STAGE": "sandbox", "KAURI_PUBLIC_BASE_URL": "https://kauri.example",
                       "KAURI_WECHAT_BASE_URL": "https://api.mch.weixin.qq.com", "KAURI_WECHAT_API_KEY": "L" * 32})
    test = s.channel_config("wechat", livemode=False)
    assert test.base_url == "https://kauri.example/sandbox/wechat" and test.api_key != "L" * 32
    assert s.sandbox_account("wechat") == test
    assert not settings.same_credentials(test, s.wechat)
