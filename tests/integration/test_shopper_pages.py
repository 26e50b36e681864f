"""Shopper pages through app.py: the static code (routing by wallet, OAuth, errors, throttling), the
code API, hosted checkout and the result page. Browser rendering is in tests/e2e/test_pages_browser.py."""
from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from chalicelib import clock
from chalicelib.domain.fx import Rate
from chalicelib.services import fx, merchants, qr_codes
from chalicelib.store.models import PaymentModel
from tests.integration.helpers import MerchantApi, shopper_pays
from tests.support.agents import ALIPAY_UA, DESKTOP_UA, PHONE_UA, WECHAT_UA

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def shop(client):
    m = merchants.create_merchant("Queenstown Merino Ltd", "NZD", fee_bps=200, channels=merchants.DEMO_CHANNELS)
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


@pytest.fixture
def code(shop):
    r = shop.post("/v1/qr_codes", {"store_name": "Beach St"}, headers={"Idempotency-Key": "code-1"})
    assert r.status_code == 201, r.body
    return r.json_body


def get(client, path, ua=PHONE_UA, **headers):
    return client.http.get(path, headers={"User-Agent": ua, **headers})


def post_form(client, path, fields, ua=PHONE_UA):
    return client.http.post(path, headers={"User-Agent": ua, "Content-Type": FORM}, body=urlencode(fields).encode())


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def payments_of(shop) -> list:
    return [m for m in PaymentModel.scan() if m.merchant_id == shop.merchant.id]


def text(resp) -> str:
    return resp.body.decode("utf-8") if isinstance(resp.body, bytes) else resp.body


def wechat_openid_page(client, code_id):
    """Inside WeChat: our page sends the shopper through web OAuth and back with a code."""
    first = get(client, f"/qr/{code_id}", WECHAT_UA)
    assert first.status_code == 302
    authorize = first.headers["Location"]
    assert "/connect/oauth2/authorize?appid=" in authorize and "scope=snsapi_base" in authorize
    assert authorize.endswith("#wechat_redirect")
    back = get(client, local(authorize.split("#")[0]), WECHAT_UA)
    assert back.status_code == 302
    landing = back.headers["Location"]
    assert landing.startswith(f"http://kauri.test/qr/{code_id}?") and "code=" in landing
    page = get(client, local(landing), WECHAT_UA)
    assert page.status_code == 200, page.body
    openid = re.search(r'name="openid" value="([^"]+)"', text(page)).group(1)
    return page, openid, landing


# ---- the code API ----------------------------------------------------------------------------

def test_merchant_creates_a_code_with_an_unguessable_id_and_lists_it(shop, code):
    assert re.fullmatch(r"qr_[0-9a-z]{24}", code["id"])
    assert code["url"] == f"http://kauri.test/qr/{code['id']}" and code["status"] == "active"
    assert code["store_name"] == "Beach St" and code["fixed_amount"] is None
    listed = shop.get("/v1/qr_codes").json_body["data"]
    assert [c["id"] for c in listed] == [code["id"]]
    assert shop.get(f"/v1/qr_codes/{code['id']}").json_body["id"] == code["id"]


def test_code_api_refuses_bad_input_with_json_errors(shop):
    for body, param in (({}, "store_name"), ({"store_name": "x" * 41}, "store_name"),
                        ({"store_name": "A", "fixed_amount": 0}, "fixed_amount"),
                        ({"store_name": "A", "max_amount": "5"}, "max_amount"),
                        ({"store_name": "A", "fixed_amount": 500, "max_amount": 100}, "fixed_amount"),
                        ({"store_name": "A", "colour": "red"}, "colour")):
        r = shop.post("/v1/qr_codes", body, headers={"Idempotency-Key": json.dumps(body)[:200]})
        assert r.status_code == 400, (body, r.body)
        assert r.json_body["error"]["param"] == param


