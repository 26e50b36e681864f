"""Shopper pages in a real browser (headless Chromium) against `make run`'s stack.

Every step saves a screenshot under .local/screenshots/; they were looked at (a page that renders
wrong is a failed test even when the assertions pass). One browser and one stack for the module.
"""
from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from chalicelib import settings
from chalicelib.channels.wechat import signing
from tests.e2e.browser import Shots, browser, loopback_only  # noqa: F401  (fixture)
from tests.support.agents import ALIPAY_UA, DESKTOP_UA, PHONE_UA, WECHAT_UA
from tests.support.local_stack import StackFailed, running_stack

PHONE = {"viewport": {"width": 390, "height": 760}, "is_mobile": True, "has_touch": True}
QUOTE_TTL = 25          # seconds: the tuition test watches a quote lapse
WAIT_MS = 30_000         # a ceiling, not a pause: on a loaded 2-core box pages can take seconds
# The bridge WeChat injects into its browser, played by the test: it records the call and hands the
# callback to the test, which pays in the sandbox first (as the shopper would in WeChat).
WECHAT_BRIDGE = """
window.WeixinJSBridge = {invoke: function (name, params, callback) {
  window.__bridgeCall = {name: name, params: params}; window.__bridgeDone = callback;
  document.documentElement.setAttribute("data-bridge-called", name); }};
"""
WALLET_STUB = ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'><title>wallet"
               "</title><h1 id=stub>The wallet app (or the merchant's site) opens here</h1>")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    try:
        with running_stack(tmp_path_factory.mktemp("stack"), KAURI_QUOTE_TTL_SECONDS=str(QUOTE_TTL)) as facts:
            yield facts
    except StackFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def http():
    s = requests.Session()
    s.trust_env = False  # loopback only, no proxies
    return s


def context(browser, ua, lang="en-NZ", **extra):  # noqa: F811
    ctx = browser.new_context(user_agent=ua, locale=lang.split(",")[0], extra_http_headers={"Accept-Language": lang},
                              **extra)
    ctx.set_default_timeout(WAIT_MS)
    return ctx


def api(http, stack, method, path, **kw):
    headers = {"Authorization": f"Bearer {stack['api_key']}", "Idempotency-Key": uuid.uuid4().hex}
    r = http.request(method, stack["api_url"] + path, headers=headers, timeout=10, **kw)
    assert r.status_code < 300, r.text
    return r.json()


def payment_id_in(url: str) -> str:
    return re.search(r"/pay/(pay_[0-9a-z]{20})", url).group(1)


def wait_paid(page):
    page.wait_for_selector('#result[data-state="paid"]', timeout=WAIT_MS)


def test_wechat_shopper_pays_the_static_code_through_oauth_and_jsapi(browser, stack, http):
    shot = Shots("wechat")
    ctx = context(browser, WECHAT_UA, "zh-CN", **PHONE)
    ctx.add_init_script(WECHAT_BRIDGE)
    off_machine = loopback_only(ctx)
    page = ctx.new_page()
    page.goto(stack["static_qr_url"])            # -> sandbox OAuth authorize -> back with a code
    assert "code=" in page.url and "/qr/" in page.url
    assert page.inner_text("#merchant-name") == "Kauri Demo Cafe"
    assert page.inner_text("#store-name") == "Queenstown Mall"
    page.fill("#amount", "12.50")
    hint = page.locator("#cny-wechat")
    assert hint.is_visible() and "53.75" in hint.inner_text()   # 12.50 x 4.3, the wallet's stored rate
    assert page.locator("#pay-alipay").count() == 0
    shot(page, "amount")
    page.click("#pay-wechat")
    # A selector wait, not wait_for_function: polling a JS predicate needs eval, which the page's CSP
    # (script-src 'nonce-...') refuses, so that wait only passed when the bridge was already called.
    page.wait_for_selector("html[data-bridge-called]", state="attached")
    shot(page, "jsapi")
    call = page.evaluate("window.__bridgeCall")
    params = dict(call["params"])
    assert call["name"] == "getBrandWCPayRequest"
    pay_sign = params.pop("paySign")
    assert pay_sign == signing.sign(params, settings.get().wechat.api_key, params["signType"])
    payment_id = payment_id_in(page.url)
    paid = http.post(stack["api_url"] + "/sandbox/wechat/simulate/pay", json={"out_trade_no": payment_id},
                     timeout=10)
    assert paid.status_code == 200, paid.text
    page.evaluate("window.__bridgeDone({err_msg: 'get_brand_wcpay_request:ok'})")
    wait_paid(page)
    assert "支付成功" in page.inner_text("#state") and "NZD 12.50" in page.inner_text("#amount")
    shot(page, "result")
    assert api(http, stack, "GET", f"/v1/payments/{payment_id}")["status"] == "succeeded"
    assert off_machine == []
    ctx.close()


