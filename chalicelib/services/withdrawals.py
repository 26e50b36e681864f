"""Auto-withdrawals: reserve each merchant's available balance, file one bank batch, settle or reverse it."""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone

from chalicelib import clock, log, settings
from chalicelib.clock import iso
from chalicelib.domain import bank_account, bank_files, calendar_nz, ledger
from chalicelib.domain import withdrawal as funds
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.withdrawal import Withdrawal, WithdrawalStatus

PAYOUT_CURRENCY = "NZD"   # the NZ direct-credit file pays NZD accounts only
MAX_ATTEMPTS = 3


def view(w: Withdrawal) -> dict:
    return {
        "id": w.id, "object": "withdrawal", "amount": w.amount, "currency": w.currency, "status": w.status.value,
        "bank_account_last4": w.bank_account[9:13], "period": w.period, "created": iso(w.created_at),
        "settled_at": iso(w.settled_at) if w.settled_at else None, "failure_reason": w.failure_reason,
    }


def list_for(merchant: Merchant, query: dict) -> dict:
    from chalicelib.services.balances import list_limit
    from chalicelib.store import withdrawals as store

    return {"object": "list", "data": [view(w) for w in store.of_merchant(merchant.id, limit=list_limit(query))]}


# ---- the daily job ---------------------------------------------------------------------------
def job_day(event: dict, now: datetime) -> tuple[date | None, str | None]:
    """The NZ date an auto_withdraw invocation is for, or None and why it should do nothing.

    EventBridge cron is UTC only and Auckland moves between +12 and +13, so the rule fires at both
    04:00 and 05:00 UTC; exactly one of them is the configured local hour (17:00 NZDT = 04:00 UTC,
    17:00 NZST = 05:00 UTC) and the other returns at once. A hand-run event ({"date": ...}) always acts.
    """
    if event.get("detail-type") == "Scheduled Event":
        fired = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) \
            if event.get("time") else now
        local = calendar_nz.local_time(fired)
        if local.hour != settings.get().withdrawal_local_hour:
            return None, f"local time {local:%H:%M} is not {settings.get().withdrawal_local_hour}:00"
        return local.date(), None
    if event.get("date"):
        try:
            return date.fromisoformat(str(event["date"])), None
        except ValueError:
            return None, "date must be YYYY-MM-DD"
    return calendar_nz.local_date(now), None


def auto_withdraw_job(event: dict) -> dict:
    day, why_not = job_day(event or {}, clock.now())
    if day is None:
        summary = {"job": "auto_withdraw", "skipped": why_not}
        log.info("auto_withdraw_summary", **summary)
        return summary
    return auto_withdraw(day, merchant_id=(event or {}).get("merchant_id"), dry_run=bool((event or {}).get("dry_run")))


def auto_withdraw(day: date, merchant_id: str | None = None, dry_run: bool = False) -> dict:
    from chalicelib.store import merchants as merchant_store
    from chalicelib.store import withdrawals as store

    batch = funds.batch_id(day, PAYOUT_CURRENCY)
    summary = {"job": "auto_withdraw", "date": day.isoformat(), "dry_run": dry_run, "batch_id": batch,
               "merchants": 0, "withdrawn": 0, "withdrawn_amount": 0, "already_withdrawn": 0, "below_minimum": 0,
               "no_bank_account": 0, "other_currency": 0, "open_withdrawal": 0, "errors": 0, "file": None}
    existing = store.get_batch(batch)
    if existing is not None:
        # The file may already be with the bank: nothing joins it now (a new merchant waits for tomorrow).
        summary.update(skipped=f"batch already {existing.status}", file=existing.s3_key,
                       withdrawn=int(existing.count), withdrawn_amount=int(existing.total))
        log.info("auto_withdraw_summary", **summary)
        return summary
    ids = [merchant_id] if merchant_id else store.active_merchant_ids()
    for mid in ids:
        merchant = merchant_store.get(mid)
        if merchant is None or merchant.status != "active":
            summary["errors"] += 1
            continue
        summary["merchants"] += 1
        try:
            outcome, amount = _withdraw_one(merchant, day, batch, dry_run)
        except Exception as exc:  # one merchant's failure must not stop the batch; ops sees the count
            summary["errors"] += 1
            log.error("auto_withdraw_failed", merchant_id=mid, error=type(exc).__name__)
            continue
        summary[outcome] += 1
        if outcome == "withdrawn":
            summary["withdrawn_amount"] += amount
    if not dry_run:
        filed = _file_batch(day, batch)
        if filed is not None:
            summary["file"] = filed
    log.info("auto_withdraw_summary", **summary)
    return summary


