"""What every portal page shares: the session cookie, CSRF checks, role checks, rendering."""
from __future__ import annotations

import secrets

from chalice import Response

from chalicelib.web import render, responses
from chalicelib.web.shopper import Request

SESSION_COOKIE = "kauri_portal"
FORM_COOKIE = "kauri_form"          # double-submit token for forms shown before sign-in
PATH = "/portal"


def cookie(name: str, value: str, max_age: int) -> str:
    return f"{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"


def cookies(r: Request) -> dict[str, str]:
    out = {}
    for part in r.headers.get("cookie", "")[:4096].split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value
    return out


def current(r: Request):
    from chalicelib.services import staff

    return staff.session(cookies(r).get(SESSION_COOKIE))


def signed_in(req, permission: str | None = None):
    """(Request, session) or a Response: the sign-in page for no session, 403 without the permission."""
    r = Request(req)
    s = current(r)
    if s is None:
        return r, None, render.redirect(f"{PATH}/sign-in")
    if permission and not s.can(permission):
        return r, s, render.message(r.lang, "portal_forbidden_title", "portal_forbidden_text", 403)
    return r, s, None


def form_post(req, permission: str | None = None):
    """(Request, session) or a Response for a form POST: signed in, allowed, and carrying the session's
    form token."""
    r, s, refused = signed_in(req, permission)
    return r, s, refused or csrf_refused(r, s)


def csrf_refused(r: Request, s) -> Response | None:
    """Every POST from a signed-in page carries the session's form token; anything else is refused."""
    from chalicelib.services import staff

    if s is None or not staff.csrf_ok(s, r.form().get("csrf")):
        return render.message(r.lang, "portal_csrf_title", "portal_csrf_text", 403)
    return None


def form_token(r: Request) -> tuple[str, str | None]:
    """The pre-sign-in form token: the cookie's, or a new one (and its Set-Cookie)."""
    existing = cookies(r).get(FORM_COOKIE, "")
    if 20 <= len(existing) <= 64:
        return existing, None
    token = secrets.token_urlsafe(24)
    return token, cookie(FORM_COOKIE, token, 3600)


def form_token_ok(r: Request) -> bool:
    import hmac

    sent, kept = r.form().get("csrf", ""), cookies(r).get(FORM_COOKIE, "")
    return bool(kept) and len(kept) >= 20 and hmac.compare_digest(sent.encode(), kept.encode())


def with_cookie(resp: Response, set_cookie: str | None) -> Response:
    if set_cookie:
        resp.headers["Set-Cookie"] = set_cookie
    return resp


def page(r: Request, template: str, s=None, status: int = 200, **context) -> Response:
    return render.page(template, r.lang, status, session=s, nav=_nav(s), **context)


def _nav(s) -> list[tuple[str, str]]:
    if s is None:
        return []
    items = [("home", f"{PATH}"), ("spotpay", f"{PATH}/spotpay"), ("payments", f"{PATH}/payments"),
             ("balance", f"{PATH}/balance"), ("codes", f"{PATH}/codes"), ("alerts", f"{PATH}/alerts"),
             ("developers", f"{PATH}/developers"),
             ("staff", f"{PATH}/staff")]
    return [(key, url) for key, url in items if key == "home" or s.can(key)]


def redirect(location: str, set_cookie: str | None = None) -> Response:
    headers = {"Location": location, "Cache-Control": "no-store"}
    if set_cookie:
        headers["Set-Cookie"] = set_cookie
    return Response(body="", status_code=303, headers=responses.secured(headers))
