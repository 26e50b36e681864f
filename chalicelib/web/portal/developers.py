"""Developers (owner only): secret keys (create, roll with grace, revoke) and webhook endpoints
(add, disable, deliveries, resend one)."""
from __future__ import annotations

from itertools import islice

from chalice import Response

from chalicelib.api.errors import ApiError
from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common

LIVE = True


def page(req, new_key: str | None = None, new_secret: str | None = None, error_key: str | None = None,
         status: int = 200) -> Response:
    from chalicelib.services import api_keys, merchants
    from chalicelib.store import events

    r, s, refused = common.signed_in(req, "developers")
    if refused:
        return refused
    m = merchants.store.get(s.merchant_id)
    return common.page(r, "portal/developers.html", s, status, csrf=s.csrf, keys=api_keys.list_for(m.id),
                       endpoints=merchants.list_webhook_endpoints(m, LIVE),
                       deliveries=list(islice(events.for_merchant(m.id, LIVE, page_size=20), 20)), new_key=new_key,
                       new_secret=new_secret, error_key=error_key)


def act(req, action: str, ref: str | None = None) -> Response:
    from chalicelib.api.requests import new_webhook_endpoint
    from chalicelib.services import api_keys, merchants, notifications

    r, s, refused = common.form_post(req, "developers")
    if refused:
        return refused
    form = r.form()
    m = merchants.store.get(s.merchant_id)
    new_key = new_secret = None
    try:
        if action == "key_create":
            new_key = api_keys.create(m.id, form.get("mode") != "test", s.actor)
        elif action == "key_roll":
            new_key = api_keys.roll(m.id, ref or "", s.actor)
        elif action == "key_revoke":
            api_keys.revoke(m.id, ref or "", s.actor)
        elif action == "endpoint_add":
            made = merchants.add_webhook_endpoint(m, LIVE, new_webhook_endpoint({"url": form.get("url", "")[:2048]}),
                                                  actor=s.actor)
            new_secret = made["secret"]
        elif action in ("endpoint_disable", "endpoint_enable"):
            merchants.set_webhook_endpoint_disabled(m, LIVE, ref or "", action == "endpoint_disable",
                                                    actor=s.actor)
        elif action == "event_resend":
            if notifications.resend(m.id, LIVE, ref or "", actor=s.actor) is None:
                raise errors.not_found("event", "event_id")
    except (errors.ServiceError, ApiError) as exc:
        if getattr(exc, "kind", None) == "not_found" or getattr(exc, "status", 0) == 404:
            return render.message(r.lang, "portal_not_found_title", "portal_not_found_text", 404)
        return page(req, error_key="portal_dev_refused", status=400)
    if new_key or new_secret:
        return page(req, new_key=new_key, new_secret=new_secret)
    return common.redirect(f"{common.PATH}/developers")