def test_another_merchant_can_neither_see_nor_disable_a_code(client, code):
    other = merchants.create_merchant("Other Shop", "NZD", fee_bps=200, channels=merchants.DEMO_CHANNELS)
    them = MerchantApi(client, merchants.issue_key(other.id, livemode=True), other)
    assert them.get(f"/v1/qr_codes/{code['id']}").status_code == 404
    assert them.post(f"/v1/qr_codes/{code['id']}/disable", headers={"Idempotency-Key": "d"}).status_code == 404
    assert them.get("/v1/qr_codes").json_body["data"] == []


def test_disabled_code_shows_410_and_can_never_start_a_payment(client, shop, code):
    r = shop.post(f"/v1/qr_codes/{code['id']}/disable", headers={"Idempotency-Key": "off"})
    assert r.status_code == 200 and r.json_body["status"] == "disabled"
    for ua in (WECHAT_UA, ALIPAY_UA, PHONE_UA, DESKTOP_UA):
        page = get(client, f"/qr/{code['id']}", ua)
        assert page.status_code == 410 and "no longer in use" in text(page)
    paid = post_form(client, f"/qr/{code['id']}/pay", {"amount": "12.50", "wallet": "alipay"})
    assert paid.status_code == 410
    assert get(client, f"/qr/{code['id']}/image").status_code == 410
    assert payments_of(shop) == []


def test_rotated_code_is_gone_and_its_replacement_pays(client, shop, code):
    r = shop.post(f"/v1/qr_codes/{code['id']}/rotate", headers={"Idempotency-Key": "rot"})
    assert r.status_code == 201, r.body
    fresh = r.json_body
    assert fresh["id"] != code["id"] and fresh["store_name"] == "Beach St"
    old = shop.get(f"/v1/qr_codes/{code['id']}").json_body
    assert old["status"] == "disabled" and old["replaced_by"] == fresh["id"]
    assert get(client, f"/qr/{code['id']}").status_code == 410
    assert post_form(client, f"/qr/{code['id']}/pay", {"amount": "5", "wallet": "alipay"}).status_code == 410
    assert get(client, f"/qr/{fresh['id']}").status_code == 200
    assert shop.post(f"/v1/qr_codes/{code['id']}/rotate", headers={"Idempotency-Key": "rot2"}).status_code == 409


@pytest.mark.parametrize("code_id", ["qr_doesnotexist000000000000", "nope", "qr_" + "a" * 300, "qr_a%2Fb"])
def test_unknown_code_shows_404_and_starts_nothing(client, shop, code_id):
    assert get(client, f"/qr/{code_id}").status_code == 404
    assert "does not exist" in text(get(client, f"/qr/{code_id}"))
    assert post_form(client, f"/qr/{code_id}/pay", {"amount": "1", "wallet": "alipay"}).status_code == 404
    assert payments_of(shop) == []


# ---- routing by wallet -------------------------------------------------------------------------

def test_wechat_in_app_goes_through_oauth_and_pays_by_jsapi_to_the_result_page(client, shop, code):
    page, openid, _ = wechat_openid_page(client, code["id"])
    assert 'id="pay-wechat"' in text(page) and 'id="pay-alipay"' not in text(page)  # no Alipay inside WeChat
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "12.50", "wallet": "wechat", "openid": openid},
                  WECHAT_UA)
    assert r.status_code == 303, r.body
    payment_id = r.headers["Location"].split("/pay/")[1].split("?")[0]
    p = shop.get(f"/v1/payments/{payment_id}").json_body
    assert (p["channel"], p["flow"], p["amount"], p["currency"]) == ("wechat", "jsapi", 1250, "NZD")
    assert p["metadata"] == {"qr_code": code["id"], "store_name": "Beach St"}
    assert p["pay_url"] == f"http://kauri.test/pay/{payment_id}"
    checkout = get(client, local(r.headers["Location"]), WECHAT_UA)
    assert checkout.status_code == 200
    params = json.loads(re.search(r'id="jsapi-params"[^>]*>([^<]+)<', text(checkout)).group(1))
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"].startswith("prepay_id=")
    assert "getBrandWCPayRequest" in text(checkout)
    result = get(client, f"/pay/{payment_id}/result", WECHAT_UA)
    assert 'data-state="waiting"' in text(result) and 'http-equiv="refresh"' in text(result)
    shopper_pays(client, p)
    result = get(client, f"/pay/{payment_id}/result", WECHAT_UA)
    assert 'data-state="paid"' in text(result) and "NZD 12.50" in text(result) and payment_id in text(result)
    assert get(client, f"/pay/{payment_id}/status").json_body == {"state": "paid"}


