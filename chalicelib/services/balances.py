"""Merchant balances (pending / available / reserved per currency) and the daily release job."""
from __future__ import annotations

import base64
import random
import re
import time
from datetime import date, datetime, timedelta
from typing import Callable

from chalicelib import clock, log, settings
from chalicelib.clock import iso
from chalicelib.domain import calendar_nz, ledger
from chalicelib.domain import withdrawal as funds
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.money import SETTLEMENT_CURRENCIES
from chalicelib.services import errors

BUCKETS = ("pending", "available", "reserved")
MAX_LIST = 100
MAX_ATTEMPTS = 4


# ---- reading balances ------------------------------------------------------------------------
def balance_of(merchant: Merchant, livemode: bool = True) -> dict:
    """All three buckets for every currency the merchant holds money in (its settlement currency always).
    A test key sees the test-mode books, a live key the live ones."""
    from chalicelib.store import balances as store

    who = ledger.owner(merchant.id, livemode)
    currencies = sorted(set(SETTLEMENT_CURRENCIES) | {merchant.settlement_currency})
    accounts = [ledger.merchant_account(who, c, b) for c in currencies for b in BUCKETS]
    found = store.get_many(accounts)
    out = []
    for c in currencies:
        row = {b: found[ledger.merchant_account(who, c, b)] for b in BUCKETS}
        if c == merchant.settlement_currency or any(row.values()):
            out.append({"currency": c, **row})
    return {"object": "balance", "merchant": merchant.id, "livemode": livemode, "balances": out}


def list_limit(query: dict) -> int:
    """The `limit` query parameter of a list endpoint (default 20)."""
    raw = (query or {}).get("limit", "20")
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= MAX_LIST:  # isdigit() takes '²'; int() does not
        raise errors.invalid("parameter_invalid", f"limit must be an integer between 1 and {MAX_LIST}", "limit")
    return int(raw)


def transactions(merchant: Merchant, query: dict, livemode: bool = True) -> dict:
    """Entries of the merchant's accounts in one currency, newest first; `starting_after` pages on."""
    from chalicelib.store.models import EntryModel

    query = query or {}
    limit = list_limit(query)
    currency = query.get("currency") or merchant.settlement_currency
    if currency not in SETTLEMENT_CURRENCIES:
        raise errors.invalid("parameter_invalid", f"currency must be one of {list(SETTLEMENT_CURRENCIES)}", "currency")
    cursor = _entry_key(query["starting_after"]) if query.get("starting_after") else None
    rows = []
    for bucket in BUCKETS:
        account = ledger.merchant_account(ledger.owner(merchant.id, livemode), currency, bucket)
        cond = EntryModel.entry_key < cursor if cursor else None
        for e in EntryModel.query(account, cond, scan_index_forward=False, limit=limit + 1):
            rows.append((e.entry_key, bucket, e))
    rows.sort(key=lambda r: r[0], reverse=True)
    page = rows[:limit]
    data = [{
        "id": _public_id(key), "object": "balance_transaction", "bucket": bucket,
        "amount": -int(e.amount),            # credit-normal: what the bucket gained (+) or lost (-)
        "currency": e.currency, "type": e.kind, "posting": e.posting_id, "source": e.ref,
        "created": key.split("#", 1)[0],
    } for key, bucket, e in page]
    return {"object": "list", "data": data, "has_more": len(rows) > limit,
            "next_starting_after": _public_id(page[-1][0]) if len(rows) > limit else None}


def _public_id(entry_key: str) -> str:
    """An opaque, URL-safe id for an entry (its key holds '#' and ':')."""
    return "btx_" + base64.urlsafe_b64encode(entry_key.encode()).decode().rstrip("=")


def _entry_key(public_id: str) -> str:
    bad = errors.invalid("parameter_invalid", "starting_after must be the id of a listed transaction",
                         "starting_after")
    if not public_id.startswith("btx_") or len(public_id) > 300:
        raise bad
    raw = public_id[4:]
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if key.count("#") < 2:
        raise bad
    return key


# ---- release: pending -> available -----------------------------------------------------------
# Reconciliation plugs in here: register a function that says whether the channel's statement
# matched a payment. With `release_requires_recon` on and nothing registered, nothing is released.
ReconCheck = Callable[[Payment], bool]
_recon_check: ReconCheck | None = None


def register_recon_check(check: ReconCheck | None) -> None:
    global _recon_check
    _recon_check = check


def recon_cleared(payment: Payment) -> bool:
    if not settings.get().release_requires_recon:
        return True
    return _recon_check is not None and bool(_recon_check(payment))


def release_date(paid_at: datetime, holding_days: int) -> date:
    """T+N NZ business days from the NZ date the payment was paid."""
    return calendar_nz.add_business_days(calendar_nz.local_date(paid_at), holding_days)


def release_funds_job(event: dict) -> dict:
    """The schedule's event or a hand-run one: {"date": "YYYY-MM-DD", "merchant_id": ..., "dry_run": true}.

    {"backfill": true} first indexes payments paid before the unreleased index existed (run it once after
    deploying that index, before the first scheduled run)."""
    day = None
    if event.get("date"):
        try:
            day = date.fromisoformat(str(event["date"]))
        except ValueError:
            summary = {"job": "release_funds", "error": "date must be YYYY-MM-DD"}
            log.warning("release_funds_summary", **summary)
            return summary
    backfilled = None
    if event.get("backfill") is True and not event.get("dry_run"):
        from chalicelib.store import withdrawals as store

        mids = [event["merchant_id"]] if event.get("merchant_id") else store.active_merchant_ids()
        backfilled = sum(len(store.index_unreleased(mid)) for mid in mids)
    summary = release_funds(day, merchant_id=event.get("merchant_id"), dry_run=bool(event.get("dry_run")))
    if backfilled is not None:
        summary["backfilled"] = backfilled
    return summary


