"""WeChat alerts (owner, manager): show a one-use code that a staff member scans in WeChat to get a
message for every payment; see who gets them, stop one. The scan opens /portal/alerts/bind/<token>, which
runs the alert Official Account's silent web OAuth (snsapi_base: `code` -> openid, as the shopper pages
do for JSAPI; the sandbox plays both steps) and binds that openid through services.alerts."""
from __future__ import annotations

from urllib.parse import urlencode

from chalice import Response

from chalicelib import log, settings
from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common
from chalicelib.web.shopper import _OAUTH_CODE, Request


def page(req, bind_url: str | None = None, bind_store: str = "", error_key: str | None = None,
         status: int = 200) -> Response:
    from chalicelib.services import alerts
    from chalicelib.web import qr

    r, s, refused = common.signed_in(req, "alerts")
    if refused:
        return refused
    return common.page(r, "portal/alerts.html", s, status, csrf=s.csrf, bindings=alerts.bindings_of(s.merchant_id),
                       bind_svg=qr.svg(bind_url, "WeChat") if bind_url else None, bind_url=bind_url,
                       bind_store=bind_store, error_key=error_key, store_max=alerts.STORE_NAME_MAX)


def new_code(req) -> Response:
    from chalicelib.services import alerts

    r, s, refused = common.form_post(req, "alerts")
    if refused:
        return refused
    try:
        name = alerts.store_name_of(r.form().get("store_name"))
        url, _ = alerts.new_bind_code(s.merchant_id, name, s.email)
    except errors.ServiceError:
        return page(req, error_key="portal_wechat_refused", status=400)
    return page(req, bind_url=url, bind_store=name)


def remove(binding_id: str, req) -> Response:
    from chalicelib.services import alerts

    r, s, refused = common.form_post(req, "alerts")
    if refused:
        return refused
    if not alerts.delete_binding(s.merchant_id, binding_id, actor=s.actor):
        return render.message(r.lang, "portal_not_found_title", "portal_not_found_text", 404)
    return common.redirect(f"{common.PATH}/alerts")


def bind(token: str, req) -> Response:
    """The scanned code, opened in WeChat: check it, get the openid by OAuth, bind, say so."""
    from chalicelib.channels.wechat_oa import client as oa
    from chalicelib.services import alerts
    from chalicelib.store import merchants

    r = Request(req)
    try:
        alerts.bind_code(token)           # a forged, used or lapsed code goes no further (not even to WeChat)
    except errors.ServiceError:
        return _refused(r)
    account = settings.get().wechat_oa
    back = f"{settings.get().public_base_url}{alerts.BIND_PATH}{token}?" + urlencode({"lang": r.lang})
    oauth_code = r.query.get("code") or ""
    if account is None:
        return render.message(r.lang, "error_title", "wechat_bind_error_text", 503)
    if not _OAUTH_CODE.match(oauth_code):
        return render.redirect(oa.authorize_url(back, "bind", account), 302)
    try:
        openid = oa.OfficialAccountClient().openid_for_code(oauth_code)
    except oa.OAError as exc:
        if exc.code in (40029, 40163):   # a stale or reused OAuth code: ask WeChat for a fresh one
            return render.redirect(oa.authorize_url(back, "bind", account), 302)
        log.warning("wechat_bind_oauth_failed", code=str(exc.code))
        return render.message(r.lang, "error_title", "wechat_bind_error_text", 502)
    try:
        done, merchant_id = alerts.bind_by_code(token, openid)
    except errors.ServiceError as exc:
        if exc.code == "binding_exists":
            return render.message(r.lang, "wechat_bind_refused_title", "wechat_bind_exists_text", 409)
        if exc.code == "too_many_bindings":
            return render.message(r.lang, "wechat_bind_refused_title", "wechat_bind_full_text", 409)
        return _refused(r)
    merchant = merchants.get(merchant_id)
    return render.page("portal/bound.html", r.lang, merchant_name=merchant.name if merchant else "",
                       store_name=done["store_name"])


def _refused(r) -> Response:
    return render.message(r.lang, "wechat_bind_refused_title", "wechat_bind_refused_text", 404)