def test_oauth_code_is_single_use_and_a_reload_asks_wechat_again(client, code):
    _, _, landing = wechat_openid_page(client, code["id"])
    again = get(client, local(landing), WECHAT_UA)
    assert again.status_code == 302 and "/connect/oauth2/authorize" in again.headers["Location"]
    used = parse_qs(urlsplit(landing).query)["code"][0]
    from chalicelib.channels.wechat_oa import client as oa

    with pytest.raises(oa.OAError) as err:
        oa.pay_oauth_client().openid_for_code(used)
    assert err.value.code == 40163


def test_wechat_jsapi_without_openid_is_refused(client, shop, code):
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "12.50", "wallet": "wechat"}, WECHAT_UA)
    assert r.status_code == 400 and payments_of(shop) == []


def test_alipay_in_app_pays_by_wap_and_returns_to_our_result_page(client, shop, code):
    page = get(client, f"/qr/{code['id']}", ALIPAY_UA)
    assert page.status_code == 200 and 'id="pay-alipay"' in text(page) and 'id="pay-wechat"' not in text(page)
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "30", "wallet": "alipay"}, ALIPAY_UA)
    assert r.status_code == 303
    q = parse_qs(urlsplit(r.headers["Location"]).query)
    assert r.headers["Location"].startswith("http://kauri.test/sandbox/alipay/gateway.do?")
    assert q["service"] == ["create_forex_trade_wap"] and q["total_fee"] == ["30.00"] and q["currency"] == ["NZD"]
    payment_id = q["out_trade_no"][0]
    assert q["return_url"] == [f"http://kauri.test/pay/{payment_id}/result"]


def test_phone_browser_offers_both_wallets_and_wechat_goes_h5(client, shop, code):
    page = get(client, f"/qr/{code['id']}")
    assert 'id="pay-wechat"' in text(page) and 'id="pay-alipay"' in text(page)
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "8.20", "wallet": "wechat"})
    assert r.status_code == 303 and r.headers["Location"].startswith("https://wx.tenpay.com/")
    payment_id = payments_of(shop)[0].payment_id
    assert r.headers["Location"].endswith("&redirect_url=" + f"http%3A%2F%2Fkauri.test%2Fpay%2F{payment_id}%2Fresult")
    assert PaymentModel.get(payment_id).flow == "h5"
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "8.20", "wallet": "alipay"})
    assert "service=create_forex_trade_wap" in r.headers["Location"]


def test_desktop_is_told_to_scan_and_shown_the_code(client, code):
    page = get(client, f"/qr/{code['id']}", DESKTOP_UA)
    assert page.status_code == 200 and "scan this code" in text(page) and "<svg" in text(page)
    assert 'id="pay-form"' not in text(page)


def test_code_page_shows_merchant_store_and_indicative_cny_from_the_wallets_rate(client, code):
    now = clock.now()
    fx.record(Rate("alipay", "NZD", Decimal("4.2512345"), now, now))
    page = text(get(client, f"/qr/{code['id']}", ALIPAY_UA))
    assert "Queenstown Merino Ltd" in page and "Beach St" in page
    assert 'data-rate="4.2512"' in page and "indicative" in page


# ---- amounts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", ["12.345", "abc", "1e3", "-5", "0", "0.00", "NaN", "", "1,50", "99999999"])
def test_bad_amounts_are_refused_on_the_page_and_start_nothing(client, shop, code, amount):
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": amount, "wallet": "alipay"})
    assert r.status_code == 400 and 'id="error"' in text(r)
    assert payments_of(shop) == []


