"""Portal staff and sign-in (issue 11): Cognito identities, invitations, sessions, CSRF, throttling, audit."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from chalicelib import clock
from chalicelib.services import merchants, staff
from chalicelib.store import audit
from chalicelib.store.staff import StaffModel
from tests.integration.portal_helpers import PASSWORD, Browser, invite, owner_of, staff_member
from tests.integration.test_balances_and_withdrawals import THURSDAY


@pytest.fixture
def merchant_id(client):
    clock.freeze(THURSDAY)
    return merchants.create_merchant("Tui Honey", channels={"wechat": {"sub_mch_id": "20000100"}}).id


def test_ops_invites_the_owner_who_joins_signs_in_with_a_secure_cookie_and_sees_the_audit_trail(client, merchant_id):
    owner = owner_of(client, merchant_id)
    cookie = owner.last.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/portal"):
        assert flag in cookie
    assert owner.get("/portal").status_code == 200 and "Tui Honey" in owner.text()
    page = owner.get("/portal/staff")
    assert page.status_code == 200
    text = owner.text()
    assert "ops:inv-" in text and "staff.invited" in text and "staff.joined" in text and "staff.signed_in" in text
    member = StaffModel.get(merchant_id, "owner@tuihoney.nz")
    assert (member.role, member.status) == ("owner", "active")


def test_the_password_lives_in_cognito_not_in_our_tables(client, merchant_id):
    owner_of(client, merchant_id)
    import boto3

    pool_id, _ = staff.pool()
    user = boto3.client("cognito-idp", region_name="ap-southeast-2").admin_get_user(UserPoolId=pool_id,
                                                                                     Username="owner@tuihoney.nz")
    attrs = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attrs["custom:merchant_id"] == merchant_id and attrs["custom:role"] == "owner"
    from chalicelib.store import tables

    for model in tables.models():
        for item in model.scan():
            assert PASSWORD not in str(item.attribute_values)


def test_a_cashier_cannot_open_the_staff_page_nor_sign_anyone_out(client, merchant_id):
    owner = owner_of(client, merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    assert cashier.get("/portal").status_code == 200
    assert cashier.get("/portal/staff").status_code == 403
    owner_session = next(s for s in staff.sessions_of(merchant_id) if s.email == "owner@tuihoney.nz")
    cashier.get("/portal")
    resp = cashier.post(f"/portal/sessions/{owner_session.session_id}/sign-out", {})
    assert resp.status_code == 403
    assert owner.get("/portal").status_code == 200          # still signed in
    cashier.get("/portal")
    resp = cashier.post("/portal/staff/invite", {"email": "friend@x.nz", "role": "owner"})
    assert resp.status_code == 403
    assert [m.email for m in StaffModel.query(merchant_id)] == ["owner@tuihoney.nz", "till@tuihoney.nz"]


def test_another_merchants_owner_sees_nothing_of_this_one_and_cannot_sign_its_staff_out(client, merchant_id):
    owner = owner_of(client, merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    other_id = merchants.create_merchant("Kea Cafe", channels={"wechat": {"sub_mch_id": "20000101"}}).id
    other = owner_of(client, other_id, email="owner@keacafe.nz")
    other.get("/portal/staff")
    text = other.text()
    assert "tuihoney" not in text and "Tui Honey" not in text
    till = next(s for s in staff.sessions_of(merchant_id) if s.email == "till@tuihoney.nz")
    resp = other.post(f"/portal/sessions/{till.session_id}/sign-out", {})
    assert resp.status_code == 404
    assert cashier.get("/portal").status_code == 200


def test_the_owner_signs_a_cashier_out_remotely_at_once_and_the_trail_says_so(client, merchant_id):
    owner = owner_of(client, merchant_id)
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    till = next(s for s in staff.sessions_of(merchant_id) if s.email == "till@tuihoney.nz")
    owner.get("/portal/staff")
    assert till.session_id in owner.text()
    assert owner.post(f"/portal/sessions/{till.session_id}/sign-out", {}).status_code == 303

    resp = cashier.get("/portal")
    assert resp.status_code == 303 and resp.headers["Location"] == "/portal/sign-in"
    entry = next(e for e in audit.recent(merchant_id) if e.action == "staff.signed_out")
    assert entry.actor == "staff:owner@tuihoney.nz"
    assert entry.details == {"email": "till@tuihoney.nz", "session": till.session_id, "remote": True}
    assert cashier.sign_in("till@tuihoney.nz").status_code == 303      # they may sign in again


def test_every_portal_form_refuses_a_post_without_its_csrf_token(client, merchant_id):
    owner = owner_of(client, merchant_id)
    owner.get("/portal/staff")
    assert owner.post("/portal/staff/invite", {"email": "x@y.nz", "role": "cashier"}, csrf=None).status_code == 403
    assert owner.post("/portal/staff/invite", {"email": "x@y.nz", "role": "cashier"},
                      csrf="forged-token-forged-token").status_code == 403
    assert owner.post("/portal/sign-out", {}, csrf=None).status_code == 403
    assert owner.get("/portal").status_code == 200                       # not signed out
    stranger = Browser(client)
    resp = stranger.post("/portal/sign-in", {"email": "owner@tuihoney.nz", "password": PASSWORD}, csrf=None)
    assert resp.status_code == 403 and "Set-Cookie" not in resp.headers
    assert [e.action for e in audit.recent(merchant_id)].count("staff.invited") == 1


def test_failed_sign_ins_are_throttled_even_for_the_right_password_then_allowed_after_the_window(client,
                                                                                                 merchant_id):
    owner_of(client, merchant_id)
    thief = Browser(client)
    for _ in range(staff.FAILED_SIGNINS_PER_EMAIL):
        assert thief.sign_in("owner@tuihoney.nz", "guess-1234567").status_code == 400
    assert thief.sign_in("owner@tuihoney.nz", PASSWORD).status_code == 429
    assert "Too many failed sign-ins" in thief.text()
    clock.advance(timedelta(seconds=staff.THROTTLE_WINDOW))
    assert thief.sign_in("owner@tuihoney.nz", PASSWORD).status_code == 303


def test_an_invitation_expires_after_three_days_and_cannot_be_used_twice(client, merchant_id):
    owner = owner_of(client, merchant_id)
    late = invite(owner, "late@tuihoney.nz", "manager")
    twice = invite(owner, "twice@tuihoney.nz", "cashier")
    assert Browser(client).accept(twice).status_code == 303
    second = Browser(client)
    second.get(twice.replace("http://kauri.test", ""))
    assert second.last.status_code == 404

    clock.advance(staff.INVITATION_TTL + timedelta(seconds=1))
    b = Browser(client)
    assert b.get(late.replace("http://kauri.test", "")).status_code == 410
    with pytest.raises(Exception) as refused:
        staff.accept(late.rsplit("/", 1)[1], PASSWORD)
    assert getattr(refused.value, "code", None) == "invitation_expired"
    assert StaffModel.get(merchant_id, "twice@tuihoney.nz").status == "active"
    assert [m.email for m in StaffModel.query(merchant_id) if m.email == "late@tuihoney.nz"] == []


def _portal_form_routes():
    import app as app_module

    out = []
    for path, methods in app_module.app.routes.items():
        if path.startswith("/portal") and "POST" in methods:
            named = {"{action}": "disable", "{kind}": "keys", "{verb}": "roll"}
            for param, value in named.items():
                path = path.replace(param, value)
            out.append(re.sub(r"\{[a-z_]+\}", "x" * 24, path))
    return sorted(out)


def test_every_portal_post_route_refuses_a_signed_in_owner_without_the_form_token(client, merchant_id):
    owner = owner_of(client, merchant_id)
    routes = _portal_form_routes()
    assert len(routes) >= 12
    for path in routes:
        owner.get("/portal")
        resp = owner.post(path, {"email": "x@y.nz", "role": "cashier", "amount": "1.00", "wallet": "wechat",
                                 "password": PASSWORD, "password2": PASSWORD, "store_name": "S",
                                 "url": "https://93.184.216.34/h", "mode": "live"}, csrf=None)
        assert resp.status_code == 403, path
    assert owner.get("/portal").status_code == 200
    assert [e.action for e in audit.recent(merchant_id)].count("staff.invited") == 1    # ops' invitation only


def test_portal_pages_speak_simplified_chinese_with_the_shopper_pages_rules(client, merchant_id):
    page = client.http.get("/portal/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    text = page.body.decode()
    assert page.status_code == 200 and "登录 Kauri 商户后台" in text and 'lang="zh-CN"' in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    owner = owner_of(client, merchant_id)
    owner.get("/portal?lang=zh-CN")
    assert "今日" in owner.text() and "退出登录" in owner.text()
    assert "<script" not in owner.text()                                 # the portal needs no JavaScript
