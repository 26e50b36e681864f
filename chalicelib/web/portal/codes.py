"""Codes: the merchant's static QR codes: create (with per-code limits), print, disable, rotate."""
from __future__ import annotations

from chalice import Response

from chalicelib.money import Money
from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common

LIVE = True


def page(req, error_key: str | None = None, status: int = 200) -> Response:
    from chalicelib.services import qr_codes
    from chalicelib.store import merchants

    r, s, refused = common.signed_in(req, "codes")
    if refused:
        return refused
    m = merchants.get(s.merchant_id)
    return common.page(r, "portal/codes.html", s, status, codes=qr_codes.list_for(m, LIVE), csrf=s.csrf,
                       currency=m.settlement_currency, error_key=error_key, money=Money)


def _optional_amount(text: str, currency: str) -> int | None:
    from chalicelib.services.portal import typed_amount

    return typed_amount(text, currency).amount if (text or "").strip() else None


def act(req, action: str, code_id: str | None = None) -> Response:
    """create / disable / rotate; each change's audit entry is written in its own transaction."""
    from chalicelib.services import qr_codes
    from chalicelib.store import merchants

    r, s, refused = common.form_post(req, "codes")
    if refused:
        return refused
    m = merchants.get(s.merchant_id)
    form = r.form()
    try:
        if action == "create":
            name = form.get("store_name", "").strip()[:60]
            if not name or not name.isprintable():
                raise errors.invalid("store_invalid", "name the store", "store_name")
            qr_codes.create(m, LIVE, name, _optional_amount(form.get("fixed_amount", ""), m.settlement_currency),
                            _optional_amount(form.get("max_amount", ""), m.settlement_currency), actor=s.actor)
        elif action == "disable":
            qr_codes.disable(m, LIVE, code_id, actor=s.actor)
        else:
            qr_codes.rotate(m, LIVE, code_id, actor=s.actor)
    except errors.ServiceError as exc:
        if exc.kind == "not_found":
            return render.message(r.lang, "portal_not_found_title", "portal_not_found_text", 404)
        return page(req, "amount_invalid" if exc.code == "amount_invalid" else "portal_code_refused", 400)
    return common.redirect(f"{common.PATH}/codes")
