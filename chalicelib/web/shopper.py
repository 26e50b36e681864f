"""Shopper-facing handlers: turn service results into HTML pages and redirects."""
from __future__ import annotations

from chalice import Response

from chalicelib import clock, settings
from chalicelib.domain import views
from chalicelib.domain.fx import Quote
from chalicelib.services import errors, payments
from chalicelib.store import payments as store
from chalicelib.web import pages, responses


def _valid_id(payment_id: str) -> bool:
    return payment_id.startswith("pay_") and len(payment_id) == payments.PAYMENT_ID_LENGTH and payment_id.isascii()


def pay_page(payment_id: str) -> Response:
    p = store.get(payment_id) if _valid_id(payment_id) else None
    if p is None or p.quote is None:
        return responses.html(pages.message("Not found", "There is no such payment."), 404)
    view = views.payment(p)
    view["next_action"] = p.next_action
    if p.status.value == "pending" and clock.now() >= p.expires_at:
        return responses.html(pages.message("Payment expired", "This payment has expired; ask the school for a new one."), 410)
    expired = clock.now() >= Quote.from_dict(p.quote).expires_at
    base = settings.get().public_base_url
    return responses.html(pages.quoted_payment(view, expired, f"{base}/pay/{p.id}/requote", f"{base}/pay/{p.id}/documents"))


def requote(payment_id: str) -> Response:
    if not _valid_id(payment_id):
        return responses.html(pages.message("Not found", "There is no such payment."), 404)
    try:
        payments.requote(payment_id)
    except errors.ServiceError as exc:
        status = 404 if exc.kind == "not_found" else 409 if exc.kind == "conflict" else 503
        return responses.html(pages.message("Cannot quote", exc.message), status)
    return responses.redirect(f"/pay/{payment_id}")
