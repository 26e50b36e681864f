"""Staff bind their WeChat for payment alerts from the portal (issue 11): a one-use code shown in the
portal, scanned in WeChat, the alert Official Account's snsapi_base OAuth (the sandbox plays WeChat), the
binding through services.alerts, and the alert of a payment reaching it."""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from chalicelib import clock, settings
from chalicelib.services import alerts, merchants
from chalicelib.store import audit
from chalicelib.store.alerts import AlertBindingModel, BindCodeModel
from tests.integration.helpers import MerchantApi, paid_payment
from tests.integration.portal_helpers import owner_of, staff_member
from tests.integration.test_merchant_alerts import fresh_tokens  # noqa: F401  (autouse fixture)
from tests.integration.test_portal_codes_and_keys import shop  # noqa: F401  (fixture)
from tests.support.agents import WECHAT_UA
from tests.support.jobs import scheduled

BIND_URL = re.compile(r'data-url="(http://kauri\.test/portal/alerts/bind/[A-Za-z0-9_\-]+)"')


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def wechat_get(client, url: str):
    return client.http.get(local(url), headers={"User-Agent": WECHAT_UA})


def show_code(browser, store_name="Wharf St") -> str:
    browser.get("/portal/alerts")
    resp = browser.post("/portal/alerts/codes", {"store_name": store_name})
    assert resp.status_code == 200, resp.body
    assert '<svg' in browser.text()
    return BIND_URL.search(browser.text()).group(1)


def scan(client, bind_url: str) -> tuple[object, str]:
    """The staff member's WeChat opens the code: our page, WeChat's silent authorize, back with a code.
    Returns (the last answer, the URL WeChat sent the browser back to)."""
    first = wechat_get(client, bind_url)
    assert first.status_code == 302, first.body
    authorize = first.headers["Location"]
    q = parse_qs(urlsplit(authorize).query)
    assert q["appid"] == [settings.get().wechat_oa.appid]              # the alert account, not the pay one
    assert q["scope"] == ["snsapi_base"] and authorize.endswith("#wechat_redirect")
    back = wechat_get(client, authorize.split("#")[0])
    assert back.status_code == 302
    landing = back.headers["Location"]
    assert landing.startswith(bind_url + "?") and "code=" in landing
    return wechat_get(client, landing), landing


def body(resp) -> str:
    return resp.body.decode() if isinstance(resp.body, bytes) else resp.body


def test_a_manager_shows_a_code_a_staff_member_scans_in_wechat_and_the_next_payment_alerts_them(client, shop):
    merchant_id, owner = shop
    manager = staff_member(client, owner, "boss@tuihoney.nz", "manager")
    bind_url = show_code(manager, "Wharf St")
    from chalicelib.web import qr

    assert qr.svg(bind_url, "WeChat") in manager.text()                 # the QR is of that very link
    done, _ = scan(client, bind_url)
    assert done.status_code == 200 and "WeChat alerts are on" in body(done)
    assert "Tui Honey" in body(done) and "Wharf St" in body(done)

    (binding,) = AlertBindingModel.query(merchant_id)
    assert (binding.store_name, binding.staff_email) == ("Wharf St", "boss@tuihoney.nz")
    assert re.fullmatch(r"[A-Za-z0-9_\-]{20,64}", binding.openid)
    entry = next(e for e in audit.recent(merchant_id) if e.action == "alert_binding.added")
    assert entry.actor == "staff:boss@tuihoney.nz" and entry.details["binding"] == binding.binding_id
    manager.get("/portal/alerts")
    assert f'id="binding-{binding.binding_id}"' in manager.text() and "boss@tuihoney.nz" in manager.text()

    api = MerchantApi(client, merchants.issue_key(merchant_id, livemode=True), merchants.store.get(merchant_id))
    payment = paid_payment(client, api, amount=2350)
    clock.advance(timedelta(minutes=1))
    assert scheduled(client, "merchant_alerts")["delivered"] == 1
    inbox = client.http.get(f"/sandbox/wechat_oa/simulate/inbox/{binding.openid}").json_body["messages"]
    assert len(inbox) == 1
    assert inbox[0]["data"]["thing2"] == "Wharf St" and inbox[0]["data"]["amount1"] == "NZD 23.50"
    assert inbox[0]["client_msg_id"] == alerts.alert_id(payment["id"], binding.openid)


def test_the_done_page_and_the_refusal_speak_simplified_chinese(client, shop):
    merchant_id, owner = shop
    bind_url = show_code(owner, "码头店")
    first = wechat_get(client, bind_url + "?lang=zh-CN")
    back = wechat_get(client, first.headers["Location"].split("#")[0])
    page = wechat_get(client, back.headers["Location"])
    assert page.status_code == 200 and "微信收款提醒已开启" in body(page) and 'lang="zh-CN"' in body(page)
    assert "码头店" in body(page)
    again = wechat_get(client, bind_url + "?lang=zh-CN")
    assert again.status_code == 404 and "此二维码无法使用" in body(again)