def _withdraw_one(merchant: Merchant, day: date, batch: str, dry_run: bool) -> tuple[str, int]:
    from chalicelib.store import balances as balance_store
    from chalicelib.store import withdrawals as store
    from chalicelib.store.unit import Conflict

    if merchant.settlement_currency != PAYOUT_CURRENCY:
        return "other_currency", 0
    if not bank_account.is_valid(merchant.bank_account):
        return "no_bank_account", 0
    wid = funds.withdrawal_id(merchant.id, day)
    if store.get(wid) is not None:
        return "already_withdrawn", 0
    if any(w.period != day.isoformat() for w in store.open_of_merchant(merchant.id)):
        return "open_withdrawal", 0
    available_account = ledger.merchant_account(merchant.id, PAYOUT_CURRENCY, "available")
    for _ in range(MAX_ATTEMPTS):
        available = balance_store.get(available_account)
        if available <= 0 or available < merchant.min_payout:
            return "below_minimum", 0
        if dry_run:
            return "withdrawn", available
        w = Withdrawal(id=wid, merchant_id=merchant.id, amount=available, currency=PAYOUT_CURRENCY,
                       bank_account=bank_account.validate(merchant.bank_account), batch_id=batch,
                       period=day.isoformat(), status=WithdrawalStatus.FILED, created_at=clock.now())
        try:
            (store.FundsUnit().create_withdrawal(w)
             .post(funds.withdrawal_posting(w), floors={available_account: 0}).commit())
        except Conflict:
            if store.get(wid) is not None:
                return "already_withdrawn", 0
            continue  # a refund took from available meanwhile: read it again
        log.info("withdrawal_created", withdrawal_id=wid, merchant_id=merchant.id, amount=available)
        return "withdrawn", available
    raise RuntimeError("withdrawal kept conflicting")


def _file_batch(day: date, batch: str) -> str | None:
    """Write the day's bank file from every withdrawal in the batch (a re-run after a crash rewrites it whole)."""
    import boto3

    from chalicelib.store import merchants as merchant_store
    from chalicelib.store import withdrawals as store

    members = sorted((w for w in store.of_batch(batch) if w.status is not WithdrawalStatus.FAILED),
                     key=lambda w: w.id)
    if not members:
        return None
    s = settings.get()
    names = {}
    for w in members:
        m = merchant_store.get(w.merchant_id)
        names[w.merchant_id] = m.name if m else ""
    created = calendar_nz.local_date(clock.now())
    f = bank_files.render([bank_files.Credit(w.bank_account, w.amount, names[w.merchant_id], w.bank_reference)
                           for w in members],
                          source_account=bank_account.validate(s.payout_source_account),
                          subscriber_name=s.payout_subscriber_name, due=max(day, created), created=created)
    key = f"withdrawals/{day.isoformat()}/batch-{batch}.csv"
    body = f.text.encode("ascii")
    boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url).put_object(
        Bucket=s.bucket, Key=key, Body=body, ContentType="text/csv", ServerSideEncryption="AES256")
    store.file_batch(batch, day.isoformat(), PAYOUT_CURRENCY, key, f.count, f.total, f.hash_total,
                     hashlib.sha256(body).hexdigest())
    log.info("withdrawal_batch_filed", batch_id=batch, s3_key=key, count=f.count, total=f.total,
             hash_total=f.hash_total)
    return key


# ---- ops actions -----------------------------------------------------------------------------
def batch_paid(batch_id: str) -> dict:
    """The bank paid the batch: each withdrawal moves reserved -> payout clearing -> settlement bank, once."""
    from chalicelib.store import withdrawals as store
    from chalicelib.store.unit import Conflict

    summary = {"action": "withdrawal_batch_paid", "batch_id": batch_id, "paid": 0, "paid_amount": 0,
               "already_paid": 0, "failed_before": 0, "batch_marked_paid": False}
    if not batch_id or store.get_batch(str(batch_id)) is None:
        summary["error"] = "no such batch"
        log.warning("withdrawal_batch_paid_summary", **summary)
        return summary
    for w in store.of_batch(batch_id):
        if w.status is not WithdrawalStatus.FILED:
            summary["already_paid" if w.status is WithdrawalStatus.PAID else "failed_before"] += 1
            continue
        sent, paid = funds.paid_postings(w)
        reserved = ledger.merchant_account(w.merchant_id, w.currency, "reserved")
        try:
            (store.FundsUnit().move_withdrawal(w.move(WithdrawalStatus.PAID, clock.now()), WithdrawalStatus.FILED)
             .post(sent, floors={reserved: 0}).post(paid).commit())
        except Conflict:
            now = store.get(w.id)
            summary["already_paid" if now and now.status is WithdrawalStatus.PAID else "failed_before"] += 1
            continue
        summary["paid"] += 1
        summary["paid_amount"] += w.amount
    summary["batch_marked_paid"] = store.mark_batch_paid(batch_id)
    log.info("withdrawal_batch_paid_summary", **summary)
    return summary


def failed(withdrawal_id: str, reason: str) -> dict:
    """The credit did not happen: the reservation goes back to available (a reversing posting), once."""
    from chalicelib.store import withdrawals as store
    from chalicelib.store.unit import Conflict

    reason = (str(reason or "").strip() or "unspecified")[:200]
    w = store.get(str(withdrawal_id or ""))
    out = {"action": "withdrawal_failed", "withdrawal_id": withdrawal_id}
    if w is None:
        out["error"] = "no such withdrawal"
    elif w.status is WithdrawalStatus.FAILED:
        out["result"] = "already_failed"
    elif w.status is not WithdrawalStatus.FILED:
        out["error"] = f"withdrawal is {w.status.value}; a bank return after payment is booked separately"
    else:
        reserved = ledger.merchant_account(w.merchant_id, w.currency, "reserved")
        try:
            (store.FundsUnit().move_withdrawal(w.move(WithdrawalStatus.FAILED, clock.now(), reason),
                                               WithdrawalStatus.FILED)
             .post(funds.reversal_posting(w, reason), floors={reserved: 0}).commit())
            out["result"] = "reversed"
            out["amount"] = w.amount
        except Conflict:
            now = store.get(w.id)
            out["result"] = f"already_{now.status.value}" if now else "conflict"
    log.info("withdrawal_failed_summary", **out)
    return out
