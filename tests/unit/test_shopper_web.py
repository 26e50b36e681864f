"""The pure parts of the shopper pages: wallet detection, language choice, code limits, cold start."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

from chalicelib.domain.qr_code import QrCode
from chalicelib.money import Money
from chalicelib.web import agent, i18n
from tests.conftest import PROJECT_DIR


@pytest.mark.parametrize("ua, kind", [
    ("Mozilla/5.0 (iPhone) AppleWebKit Mobile/15E148 MicroMessenger/8.0.47 NetType/WIFI", agent.WECHAT),
    ("Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36 micromessenger/8.0.40", agent.WECHAT),
    ("Mozilla/5.0 (Windows NT 10.0) MicroMessenger/7.0 wxwork/4.1", agent.DESKTOP),   # WeCom: no JSAPI
    ("Mozilla/5.0 (Linux; Android 13) Mobile Safari AlipayClient/10.5.30 Nebula AliApp(AP/10.5)", agent.ALIPAY),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Version/17.0 Mobile/15E148 Safari/604.1", agent.PHONE),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0 Mobile Safari/537.36", agent.PHONE),
    ("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36", agent.DESKTOP),
    ("", agent.DESKTOP),
    (None, agent.DESKTOP),
])
def test_user_agent_decides_the_wallet_flow(ua, kind):
    assert agent.classify(ua) == kind


@pytest.mark.parametrize("query, header, lang", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "en-NZ,en;q=0.9,zh;q=0.8", "en"),
    (None, "fr-FR,zh-TW;q=0.5", "zh-CN"),
    (None, "en;q=0.2,zh;q=0.7", "zh-CN"),
    (None, "zh;q=abc,en", "en"),
    (None, None, "en"),
    ("en", "zh-CN", "en"),
    ("zh-CN", "en", "zh-CN"),
    ("<script>", "en", "en"),
])
def test_language_comes_from_the_switch_then_accept_language(query, header, lang):
    assert i18n.pick(query, header) == lang


def test_every_message_exists_in_both_languages():
    for key, texts in i18n.MESSAGES.items():
        assert set(texts) == set(i18n.LANGS), key


def _code(**kw):
    return QrCode(id="qr_x", merchant_id="m", livemode=False, store_name="S", currency="NZD",
                  created_at=datetime(2026, 1, 1, tzinfo=timezone.utc), **kw)


def test_code_limits_check_amounts_exactly():
    assert _code().amount_problem(Money(1250, "NZD")) is None
    assert _code(max_amount=1000).amount_problem(Money(1001, "NZD")) == "too_large"
    assert _code(max_amount=1000).amount_problem(Money(1000, "NZD")) is None
    assert _code(fixed_amount=450).amount_problem(Money(451, "NZD")) == "fixed"
    assert _code().amount_problem(Money(0, "NZD")) == "too_small"
    assert _code().amount_problem(Money(100, "AUD")) == "currency"


def test_import_app_loads_no_page_packages():
    """Cold start: jinja2, qrcode, Pillow and the font load in the page handlers, never at `import app`."""
    probe = ("import sys, app; heavy = [m for m in ('jinja2', 'qrcode', 'png', 'markupsafe', 'PIL', "
             "'paperang_p2_fonts_cjk') if m in sys.modules]; "
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "KAURI_STAGE": "test", "AWS_DEFAULT_REGION": "ap-southeast-2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_forms_may_go_only_to_us_the_channels_cashiers_and_the_upload_bucket(monkeypatch):
    from chalicelib import settings
    from chalicelib.web import render

    prod = settings.load({"KAURI_STAGE": "prod", "KAURI_PUBLIC_BASE_URL": "https://pay.kauri.nz",
                          "KAURI_BUCKET": "kauri-prod-files", "AWS_DEFAULT_REGION": "ap-southeast-2",
                          "KAURI_ALIPAY_GATEWAY_URL": "https://mapi.alipay.com/gateway.do",
                          "KAURI_PAYEASE_GATEWAY_URL": "https://pay.yizhifubj.com"})
    monkeypatch.setattr(settings, "get", lambda: prod)
    assert render.form_targets() == ["https://kauri-prod-files.s3.amazonaws.com",
                                     "https://kauri-prod-files.s3.ap-southeast-2.amazonaws.com",
                                     "https://mapi.alipay.com", "https://pay.yizhifubj.com", "https://wx.tenpay.com"]
    csp = render.headers("n0nce")["Content-Security-Policy"]
    assert "form-action 'self' https://kauri-prod-files.s3.amazonaws.com" in csp and "'unsafe-inline'" not in csp
