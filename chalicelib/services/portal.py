"""What the merchant portal reads and does, on top of the same services the API uses.

The portal is the merchant's live business (livemode=True). Refunds go through services.refunds.create
under services.idempotency with the route the API uses, keyed by a token the refund form carries, so a
double click (or the API with the same key) makes one refund.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone

from chalicelib import clock
from chalicelib.domain import calendar_nz, ledger
from chalicelib.domain.merchant import Merchant
from chalicelib.money import Money, MoneyError
from chalicelib.services import errors, idempotency

LIVE = True
SEARCH_DAYS = 31
MAX_LISTED = 200


def typed_amount(text: str | None, currency: str) -> Money:
    """An amount a person typed, as decimal text, parsed exactly into integer minor units (Decimal): ASCII
    digits only (Money.from_major takes any Unicode digit; a keyboard sends 0-9 and "."), above zero."""
    typed = (text or "").strip()[:20]
    try:
        if not typed.isascii():
            raise MoneyError(typed)
        amount = Money.from_major(typed, currency)
    except MoneyError:
        raise errors.invalid("amount_invalid", "type an amount like 12.50", "amount") from None
    if amount.amount <= 0:
        raise errors.invalid("amount_invalid", "type an amount like 12.50", "amount")
    return amount


# ---- payments -------------------------------------------------------------------------------

def paid_between(merchant_id: str, start: datetime, end: datetime, limit: int = MAX_LISTED) -> list:
    """Payments paid in [start, end), newest first (the sparse paid index, then each item consistently)."""
    from chalicelib.store import payments as store
    from chalicelib.store.models import PaymentModel

    hits = PaymentModel.paid_by_merchant.query(merchant_id, PaymentModel.paid_at.between(start, end),
                                               scan_index_forward=False, limit=limit)
    found = [store.get(h.payment_id) for h in hits]
    return [p for p in found if p is not None and p.livemode == LIVE and p.paid_at < end]


def search(merchant: Merchant, query: dict) -> tuple[list, dict]:
    """By reference / payment id / channel order number, else paid payments of a day range with filters
    (amount as decimal text, store, status). Returns (payments, the filters as understood)."""
    from chalicelib.store import payments as store

    q = (query.get("q") or "").strip()[:64]
    if q:
        found = store.by_merchant_reference(merchant.id, q, limit=20)
        direct = store.get(q) if q.startswith("pay_") and q.isascii() and len(q) <= 40 else None
        if direct is not None:
            found.append(direct)
        found = [p for p in found if p.merchant_id == merchant.id and p.livemode == LIVE]
        return _unique(found), {"q": q}
    today = calendar_nz.local_date(clock.now())
    start_day = _day(query.get("from"), today - timedelta(days=6))
    end_day = _day(query.get("to"), today)
    if end_day < start_day or (end_day - start_day).days > SEARCH_DAYS:
        raise errors.invalid("range_invalid", f"pick at most {SEARCH_DAYS} days", "from")
    found = paid_between(merchant.id, _utc_start(start_day), _utc_start(end_day + timedelta(days=1)))
    amount = (query.get("amount") or "").strip()[:20]
    if amount:
        wanted = typed_amount(amount, merchant.settlement_currency).amount
        found = [p for p in found if p.amount.amount == wanted]
    shop = (query.get("store") or "").strip()[:80]
    if shop:
        found = [p for p in found if store_name_of(p) == shop]
    status = query.get("status") or ""
    if status in ("succeeded", "refunded", "part_refunded"):
        found = [p for p in found if _refund_state(p) == status]
    return found, {"from": start_day.isoformat(), "to": end_day.isoformat(), "amount": amount, "store": shop,
                   "status": status}


def _refund_state(p) -> str:
    if p.refunded and p.refunded >= p.amount.amount:
        return "refunded"
    return "part_refunded" if p.refunded else "succeeded"


def _unique(found: list) -> list:
    seen, out = set(), []
    for p in found:
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


def _day(text: str | None, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        raise errors.invalid("date_invalid", "dates are YYYY-MM-DD", "from") from None


def _utc_start(day: date) -> datetime:
    """Midnight in Auckland of `day`, in UTC."""
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time(0), tzinfo=ZoneInfo("Pacific/Auckland")).astimezone(timezone.utc)


def payment_of(merchant: Merchant, payment_id: str):
    from chalicelib.services import payments

    p = payments.get_for(merchant, LIVE, payment_id)      # not_found for anyone else's
    return p


def timeline(p) -> list[tuple[datetime, str, str]]:
    """(when, what, detail), oldest first: created, paid, refunds, released, closed, webhook deliveries."""
    from chalicelib.store import ledger as ledger_store
    from chalicelib.store import payments as store
    from chalicelib.store.models import EventModel

    out = [(p.created_at, "created", p.amount.to_major_str() + " " + p.amount.currency)]
    if p.paid_at:
        charged = p.payer_amount or p.channel_amount
        out.append((p.paid_at, "paid", f"{charged.to_major_str()} {charged.currency}" if charged else ""))
    for r in store.refunds_of(p.id):
        out.append((r.created_at, f"refund_{r.status.value}", f"{r.amount.to_major_str()} {r.amount.currency}"))
    if p.closed_at:
        out.append((p.closed_at, p.status.value, p.closed_by or ""))
    released = ledger_store.get(f"release:{p.id}")
    if released is not None:
        out.append((released.created_at, "released", ""))
    for e in EventModel.by_merchant.query(p.merchant_id, scan_index_forward=False, limit=200,
                                          filter_condition=EventModel.payload.contains(p.id)):
        out.append((e.created_at, "webhook", f"{e.type}: {e.status} ({int(e.attempts or 0)})"))
    return sorted(out, key=lambda row: row[0])


def refund(merchant: Merchant, actor: str, payment_id: str, amount_text: str, reason: str, token: str):
    """A full or partial refund typed as decimal text; once per form token (double clicks replay)."""
    from chalicelib.domain import views
    from chalicelib.services import refunds
    from chalicelib.store.unit import Unit

    typed = (amount_text or "").strip()[:20]
    amount = typed_amount(typed, merchant.settlement_currency).amount
    reason = (reason or "").strip()[:200]
    route = f"POST /v1/payments/{payment_id}/refunds"            # the API's: one refund per key either way

    def run(completion):
        store_reply = completion.attach

        def attach_with_audit(unit: Unit, status_code: int, reply: dict) -> None:
            # the audit entry rides in the refund's own transaction (reservation + posting + reply)
            unit.audit(merchant.id, actor, "refund.created",
                       {"payment": payment_id, "refund": reply.get("id"), "amount": typed})
            store_reply(unit, status_code, reply)
        completion.attach = attach_with_audit
        done = refunds.create(merchant, LIVE, payment_id, amount, reason, completion)
        return 201, views.refund(done)

    body = json.dumps({"amount": amount, "reason": reason}, sort_keys=True).encode()
    _, reply = idempotency.run(merchant.id, route, f"portal-{token}", body, run, key_param="refund")
    return reply


def store_name_of(p) -> str:
    """Where a payment was taken: the static code's store, SpotPay, or online."""
    if p.metadata.get("store_name"):
        return p.metadata["store_name"]
    return "SpotPay" if p.metadata.get("spotpay") else "online"