def test_alipay_shopper_pays_the_static_code_by_wap(browser, stack, http):
    shot = Shots("alipay")
    ctx = context(browser, ALIPAY_UA, **PHONE)
    off_machine = loopback_only(ctx)
    page = ctx.new_page()
    page.goto(stack["static_qr_url"])
    assert page.locator("#pay-wechat").count() == 0
    page.fill("#amount", "30")
    assert "130.54" in page.inner_text("#cny-alipay")   # 30 x 4.3512 (Alipay's own rate)
    shot(page, "amount")
    page.click("#pay-alipay")
    page.wait_for_selector("#pay")                     # the Alipay (sandbox) cashier
    assert page.inner_text("#amount") == "NZD 30.00"
    shot(page, "cashier")
    page.click("#pay")                                 # pays; Alipay sends the browser back to our page
    wait_paid(page)
    assert "/result" in page.url and "Paid" in page.inner_text("#state")
    shot(page, "result")
    assert off_machine == []
    ctx.close()


def test_phone_browser_chooses_a_wallet_and_is_sent_to_wechat_h5(browser, stack):
    shot = Shots("phone")
    ctx = context(browser, PHONE_UA, **PHONE)
    off_machine = loopback_only(ctx, stubs={"wx.tenpay.com": WALLET_STUB})
    page = ctx.new_page()
    page.goto(stack["static_qr_url"])
    assert page.locator("#pay-wechat").is_visible() and page.locator("#pay-alipay").is_visible()
    page.fill("#amount", "8.2")
    shot(page, "choose")
    page.click("#pay-wechat")
    page.wait_for_selector("#stub")
    assert off_machine and off_machine[0].startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?")
    back = unquote(parse_qs(urlsplit(off_machine[0]).query)["redirect_url"][0])
    assert back.startswith(stack["api_url"] + "/pay/pay_") and back.endswith("/result")
    shot(page, "wechat-h5")
    page.goto(back)
    assert page.locator('#result[data-state="waiting"]').count() == 1
    shot(page, "waiting")
    ctx.close()


def test_desktop_is_told_to_scan_and_the_printable_code_renders(browser, stack, http):
    shot = Shots("desktop")
    ctx = context(browser, DESKTOP_UA, viewport={"width": 1100, "height": 800})
    off_machine = loopback_only(ctx)
    page = ctx.new_page()
    page.goto(stack["static_qr_url"])
    assert page.locator("#qr svg").is_visible() and page.locator("#pay-form").count() == 0
    shot(page, "scan")
    page.goto(stack["static_qr_image_url"])
    assert page.locator("text=Queenstown Mall").count() == 1
    shot(page, "printable", full_page=False)  # an SVG document has no scrollable page to measure
    page.goto(stack["api_url"] + "/qr/qr_thiscodeneverexisted00000")
    assert "Code not found" in page.inner_text("h1")
    shot(page, "unknown-code")
    assert off_machine == []
    ctx.close()


