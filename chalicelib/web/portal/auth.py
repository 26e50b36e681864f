"""Signing in and out, and accepting an invitation."""
from __future__ import annotations

from chalice import Response

from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common
from chalicelib.web.shopper import Request


def sign_in_page(req, error_key: str | None = None, status: int = 200, notice_key: str | None = None) -> Response:
    r = Request(req)
    token, set_cookie = common.form_token(r)
    return common.with_cookie(common.page(r, "portal/sign_in.html", status=status, csrf=token, error_key=error_key,
                                          notice_key=notice_key or ("portal_joined" if r.query.get("joined") else None),
                                          email=r.form().get("email", "")[:254]), set_cookie)


def sign_in(req) -> Response:
    from chalicelib.services import staff

    r = Request(req)
    if not common.form_token_ok(r):
        return render.message(r.lang, "portal_csrf_title", "portal_csrf_text", 403)
    form = r.form()
    try:
        s = staff.sign_in(form.get("email", ""), form.get("password", ""), r.client_ip,
                          r.headers.get("user-agent", ""))
    except errors.ServiceError as exc:
        key = "portal_throttled" if exc.code == "too_many_attempts" else "portal_sign_in_failed"
        return sign_in_page(req, key, 429 if exc.code == "too_many_attempts" else 400)
    return common.redirect(common.PATH, common.cookie(common.SESSION_COOKIE, s.token,
                                                      int(staff.SESSION_TTL.total_seconds())))


def sign_out(req) -> Response:
    from chalicelib.services import staff

    r, s, refused = common.form_post(req)
    if refused:
        return refused
    staff.sign_out(s, s.session_id)
    return common.redirect(f"{common.PATH}/sign-in", common.cookie(common.SESSION_COOKIE, "", 0))


def home(req) -> Response:
    """Today: takings by channel and store (NZD and the CNY shoppers paid), refunds, fees."""
    from chalicelib.services import portal
    from chalicelib.store import merchants

    r, s, refused = common.signed_in(req)
    if refused:
        return refused
    merchant = merchants.get(s.merchant_id)
    return common.page(r, "portal/home.html", s, csrf=s.csrf, merchant=merchant, today=portal.today(merchant))


def invitation_page(token: str, req, error_key: str | None = None, status: int = 200) -> Response:
    from chalicelib.services import staff

    r = Request(req)
    try:
        item = staff.invitation(token)
    except errors.ServiceError as exc:
        key = "portal_invitation_expired" if exc.code == "invitation_expired" else "portal_invitation_unknown"
        return render.message(r.lang, "portal_invitation_title", key, 410 if exc.code == "invitation_expired" else 404)
    csrf, set_cookie = common.form_token(r)
    return common.with_cookie(common.page(r, "portal/invitation.html", status=status, csrf=csrf, email=item.email,
                                          role=item.role, token=token, error_key=error_key), set_cookie)


def accept_invitation(token: str, req) -> Response:
    from chalicelib.services import staff

    r = Request(req)
    if not common.form_token_ok(r):
        return render.message(r.lang, "portal_csrf_title", "portal_csrf_text", 403)
    form = r.form()
    if form.get("password", "") != form.get("password2", ""):
        return invitation_page(token, req, "portal_passwords_differ", 400)
    try:
        staff.accept(token, form.get("password", ""))
    except errors.ServiceError as exc:
        if exc.code == "password_invalid":
            return invitation_page(token, req, "portal_password_rules", 400)
        return invitation_page(token, req)       # expired, used, unknown: that page says which
    return common.redirect(f"{common.PATH}/sign-in?joined=1")