def test_code_limits_hold_the_shopper_to_the_fixed_amount_and_the_maximum(client, shop):
    fixed = shop.post("/v1/qr_codes", {"store_name": "Cafe", "fixed_amount": 450},
                      headers={"Idempotency-Key": "fx"}).json_body
    capped = shop.post("/v1/qr_codes", {"store_name": "Till 2", "max_amount": 10000},
                       headers={"Idempotency-Key": "cap"}).json_body
    page = text(get(client, f"/qr/{fixed['id']}"))
    assert "NZD 4.50" in page and 'name="amount"' not in page
    r = post_form(client, f"/qr/{fixed['id']}/pay", {"amount": "0.01", "wallet": "alipay"})
    assert r.status_code == 303 and "total_fee=4.50" in r.headers["Location"]
    over = post_form(client, f"/qr/{capped['id']}/pay", {"amount": "100.01", "wallet": "alipay"})
    assert over.status_code == 400 and "above the limit" in text(over)
    assert post_form(client, f"/qr/{capped['id']}/pay", {"amount": "100.00", "wallet": "alipay"}).status_code == 303


# ---- throttling ----------------------------------------------------------------------------------

def test_code_payments_are_throttled_per_client_and_per_code(client, shop, code, monkeypatch):
    monkeypatch.setattr(qr_codes, "PER_CLIENT_LIMIT", (4, 60))  # every attempt counts against the client
    monkeypatch.setattr(qr_codes, "PER_CODE_LIMIT", (2, 60))
    clock.freeze(clock.now().replace(second=5))
    other = shop.post("/v1/qr_codes", {"store_name": "Other"}, headers={"Idempotency-Key": "o"}).json_body
    pay = lambda c: post_form(client, f"/qr/{c}/pay", {"amount": "1", "wallet": "alipay"})  # noqa: E731
    assert [pay(code["id"]).status_code for _ in range(3)] == [303, 303, 429]   # the code's limit
    assert pay(other["id"]).status_code == 303                                   # the client's fourth
    r = pay(other["id"])
    assert r.status_code == 429 and "wait a minute" in text(r)                 # the client's limit
    assert len(payments_of(shop)) == 3
    clock.advance(timedelta(seconds=60))                                         # the next window
    assert pay(code["id"]).status_code == 303


# ---- hosted checkout and results ---------------------------------------------------------------

def test_hosted_checkout_of_an_api_native_payment_shows_the_qr_inline(client, shop):
    p = shop.create_payment().json_body
    assert p["pay_url"] == f"http://kauri.test/pay/{p['id']}"
    page = get(client, f"/pay/{p['id']}", DESKTOP_UA)
    assert page.status_code == 200 and "<svg" in text(page) and "Manuka honey" in text(page)
    assert "NZD 12.50" in text(page) and "order-1" in text(page)


def test_result_page_shows_failed_and_expired_from_the_payment_status(client, shop):
    failed = shop.create_payment(merchant_reference="f").json_body
    shopper_pays(client, failed, outcome="fail")
    # Whatever a failed attempt means for the payment, the page says what its status says.
    status = PaymentModel.get(failed["id"]).status
    assert get(client, f"/pay/{failed['id']}/status").json_body["state"] == {"failed": "failed",
                                                                              "pending": "waiting"}[status]
    lapsed = shop.create_payment(merchant_reference="x", expires_in=120).json_body
    clock.freeze(clock.now() + timedelta(minutes=3))
    page = text(get(client, f"/pay/{lapsed['id']}/result"))
    assert 'data-state="expired"' in page and "can no longer be paid" in page
    assert get(client, f"/pay/{lapsed['id']}", PHONE_UA).status_code == 303  # checkout sends it to the result


def test_unknown_payment_pages_are_404(client):
    for path in ("/pay/pay_00000000000000000000", "/pay/pay_00000000000000000000/result", "/pay/x/result",
                 "/pay/pay_00000000000000000000/status"):
        assert get(client, path).status_code == 404, path


# ---- craft: escaping, language, size, CSP, image -------------------------------------------------