def test_hosted_checkout_shopper_chooses_wechat_on_a_desktop_and_scans(browser, stack, http):
    shot = Shots("checkout")
    ctx = context(browser, DESKTOP_UA, "zh-CN,zh;q=0.9", viewport={"width": 1100, "height": 900})
    off_machine = loopback_only(ctx)
    page = ctx.new_page()
    page.goto(stack["pay_url"])                        # `make run`'s sample: no channel yet
    assert page.locator("#pay-wechat").is_visible() and page.locator("#pay-alipay").is_visible()
    shot(page, "choose-zh")
    page.click("#switch-lang")
    assert page.inner_text("#pay-wechat") == "Pay with WeChat Pay"
    shot(page, "choose-en")
    page.click("#pay-wechat")
    page.wait_for_selector("#qr svg")
    assert page.inner_text("#amount") == "NZD 12.50"
    shot(page, "native-qr")
    payment_id = payment_id_in(page.url)
    payment = api(http, stack, "GET", f"/v1/payments/{payment_id}")
    assert (payment["channel"], payment["flow"]) == ("wechat", "native")
    http.post(stack["api_url"] + "/sandbox/wechat/simulate/pay", json={"out_trade_no": payment["channel_order_id"]},
              timeout=10).raise_for_status()
    wait_paid(page)                                    # the checkout polled and moved on by itself
    shot(page, "result")
    assert off_machine == []
    ctx.close()


def test_tuition_payer_uploads_a_document_watches_the_quote_lapse_and_pays_a_fresh_one(
        browser, stack, http, tmp_path):
    shot = Shots("tuition")
    p = api(http, stack, "POST", "/v1/payments", json={
        "amount": 250000, "currency": "NZD", "channel": "payease", "flow": "bank",
        "merchant_reference": "INV-2026-001", "description": "Term 1 tuition",
        "return_url": "https://school.example.nz/paid"})
    ctx = context(browser, DESKTOP_UA, viewport={"width": 900, "height": 900})
    off_machine = loopback_only(ctx, stubs={"school.example.nz": WALLET_STUB})
    page = ctx.new_page()
    page.goto(p["pay_url"])
    first_cny = page.inner_text("#cny")
    assert first_cny == f"¥ {int(p['quote']['cny_amount']) // 100}.{int(p['quote']['cny_amount']) % 100:02d} CNY"
    assert page.locator("#countdown").is_visible() and page.locator("#bank-1").is_visible()
    shot(page, "quote")
    page.fill("#filename", "Offer of place")
    page.select_option("#content_type", "application/pdf")
    page.click("#document-next")
    page.wait_for_selector("#file")
    shot(page, "upload")
    pdf = tmp_path / "offer.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    page.set_input_files("#file", str(pdf))
    page.click("#upload")                              # straight to S3 (the stack's), which sends us back
    page.wait_for_selector("#document-list")
    assert "Offer of place" in page.inner_text("#document-list") and "uploaded" in page.inner_text("#document-list")
    shot(page, "uploaded")
    docs = api(http, stack, "GET", f"/v1/payments/{p['id']}/documents")["data"]
    assert [(d["filename"], d["uploaded"]) for d in docs] == [("Offer of place", True)]
    page.wait_for_selector("#requote", timeout=(QUOTE_TTL + 10) * 1000)   # the countdown ran out: reloaded
    assert "expired" in page.inner_text("#expired")
    shot(page, "expired")
    page.click("#requote")
    page.wait_for_selector("#bank-1")
    shot(page, "fresh-quote")
    page.click("#bank-1")                              # 招商银行, straight to the bank (PayEase sandbox)
    page.wait_for_selector("#pay")
    shot(page, "bank")
    page.click("#pay")
    page.wait_for_selector("#stub")                    # PayEase returns the payer to the school's page
    deadline = time.monotonic() + 10
    while api(http, stack, "GET", f"/v1/payments/{p['id']}")["status"] != "succeeded":
        assert time.monotonic() < deadline, "the PayEase notification never arrived"
        time.sleep(0.3)
    page.goto(f"{stack['api_url']}/pay/{p['id']}/result")
    wait_paid(page)
    shot(page, "result")
    assert [urlsplit(u).hostname for u in off_machine] == ["school.example.nz"]
    ctx.close()
