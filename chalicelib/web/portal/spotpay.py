"""SpotPay pages: the amount and wallet form, then the sale screen that turns into paid/failed/expired."""
from __future__ import annotations

import secrets

from chalice import Response

from chalicelib import log
from chalicelib.services import errors
from chalicelib.web import render
from chalicelib.web.portal import common


def new_sale(req, error_key: str | None = None, amount: str = "", status: int = 200) -> Response:
    from chalicelib.store import merchants

    r, s, refused = common.signed_in(req, "spotpay")
    if refused:
        return refused
    merchant = merchants.get(s.merchant_id)
    wallets = [w for w in ("wechat", "alipay") if merchant.channel_ids(w) is not None]
    return common.page(r, "portal/spotpay.html", s, status, csrf=s.csrf, sale=secrets.token_urlsafe(18),
                       currency=merchant.settlement_currency, wallets=wallets, error_key=error_key, amount=amount,
                       takes_payments=merchant.takes_payments)


def ring_up(req) -> Response:
    from chalicelib.services import spotpay
    from chalicelib.store import merchants

    r, s, refused = common.form_post(req, "spotpay")
    if refused:
        return refused
    form = r.form()
    merchant = merchants.get(s.merchant_id)
    try:
        payment_id = spotpay.start_sale(merchant, s.email, form.get("amount", ""), form.get("wallet", ""),
                                        form.get("sale", ""), r.client_ip)
    except errors.ServiceError as exc:
        log.info("spotpay_refused", merchant_id=s.merchant_id, code=exc.code)
        key = {"amount_invalid": "amount_invalid", "merchant_suspended": "portal_suspended"}.get(
            exc.code, "portal_spotpay_failed")
        return new_sale(req, key, form.get("amount", "")[:20], 400 if exc.kind == "invalid" else 409)
    return common.redirect(f"{common.PATH}/spotpay/{payment_id}")


def sale(payment_id: str, req) -> Response:
    from chalicelib.services import payments, spotpay
    from chalicelib.web import qr
    from chalicelib.web.shopper import find_payment, state_of

    r, s, refused = common.signed_in(req, "spotpay")
    if refused:
        return refused
    p = find_payment(payment_id)
    if p is None or p.merchant_id != s.merchant_id or p.metadata.get("spotpay") != "1":
        return render.message(r.lang, "portal_not_found_title", "portal_not_found_text", 404)
    state = state_of(p)
    data = spotpay.code_data(p, payments.pay_url(p.id)) if state == "waiting" else None
    return common.page(r, "portal/sale.html", s, csrf=s.csrf, payment=p, state=state,
                       amount=p.amount.to_major_str(), currency=p.amount.currency,
                       wallet=p.channel or "either", qr_svg=qr.svg(data, "QR") if data else None)