def test_pages_escape_merchant_text_speak_chinese_and_stay_small_under_a_strict_csp(client, shop):
    c = shop.post("/v1/qr_codes", {"store_name": "<script>alert(1)</script>"},
                  headers={"Idempotency-Key": "xss"}).json_body
    page = get(client, f"/qr/{c['id']}", PHONE_UA, **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    body = text(page)
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '<html lang="zh-CN">' in body and "使用微信支付" in body
    assert len(page.body) < 50 * 1024
    csp = page.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp and f'nonce="{nonce}"' in body
    assert re.findall(r"(?:src|href)=\"(https?:[^\"]+)\"", body) == []  # nothing from any other host
    english = text(get(client, f"/qr/{c['id']}?lang=en", PHONE_UA, **{"Accept-Language": "zh-CN"}))
    assert '<html lang="en">' in english and "Pay with WeChat Pay" in english


def test_printable_image_is_svg_with_names_or_png_when_asked(client, shop, code):
    svg = get(client, f"/qr/{code['id']}/image")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert "Queenstown Merino Ltd" in text(svg) and "Beach St" in text(svg) and "<path" in text(svg)
    png = get(client, f"/qr/{code['id']}/image", Accept="image/png")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.body[:8] == b"\x89PNG\r\n\x1a\n"


def test_printable_png_carries_the_merchant_and_store_names_under_a_scannable_code(client):
    from chalicelib.web import qr
    from tests.support import printed

    m = merchants.create_merchant("皇后镇美利奴羊毛有限公司", "NZD", fee_bps=200, channels=merchants.DEMO_CHANNELS)
    api = MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)
    c = api.post("/v1/qr_codes", {"store_name": "皇后镇购物中心店"}, headers={"Idempotency-Key": "zh"}).json_body
    png = get(client, f"/qr/{c['id']}/image", Accept="image/png")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    card = printed.read(png.body, len(qr._matrix(c["url"])) - 8)
    assert card.text == c["url"]                      # decoded back: the phone lands on this code's page
    assert printed.quiet_zone_is_white(card) and card.image.size == (1240, 1748)
    assert len(card.text_rows) == 2                  # the merchant's name, then the store's
    left, top, right, bottom = card.text_box
    assert top > card.code_box[3] + 4 * card.module_px and abs(left - (card.image.width - right)) <= 6
    again = get(client, f"/qr/{c['id']}/image", Accept="image/png").body
    assert again == png.body   # one picture per code (no per-request noise): caches and prints agree


@pytest.mark.parametrize("accept, answer", [
    (None, "image/svg+xml"),
    ("*/*", "image/svg+xml"),
    ("image/*", "image/svg+xml"),
    ("image/png", "image/png"),
    ("image/png, image/svg+xml", "image/svg+xml"),                   # a tie: ours
    ("image/svg+xml;q=0.5, image/png", "image/png"),
    ("image/png;q=0.9, image/*;q=0.1", "image/png"),
    ("*/*;q=0.1, IMAGE/PNG", "image/png"),
    ("image/svg+xml;q=0, */*", "image/png"),
    ("image/*;q=0, image/png;q=0.2", "image/png"),                   # the most specific range decides
    ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "image/svg+xml"),   # a browser's <img>
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "image/svg+xml"),    # a browser tab
    ("image/png;q=0", 406),
    ("text/html", 406),
    ("image/jpeg, application/json", 406),
    ("image/png;q=2", 406),                                        # not a q-value: not accepted
    ("image/png;q=0.0001", 406),
])
def test_printable_image_follows_accept_with_q_values(client, shop, code, accept, answer):
    r = get(client, f"/qr/{code['id']}/image", **({"Accept": accept} if accept is not None else {}))
    assert r.headers["Vary"] == "Accept"
    if answer == 406:
        assert r.status_code == 406 and r.headers["Content-Type"].startswith("text/plain")
        assert b"image/svg+xml or image/png" in (r.body if isinstance(r.body, bytes) else r.body.encode())
        return
    assert r.status_code == 200 and r.headers["Content-Type"].split(";")[0] == answer
    body = r.body if isinstance(r.body, bytes) else r.body.encode()
    assert body.startswith(b"\x89PNG") if answer == "image/png" else b"Queenstown Merino Ltd" in body


@pytest.mark.parametrize("url", ["http://shop.example.nz/back", "https://user:pw@shop.example.nz/back",
                                 "javascript:alert(1)", "https:///nohost"])