def release_funds(day: date | None = None, merchant_id: str | None = None, dry_run: bool = False) -> dict:
    """Release every due payment (one posting each, `release:{payment_id}`); safe to re-run at any point.

    Every unreleased payment is found, however old (a sparse index holds exactly the succeeded,
    unreleased ones), and one still unreleased `release_alert_days` after it was paid raises an ops record.
    """
    from chalicelib.store import merchants as merchant_store
    from chalicelib.store import ops
    from chalicelib.store import withdrawals as store

    now = clock.now()
    today = day or calendar_nz.local_date(now)
    summary = {"job": "release_funds", "date": today.isoformat(), "dry_run": dry_run, "merchants": 0,
               "checked": 0, "released": 0, "released_amount": {}, "not_due": 0, "held_for_recon": 0,
               "already_released": 0, "errors": 0, "overdue": 0}
    alert_before = now - timedelta(days=settings.get().release_alert_days)
    ids = [merchant_id] if merchant_id else store.active_merchant_ids()
    for mid in ids:
        merchant = merchant_store.get(mid)
        if merchant is None:
            summary["errors"] += 1
            log.warning("release_unknown_merchant", merchant_id=mid)
            continue
        summary["merchants"] += 1
        for payment_id, paid_at in store.unreleased_of(mid):   # a GSI read: each is re-read consistently
            summary["checked"] += 1
            try:
                outcome, amount, currency = _release_one(merchant, payment_id, today, dry_run)
            except Exception as exc:  # one bad payment must not stop the others; ops sees the count
                summary["errors"] += 1
                outcome, amount, currency = "errors", 0, ""
                log.error("release_failed", payment_id=payment_id, error=type(exc).__name__)
            else:
                summary[outcome] += 1
            if outcome == "released":
                summary["released_amount"][currency] = summary["released_amount"].get(currency, 0) + amount
            elif outcome != "already_released" and paid_at < alert_before:
                summary["overdue"] += 1
                if not dry_run and ops.record_once(
                        f"unreleased:{payment_id}", "payment_unreleased", "", payment_id,
                        {"merchant_id": mid, "paid_at": iso(paid_at), "last_outcome": outcome}):
                    log.error("payment_unreleased_overdue", payment_id=payment_id, paid_at=iso(paid_at),
                              outcome=outcome)
    log.info("release_funds_summary", **summary)
    return summary


def _release_one(merchant: Merchant, payment_id: str, today: date, dry_run: bool) -> tuple[str, int, str]:
    """Move one due payment's net, less what its refunds took from pending while it was unreleased, from
    pending to available; conditional on the payment and the pending account being as read.

    `borrowed` on the pending account is what refunds of released payments took from pending (other
    payments' unreleased money): pending then holds less than the unreleased payments' nets, so the
    payments released last find pending short. That shortfall is money already spent on those refunds;
    the release records it as absorbed (borrowed goes down), so a refund that fails later knows how
    much of its borrowed part still belongs in pending and how much to available (services.refunds.fail).
    """
    from chalicelib.store import balances as balance_store
    from chalicelib.store import ledger as ledger_store
    from chalicelib.store import payments as payment_store
    from chalicelib.store import withdrawals as store
    from chalicelib.store.unit import Conflict

    for attempt in range(MAX_ATTEMPTS):
        p = payment_store.get(payment_id)
        if p is None or p.status is not PaymentStatus.SUCCEEDED or p.paid_at is None:
            raise LookupError("payment is not a succeeded payment")
        if p.released:
            return "already_released", 0, ""
        if release_date(p.paid_at, merchant.holding_days) > today:
            return "not_due", 0, ""
        if not recon_cleared(p):
            return "held_for_recon", 0, ""
        credited = ledger_store.get(f"payment:{p.id}")
        if credited is None:
            raise LookupError("payment has no ledger posting")
        credits = [(a, d) for a, d in credited.merchant_deltas().items() if a.endswith(":pending")]
        currency = credits[0][0].split(":")[2] if credits else p.amount.currency
        who = ledger.owner(merchant.id, p.livemode)  # test-mode payments release within the test books
        pending_account = ledger.merchant_account(who, currency, "pending")
        net = credits[0][1] if credits else 0
        pending = balance_store.get(pending_account)
        borrowed = balance_store.borrowed(pending_account)
        amount = funds.release_amount(net, p.pending_drawn, pending)
        absorbed = min(max(0, net - p.pending_drawn) - amount, borrowed)
        if dry_run:
            return "released", amount, currency
        unit = store.FundsUnit().mark_released(p.id, p.pending_drawn)
        if amount:
            unit.post(funds.release_posting(who, p.id, currency, amount), floors={pending_account: 0},
                      borrowed={pending_account: (borrowed, -absorbed)} if absorbed else None)
        elif absorbed:
            unit.adjust_borrowed(pending_account, borrowed, -absorbed)
        try:
            unit.commit()
        except Conflict:
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # a refund moved it meanwhile: read again
            continue
        log.info("payment_released", payment_id=p.id, amount=amount, currency=currency, absorbed=absorbed,
                 release_date=today.isoformat(), posted_at=iso(clock.now()))
        return "released", amount, currency
    raise RuntimeError("release kept conflicting")
