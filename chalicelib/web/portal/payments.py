"""Payments: search, a payment's timeline, refunds in full or in part (owner and manager)."""
from __future__ import annotations

import secrets

from chalice import Response

from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common


def _merchant(s):
    from chalicelib.store import merchants

    return merchants.get(s.merchant_id)


def list_page(req) -> Response:
    from chalicelib.services import portal

    r, s, refused = common.signed_in(req, "payments")
    if refused:
        return refused
    try:
        found, filters = portal.search(_merchant(s), r.query)
        error_key = None
    except errors.ServiceError as exc:
        found, filters, error_key = [], dict(r.query), ("amount_invalid" if exc.code == "amount_invalid"
                                                        else "portal_search_invalid")
    return common.page(r, "portal/payments.html", s, 400 if error_key else 200, payments=found,
                       filters=filters, error_key=error_key, state_of=portal._refund_state,
                       store_of=portal.store_name_of, csrf=s.csrf)


def detail(payment_id: str, req, error_key: str | None = None, status: int = 200, notice: str | None = None
           ) -> Response:
    from chalicelib.services import portal

    r, s, refused = common.signed_in(req, "payments")
    if refused:
        return refused
    try:
        p = portal.payment_of(_merchant(s), payment_id)
    except errors.ServiceError:
        return render.message(r.lang, "portal_not_found_title", "portal_not_found_text", 404)
    refundable = p.amount.amount - (p.refunded or 0) if p.status.value == "succeeded" else 0
    return common.page(r, "portal/payment.html", s, status, p=p, timeline=portal.timeline(p), csrf=s.csrf,
                       can_refund=s.can("refund") and refundable > 0,
                       refundable=p.amount.__class__(refundable, p.amount.currency).to_major_str(),
                       refund_token=secrets.token_urlsafe(18), error_key=error_key, notice=notice,
                       store=portal.store_name_of(p))


def refund(payment_id: str, req) -> Response:
    from chalicelib import log
    from chalicelib.services import portal

    r, s, refused = common.form_post(req, "refund")
    if refused:
        return refused
    form = r.form()
    token = form.get("refund_token", "")
    if not (16 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum() and token.isascii()):
        return detail(payment_id, req, "portal_csrf_text", 400)
    try:
        portal.refund(_merchant(s), s.actor, payment_id, form.get("amount", ""), form.get("reason", ""), token)
    except errors.ServiceError as exc:
        log.info("portal_refund_refused", payment_id=payment_id, code=exc.code)
        key = "amount_invalid" if exc.code == "amount_invalid" else "portal_refund_refused"
        return detail(payment_id, req, key, 400 if exc.kind == "invalid" else 409)
    return common.redirect(f"{common.PATH}/payments/{payment_id}?refunded=1")