def test_return_url_must_be_https_without_credentials(shop, url):
    r = shop.create_payment(return_url=url)
    assert r.status_code == 400 and r.json_body["error"]["param"] == "return_url"


# ---- hosted checkout: the shopper chooses the wallet ----------------------------------------------

def unchosen(shop, **extra):
    body = {"amount": 4200, "currency": "NZD", "merchant_reference": "web-7", "description": "Wool socks",
            "return_url": "https://shop.example.nz/done?order=7"}
    body.update(extra)
    r = shop.post("/v1/payments", body)
    assert r.status_code == 201, r.body
    return r.json_body


def test_payment_without_a_channel_gets_its_channel_order_when_the_shopper_chooses(client, shop):
    p = unchosen(shop)
    assert p["channel"] is None and p["flow"] is None and p["allowed_channels"] == ["wechat", "alipay"]
    assert p["next_action"] == {"type": "redirect", "url": p["pay_url"]}
    page = get(client, f"/pay/{p['id']}")
    assert 'id="pay-wechat"' in text(page) and 'id="pay-alipay"' in text(page) and "NZD 42.00" in text(page)
    r = post_form(client, f"/pay/{p['id']}/choose", {"wallet": "alipay"})
    assert r.status_code == 303 and "service=create_forex_trade_wap" in r.headers["Location"]
    assert f"out_trade_no={p['id']}" in r.headers["Location"]
    now = shop.get(f"/v1/payments/{p['id']}").json_body
    assert (now["channel"], now["flow"]) == ("alipay", "wap")
    # A second choice (another tab) cannot open a second channel order for the same payment.
    again = post_form(client, f"/pay/{p['id']}/choose", {"wallet": "wechat"})
    assert again.status_code == 303 and again.headers["Location"].startswith(f"/pay/{p['id']}")
    assert shop.get(f"/v1/payments/{p['id']}").json_body["channel"] == "alipay"
    assert 'id="continue"' in text(get(client, f"/pay/{p['id']}"))
    # The shopper pays at Alipay's cashier; afterwards our result page, then on to the merchant's return_url.
    assert get(client, local(r.headers["Location"])).status_code == 200
    client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                     body=json.dumps({"out_trade_no": p["id"]}).encode())
    result = text(get(client, f"/pay/{p['id']}/result"))
    assert 'data-state="paid"' in result and 'href="https://shop.example.nz/done?order=7"' in result


def test_allowed_channels_limit_what_the_shopper_may_choose(client, shop):
    p = unchosen(shop, allowed_channels=["wechat"])
    page = text(get(client, f"/pay/{p['id']}", DESKTOP_UA))
    assert 'id="pay-wechat"' in page and 'id="pay-alipay"' not in page
    assert post_form(client, f"/pay/{p['id']}/choose", {"wallet": "alipay"}, DESKTOP_UA).status_code == 400
    r = post_form(client, f"/pay/{p['id']}/choose", {"wallet": "wechat"}, DESKTOP_UA)
    assert r.status_code == 303 and r.headers["Location"].startswith(f"/pay/{p['id']}")
    assert PaymentModel.get(p["id"]).flow == "native"
    assert "<svg" in text(get(client, local(r.headers["Location"]), DESKTOP_UA))


def test_inside_wechat_the_checkout_gets_an_openid_first_and_pays_by_jsapi(client, shop):
    p = unchosen(shop)
    first = get(client, f"/pay/{p['id']}", WECHAT_UA)
    assert first.status_code == 302 and "/connect/oauth2/authorize" in first.headers["Location"]
    back = get(client, local(first.headers["Location"].split("#")[0]), WECHAT_UA)
    page = text(get(client, local(back.headers["Location"]), WECHAT_UA))
    openid = re.search(r'name="openid" value="([^"]+)"', page).group(1)
    assert 'id="pay-alipay"' not in page
    r = post_form(client, f"/pay/{p['id']}/choose", {"wallet": "wechat", "openid": openid}, WECHAT_UA)
    assert r.status_code == 303
    assert "getBrandWCPayRequest" in text(get(client, local(r.headers["Location"]), WECHAT_UA))
    assert PaymentModel.get(p["id"]).flow == "jsapi"