def test_a_used_replayed_forged_or_lapsed_code_shows_a_clear_page_and_binds_nothing(client, shop):
    merchant_id, owner = shop
    bind_url = show_code(owner)
    first = wechat_get(client, bind_url)                                 # a second phone scans the same code ...
    other_back = wechat_get(client, first.headers["Location"].split("#")[0]).headers["Location"]
    done, landing = scan(client, bind_url)
    assert done.status_code == 200
    assert len(list(AlertBindingModel.query(merchant_id))) == 1

    for replay in (landing, bind_url, other_back):                      # ... and is refused, as is a reload
        resp = wechat_get(client, replay)
        assert resp.status_code == 404 and "This code cannot be used" in body(resp), replay
    forged = "http://kauri.test/portal/alerts/bind/" + "A" * 43
    for url in (forged, "http://kauri.test/portal/alerts/bind/short", forged + "?code=abc"):
        resp = wechat_get(client, url)
        assert resp.status_code == 404 and "This code cannot be used" in body(resp)

    lapsing = show_code(owner, "Late St")
    clock.advance(alerts.BIND_CODE_TTL + timedelta(seconds=1))
    resp = wechat_get(client, lapsing)
    assert resp.status_code == 404 and "/connect/oauth2" not in resp.headers.get("Location", "")
    assert len(list(AlertBindingModel.query(merchant_id))) == 1
    assert [c.status for c in BindCodeModel.scan()].count("used") == 1


def test_a_code_outlives_its_oauth_only_if_it_is_still_unused_when_the_openid_comes_back(client, shop):
    merchant_id, owner = shop
    bind_url = show_code(owner)
    first = wechat_get(client, bind_url)
    landing = wechat_get(client, first.headers["Location"].split("#")[0]).headers["Location"]
    clock.advance(alerts.BIND_CODE_TTL + timedelta(seconds=1))          # lapsed while in WeChat
    assert wechat_get(client, landing).status_code == 404
    assert list(AlertBindingModel.query(merchant_id)) == []


def test_a_cashier_can_neither_show_a_bind_code_nor_stop_anyones_alerts(client, shop):
    merchant_id, owner = shop
    scan(client, show_code(owner))
    (binding,) = AlertBindingModel.query(merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    assert cashier.get("/portal/alerts").status_code == 403
    cashier.get("/portal")
    assert 'id="nav-alerts"' not in cashier.text()
    assert cashier.post("/portal/alerts/codes", {"store_name": "Mine"}).status_code == 403
    cashier.get("/portal")
    assert cashier.post(f"/portal/alerts/{binding.binding_id}/remove", {}).status_code == 403
    assert BindCodeModel.count() == 1 and len(list(AlertBindingModel.query(merchant_id))) == 1


def test_another_merchants_staff_see_none_of_the_bindings_and_cannot_remove_one(client, shop):
    merchant_id, owner = shop
    scan(client, show_code(owner))
    (binding,) = AlertBindingModel.query(merchant_id)
    other_id = merchants.create_merchant("Kea Cafe", channels={"wechat": {"sub_mch_id": "20000101"}}).id
    other = owner_of(client, other_id, email="owner@keacafe.nz")
    other.get("/portal/alerts")
    assert binding.binding_id not in other.text() and 'id="no-bindings"' in other.text()
    assert other.post(f"/portal/alerts/{binding.binding_id}/remove", {}).status_code == 404
    assert len(list(AlertBindingModel.query(merchant_id))) == 1


def test_removing_a_binding_needs_the_form_token_and_is_audited_with_it(client, shop):
    merchant_id, owner = shop
    scan(client, show_code(owner))
    (binding,) = AlertBindingModel.query(merchant_id)
    owner.get("/portal/alerts")
    assert owner.post(f"/portal/alerts/{binding.binding_id}/remove", {}, csrf=None).status_code == 403
    assert len(list(AlertBindingModel.query(merchant_id))) == 1
    owner.get("/portal/alerts")
    assert owner.post(f"/portal/alerts/{binding.binding_id}/remove", {}).status_code == 303
    assert list(AlertBindingModel.query(merchant_id)) == []
    assert merchants.store.get(merchant_id).alert_bindings in (None, [], ())
    entry = next(e for e in audit.recent(merchant_id) if e.action == "alert_binding.removed")
    assert entry.actor == "staff:owner@tuihoney.nz" and entry.details == {"binding": binding.binding_id}
    owner.get("/portal/alerts")
    assert owner.post(f"/portal/alerts/{binding.binding_id}/remove", {}).status_code == 404


def test_a_store_name_the_alert_template_cannot_carry_is_refused(client, shop):
    merchant_id, owner = shop
    owner.get("/portal/alerts")
    assert owner.post("/portal/alerts/codes", {"store_name": "S" * 21}).status_code == 400
    owner.get("/portal/alerts")
    assert owner.post("/portal/alerts/codes", {"store_name": "  "}).status_code == 400
    assert BindCodeModel.count() == 0
