"""The merchant portal in a real browser (headless Chromium) against `make run`'s stack (issue 11).

The owner signs in, invites a cashier; the cashier joins on the counter tablet and rings up a SpotPay
sale that the WeChat sandbox pays (the screen turns to paid by itself); the owner refunds part of it
and downloads the month's statement. A screenshot per step under .local/screenshots/ (looked at).
"""
from __future__ import annotations

import csv
import io
import re

import pytest
import requests

from tests.e2e.browser import Shots, browser, loopback_only  # noqa: F401  (fixture)
from tests.support.agents import WECHAT_UA
from tests.support.local_stack import StackFailed, running_stack

TABLET = {"viewport": {"width": 600, "height": 960}, "is_mobile": True, "has_touch": True}
ANDROID_TABLET_UA = ("Mozilla/5.0 (Linux; Android 11; SM-T220) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0.0.0 Safari/537.36")
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    try:
        with running_stack(tmp_path_factory.mktemp("portal")) as facts:
            yield facts
    except StackFailed as exc:
        pytest.fail(str(exc))


def context(browser, ua, lang="en-NZ", **extra):  # noqa: F811
    ctx = browser.new_context(user_agent=ua, locale=lang, extra_http_headers={"Accept-Language": lang},
                              accept_downloads=True, **extra)
    ctx.set_default_timeout(WAIT_MS)
    return ctx


def sign_in(page, portal_url, email, password):
    page.goto(portal_url + "/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector("#portal-nav")


def test_owner_invites_a_cashier_who_sells_with_spotpay_then_the_owner_refunds_part_and_downloads_the_statement(
        browser, stack, tmp_path):  # noqa: F811
    shot = Shots("portal")
    portal = stack["portal_url"]
    owner = stack["portal_owner"]

    office = context(browser, DESKTOP_UA, viewport={"width": 1000, "height": 900})
    off_machine = loopback_only(office)
    page = office.new_page()
    sign_in(page, portal, owner["email"], owner["password"])
    shot(page, "owner-today")
    cookie = next(c for c in office.cookies() if c["name"] == "kauri_portal")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"

    page.click("#nav-staff")
    page.fill("#invite-email", "till@kauri-demo.test")
    page.select_option("#invite-role", "cashier")
    page.click("#invite")
    link = page.get_attribute("#invitation-link", "href")
    assert "/portal/invitations/" in link
    assert page.get_attribute("#mail-state", "data-state") == "delivered"     # mailed through the stack's SES
    shot(page, "owner-invited-cashier")

    counter = context(browser, ANDROID_TABLET_UA, **TABLET)
    counter_off = loopback_only(counter)
    till = counter.new_page()
    till.goto(link)
    till.fill("#password", "counter tablet 7")
    till.fill("#password2", "counter tablet 7")
    shot(till, "cashier-joins")
    till.click("#accept")
    till.wait_for_selector("#notice")
    till.fill("#email", "till@kauri-demo.test")
    till.fill("#password", "counter tablet 7")
    till.click("#sign-in")
    till.wait_for_selector("#portal-nav")
    assert till.query_selector("#nav-payments") is None and till.query_selector("#nav-developers") is None

    till.click("#nav-spotpay")
    till.fill("#amount", "12.50")
    shot(till, "spotpay-amount")
    till.click("#wallet-wechat")
    till.wait_for_selector('#sale[data-state="waiting"] #sale-qr svg')
    shot(till, "spotpay-qr")
    payment_id = re.search(r"/portal/spotpay/(pay_[0-9a-z]+)", till.url).group(1)
    assert till.evaluate("document.documentElement.scrollWidth") <= 600       # no sideways scrolling on the tablet

    paid = requests.post(stack["api_url"] + "/sandbox/wechat/simulate/pay", json={"out_trade_no": payment_id},
                         timeout=10)
    assert paid.status_code == 200, paid.text
    till.wait_for_selector('#sale[data-state="paid"]', timeout=WAIT_MS)    # by itself: the page refreshes
    assert "NZD 12.50" in till.inner_text("#sale-amount")
    shot(till, "spotpay-paid")

    page.click("#nav-payments")
    page.click(f'a.payment-link[href="/portal/payments/{payment_id}"]')
    page.wait_for_selector("#timeline .event-paid")
    page.fill("#refund-amount", "5.00")
    page.fill("#reason", "one muffin short")
    shot(page, "owner-refund-form")
    page.click("#do-refund")
    page.wait_for_selector("#timeline [class^=event-refund_]")
    assert page.inner_text("#refunded") == "NZD 5.00"
    shot(page, "owner-refunded")

    page.click("#nav-balance")
    shot(page, "owner-balance")
    with page.expect_download() as download:
        page.click("#statement")
    saved = tmp_path / "statement.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert payment_id in {r["source"] for r in rows}
    assert any(r["type"].startswith("refund") for r in rows), rows

    page.click("#nav-alerts")                      # a staff member binds their WeChat for payment alerts
    page.fill("#bind-store", "Queen St")
    page.click("#show-bind-code")
    page.wait_for_selector("#bind-qr svg")
    bind_url = page.get_attribute("#bind-qr", "data-url")
    shot(page, "owner-wechat-bind-code")
    phone = context(browser, WECHAT_UA, lang="zh-CN", viewport={"width": 390, "height": 800}, is_mobile=True,
                    has_touch=True)
    phone_off = loopback_only(phone)
    staff_phone = phone.new_page()
    staff_phone.goto(bind_url)                     # in WeChat: the sandbox's silent OAuth, then back to us
    staff_phone.wait_for_selector("#bound")
    assert "Queen St" in staff_phone.inner_text("#bound") and "微信收款提醒已开启" in staff_phone.inner_text("#bound")
    shot(staff_phone, "staff-wechat-bound")
    page.click("#nav-alerts")
    assert "Queen St" in page.inner_text("#bindings")
    shot(page, "owner-wechat-bindings")
    assert phone_off == []
    phone.close()

    page.click("#nav-staff")
    assert "refund.created" in page.inner_text("#audit") and "staff.invited" in page.inner_text("#audit")
    shot(page, "owner-audit")
    assert off_machine == [] and counter_off == []
    office.close()
    counter.close()