def test_unchosen_payment_can_be_closed_and_lapses_by_the_chase_job(client, shop):
    from chalicelib.services import chase

    closed = unchosen(shop, merchant_reference="c1")
    r = shop.post(f"/v1/payments/{closed['id']}/close", headers={"Idempotency-Key": "close-c1"})
    assert r.status_code == 200 and r.json_body["status"] == "closed"
    lapsing = unchosen(shop, merchant_reference="c2", expires_in=300)
    clock.freeze(clock.now() + timedelta(minutes=6))
    summary = chase.chase_payments()
    assert summary["closed"] == 1 and summary["errors"] == 0
    assert PaymentModel.get(lapsing["id"]).status == "closed"
    assert post_form(client, f"/pay/{lapsing['id']}/choose", {"wallet": "alipay"}).status_code == 303  # -> result


@pytest.mark.parametrize("extra, param", [
    ({"allowed_channels": ["payease"]}, "allowed_channels"),
    ({"allowed_channels": ["wechat"], "channel": "wechat", "flow": "native"}, "allowed_channels"),
    ({"allowed_channels": "wechat"}, "allowed_channels"),
    ({"allowed_channels": []}, "allowed_channels"),
    ({"flow": "native"}, "flow"),
])
def test_choice_payments_refuse_bad_channel_lists(shop, extra, param):
    body = {"amount": 4200, "currency": "NZD", "merchant_reference": "x", "description": "y", **extra}
    r = shop.post("/v1/payments", body)
    assert r.status_code == 400 and r.json_body["error"]["param"] == param, r.body


def test_wechat_oauth_sandbox_answers_like_wechat_for_bad_secrets_unknown_and_stale_codes(client, code):
    from chalicelib import settings
    from chalicelib.channels.wechat_oa import client as oa

    wc = settings.get().wechat
    wrong = oa.OfficialAccountClient(settings.WeChatOASettings(appid=wc.appid, appsecret="0" * 32, template_id="",
                                                               base_url=wc.sns_url))
    with pytest.raises(oa.OAError) as err:
        wrong.openid_for_code("whatever")
    assert err.value.code == 40125
    with pytest.raises(oa.OAError) as err:
        oa.pay_oauth_client().openid_for_code("never-issued")
    assert err.value.code == 40029
    first = get(client, f"/qr/{code['id']}", WECHAT_UA)
    back = get(client, local(first.headers["Location"].split("#")[0]), WECHAT_UA)
    stale = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    clock.freeze(clock.now() + timedelta(minutes=5, seconds=1))   # a code lives 5 minutes
    with pytest.raises(oa.OAError) as err:
        oa.pay_oauth_client().openid_for_code(stale)
    assert err.value.code == 40029
    bad = get(client, "/sandbox/wechat_oa/connect/oauth2/authorize?appid=wxnotours&redirect_uri=https%3A%2F%2Fx.nz"
                      "&response_type=code&scope=snsapi_base&state=a", WECHAT_UA)
    assert bad.status_code == 400


def test_every_page_is_under_50_kb_and_served_with_the_same_strict_headers(client, shop, code):
    native = shop.create_payment().json_body
    choice = unchosen(shop, merchant_reference="size")
    pages = [get(client, f"/qr/{code['id']}"), get(client, f"/qr/{code['id']}", DESKTOP_UA),
             get(client, f"/pay/{native['id']}", DESKTOP_UA), get(client, f"/pay/{choice['id']}"),
             get(client, f"/pay/{native['id']}/result"), get(client, "/qr/qr_unknown00000000000000000")]
    for page in pages:
        assert len(page.body) < 50 * 1024
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"  # OAuth codes and payment ids stay ours