# ---- today ------------------------------------------------------------------------------------

def today(merchant: Merchant, day: date | None = None) -> dict:
    """Takings of one Auckland day by channel and by store: NZD (and the CNY shoppers paid), refunds, fees."""
    from chalicelib.store import payments as store

    day = day or calendar_nz.local_date(clock.now())
    paid = paid_between(merchant.id, _utc_start(day), _utc_start(day + timedelta(days=1)))
    ccy = merchant.settlement_currency
    rows: dict[tuple[str, str], dict] = defaultdict(lambda: {"count": 0, "amount": 0, "cny": 0, "fees": 0})
    refunds_total = 0
    for p in paid:
        row = rows[(p.channel or "-", store_name_of(p))]
        row["count"] += 1
        row["amount"] += p.amount.amount
        row["fees"] += p.fee.amount
        charged = p.payer_amount or p.channel_amount
        if charged is not None and charged.currency == "CNY":
            row["cny"] += charged.amount
        refunds_total += sum(r.amount.amount for r in store.refunds_of(p.id) if r.status.value != "failed")
    fmt = lambda n, c=ccy: Money(n, c).to_major_str()  # noqa: E731
    lines = [{"channel": ch, "store": st, "count": v["count"], "amount": fmt(v["amount"]),
              "cny": fmt(v["cny"], "CNY"), "fees": fmt(v["fees"])} for (ch, st), v in sorted(rows.items())]
    total = sum(v["amount"] for v in rows.values())
    return {"day": day.isoformat(), "currency": ccy, "lines": lines, "total": fmt(total),
            "cny": fmt(sum(v["cny"] for v in rows.values()), "CNY"), "fees": fmt(sum(v["fees"] for v in rows.values())),
            "refunds": fmt(refunds_total), "count": sum(v["count"] for v in rows.values())}


# ---- balance and statement --------------------------------------------------------------------

def statement_csv(merchant: Merchant, month: str) -> tuple[str, str]:
    """(file name, CSV) of every balance transaction of the month (Auckland time), oldest first."""
    from chalicelib.services.balances import BUCKETS
    from chalicelib.store.models import EntryModel

    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise errors.invalid("month_invalid", "month is YYYY-MM", "month") from None
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    lo, hi = clock.iso(_utc_start(first)), clock.iso(_utc_start(nxt))
    rows = []
    for bucket in BUCKETS:
        account = ledger.merchant_account(ledger.owner(merchant.id, LIVE), merchant.settlement_currency, bucket)
        for e in EntryModel.query(account, EntryModel.entry_key.between(lo, hi)):
            if e.entry_key >= hi:
                continue
            rows.append((e.entry_key, bucket, e))
    rows.sort(key=lambda r: r[0])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["created_utc", "bucket", "type", "amount", "currency", "source", "posting"])
    for key, bucket, e in rows:
        # credit-normal, as /v1/balance/transactions: what the bucket gained (+) or lost (-)
        w.writerow([key.split("#", 1)[0], bucket, e.kind, Money(-int(e.amount), e.currency).to_major_str(),
                    e.currency, _safe_cell(e.ref), e.posting_id])
    return f"kauri-statement-{merchant.id}-{month}.csv", out.getvalue()


def _safe_cell(text: str) -> str:
    """No spreadsheet formulas from data (a cell starting with = + - @ is read as one)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
