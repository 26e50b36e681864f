"""Balance: the three buckets, withdrawals and their batches, the bank account (masked), the statement."""
from __future__ import annotations

from chalice import Response

from chalicelib import clock
from chalicelib.domain import calendar_nz
from chalicelib.services import errors
from chalicelib.web import render, responses
from chalicelib.web.portal import common


def page(req) -> Response:
    from chalicelib.money import Money
    from chalicelib.services import balances, onboarding
    from chalicelib.store import merchants
    from chalicelib.store import withdrawals as payouts

    r, s, refused = common.signed_in(req, "balance")
    if refused:
        return refused
    m = merchants.get(s.merchant_id)
    rows = [{k: (Money(v, b["currency"]).to_major_str() if k != "currency" else v) for k, v in b.items()}
            for b in balances.balance_of(m, True)["balances"]]
    month = calendar_nz.local_date(clock.now()).strftime("%Y-%m")
    return common.page(r, "portal/balance.html", s, balances=rows, withdrawals=payouts.of_merchant(m.id, limit=20),
                       bank=onboarding.masked_account(m.bank_account) if s.can("bank") else None,
                       month=month, csrf=s.csrf, money=Money)


def statement(req) -> Response:
    from chalicelib.services import portal
    from chalicelib.store import merchants

    r, s, refused = common.signed_in(req, "balance")
    if refused:
        return refused
    month = r.query.get("month") or calendar_nz.local_date(clock.now()).strftime("%Y-%m")
    try:
        name, body = portal.statement_csv(merchants.get(s.merchant_id), month[:7])
    except errors.ServiceError:
        return render.message(r.lang, "portal_not_found_title", "portal_search_invalid", 400)
    return Response(body=body, status_code=200, headers=responses.secured({
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store"}))