def test_test_mode_pages_say_no_real_money_moves(client, shop):
    test_key = merchants.issue_key(shop.merchant.id, livemode=False)
    r = shop.post("/v1/qr_codes", {"store_name": "Demo till"}, headers={"Idempotency-Key": "t"}, key=test_key)
    assert r.status_code == 201 and r.json_body["livemode"] is False
    assert 'id="test-mode"' in text(get(client, f"/qr/{r.json_body['id']}"))
    live = shop.post("/v1/qr_codes", {"store_name": "Real till"}, headers={"Idempotency-Key": "l"}).json_body
    assert 'id="test-mode"' not in text(get(client, f"/qr/{live['id']}"))
    assert 'id="test-mode"' not in text(get(client, f"/pay/{shop.create_payment().json_body['id']}", DESKTOP_UA))


def test_inside_wechat_a_shop_without_wechat_pay_says_to_open_the_browser(client):
    m = merchants.create_merchant("Alipay Only Ltd", "NZD", fee_bps=200,
                                  channels={"alipay": merchants.DEMO_CHANNELS["alipay"]})
    shop = MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)
    c = shop.post("/v1/qr_codes", {"store_name": "Kiosk"}, headers={"Idempotency-Key": "k"}).json_body
    first = get(client, f"/qr/{c['id']}", WECHAT_UA)
    back = get(client, local(first.headers["Location"].split("#")[0]), WECHAT_UA)
    page = text(get(client, local(back.headers["Location"]), WECHAT_UA))
    assert 'id="no-wallet"' in page and 'id="pay-alipay"' not in page  # Alipay pages do not open in WeChat
    assert post_form(client, f"/qr/{c['id']}/pay", {"amount": "5", "wallet": "alipay"}, WECHAT_UA).status_code == 400


def test_two_tabs_choosing_at_once_get_one_channel_order(client, shop, monkeypatch):
    """The choice is a conditional write: a tab that read the payment before the other tab chose loses,
    and the channel order it opened is closed so nobody can pay it."""
    from chalicelib import channels
    from chalicelib.services import errors, payments
    from chalicelib.store import payments as payment_store

    p = unchosen(shop)
    stale = payment_store.get(p["id"])
    first = post_form(client, f"/pay/{p['id']}/choose", {"wallet": "wechat"}, DESKTOP_UA)
    assert first.status_code == 303
    closed = []
    wechat = channels.get("wechat")
    monkeypatch.setattr(payment_store, "get", lambda _id: stale)      # the second tab read before the first wrote
    monkeypatch.setattr(type(wechat), "close", lambda self, ref: closed.append(ref.channel_order_id))
    with pytest.raises(errors.ServiceError) as lost:
        payments.choose_channel(p["id"], "wechat", "native", {}, "127.0.0.1")
    assert lost.value.code == "channel_already_chosen"
    monkeypatch.undo()
    assert PaymentModel.get(p["id"]).channel == "wechat"
    assert closed == [p["id"]]


def test_a_channel_or_oauth_failure_shows_a_clear_page_never_a_500(client, shop, code, monkeypatch):
    from chalicelib import channels, settings
    from chalicelib.channels.base import ChannelError

    alipay = channels.get("alipay")

    def refuse(self, req):
        raise ChannelError("SYSTEM_ERROR", "busy", retryable=True)

    monkeypatch.setattr(type(alipay), "create", refuse)
    r = post_form(client, f"/qr/{code['id']}/pay", {"amount": "5", "wallet": "alipay"})
    assert r.status_code == 502 and "could not be started" in text(r) and f'href="/qr/{code["id"]}' in text(r)
    assert payments_of(shop) == []
    from chalicelib.channels.wechat_oa import client as oa

    wc = settings.get().wechat
    wrong = oa.OfficialAccountClient(settings.WeChatOASettings(appid=wc.appid, appsecret="0" * 32, template_id="",
                                                               base_url=wc.sns_url))
    monkeypatch.setattr(oa, "pay_oauth_client", lambda: wrong)  # our secret is wrong: WeChat answers 40125
    first = get(client, f"/qr/{code['id']}", WECHAT_UA)
    back = get(client, local(first.headers["Location"].split("#")[0]), WECHAT_UA)
    page = get(client, local(back.headers["Location"]), WECHAT_UA)
    assert page.status_code == 502 and "Something went wrong" in text(page)
