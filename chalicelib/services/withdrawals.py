"""Auto-withdrawals: reserve each merchant's available balance, file one bank batch, settle or reverse it."""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone

from chalicelib import clock, ids, log, settings
from chalicelib.clock import iso
from chalicelib.domain import bank_account, bank_files, calendar_nz, ledger
from chalicelib.domain import withdrawal as funds
from chalicelib.domain.merchant import Merchant
from chalicelib.domain.withdrawal import Withdrawal, WithdrawalStatus

PAYOUT_CURRENCY = "NZD"   # the NZ direct-credit file pays NZD accounts only
MAX_ATTEMPTS = 3
MAX_ID_ATTEMPTS = 5     # derived ids tried before giving up on a merchant-day (a clash is ~2^-46)


def view(w: Withdrawal) -> dict:
    return {
        "id": w.id, "object": "withdrawal", "amount": w.amount, "currency": w.currency, "status": w.status.value,
        "bank_account_last4": w.bank_account[9:13], "period": w.period, "created": iso(w.created_at),
        "settled_at": iso(w.settled_at) if w.settled_at else None, "failure_reason": w.failure_reason,
    }


def list_for(merchant: Merchant, query: dict) -> dict:
    """A page of the merchant's withdrawals, newest first (chalicelib.api.pages)."""
    from chalicelib.api import pages
    from chalicelib.store import withdrawals as store

    limit, after = pages.params(query)
    found = store.page_of_merchant(merchant.id, limit, after)
    if found is None:
        raise pages.invalid("parameter_invalid", "starting_after must be the id of one of your withdrawals",
                            "starting_after")
    return pages.listing([view(w) for w in found[0]], found[1])


# ---- the daily job ---------------------------------------------------------------------------
def job_day(event: dict, now: datetime) -> tuple[date | None, str | None]:
    """The NZ date an auto_withdraw invocation is for, or None and why it should do nothing.

    EventBridge cron is UTC only and Auckland moves between +12 and +13, so the rule fires every hour
    (app.py) and only the firing that is the configured local hour in Auckland acts; the other 23
    return at once. Any hour works in both NZST and NZDT. A hand-run event ({"date": ...}) always acts.
    """
    if event.get("detail-type") == "Scheduled Event":
        fired = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) \
            if event.get("time") else now
        local = calendar_nz.local_time(fired)
        if local.hour != settings.get().withdrawal_local_hour:
            return None, f"local time {local:%H:%M} is not {settings.get().withdrawal_local_hour}:00"
        if not calendar_nz.is_business_day(local.date()):
            # No bank run today: the money stays available and the next business day's sweep takes it.
            return None, f"{local.date().isoformat()} is not an NZ business day"
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


def payout_settings_problem() -> str | None:
    """What is wrong with the settings the bank file needs, checked before any funds are reserved."""
    s = settings.get()
    try:
        source = bank_account.validate(s.payout_source_account or "")
    except bank_account.InvalidBankAccount as exc:
        return f"KAURI_PAYOUT_SOURCE_ACCOUNT: {exc}"
    if source[13] != "0":
        return "KAURI_PAYOUT_SOURCE_ACCOUNT: the bank file header takes a two-digit suffix"
    if not bank_files.field(s.payout_subscriber_name, 20):
        return "KAURI_PAYOUT_SUBSCRIBER_NAME is empty"
    if not s.bucket:
        return "KAURI_BUCKET is empty"
    return None


def auto_withdraw(day: date, merchant_id: str | None = None, dry_run: bool = False) -> dict:
    """Reserve each merchant's available balance into the batch, then file it.

    The day's run uses the day's batch; a hand run for one merchant gets a batch of its own, so it
    never closes the day's batch on everyone else. Every run that may write first re-files any earlier
    batch left open (funds reserved, no file), e.g. after a crash or an S3 failure.
    """
    from chalicelib.store import merchants as merchant_store
    from chalicelib.store import withdrawals as store

    summary = {"job": "auto_withdraw", "date": day.isoformat(), "dry_run": dry_run, "batch_id": None,
               "merchants": 0, "withdrawn": 0, "withdrawn_amount": 0, "already_withdrawn": 0, "below_minimum": 0,
               "no_bank_account": 0, "other_currency": 0, "open_withdrawal": 0, "batch_closed": 0, "errors": 0,
               "file": None, "refiled": []}
    if merchant_id is not None and not ids.looks_like(merchant_id, "mch"):
        summary["error"] = "merchant_id is not a merchant id"
        log.warning("auto_withdraw_summary", **summary)
        return summary
    batch = funds.batch_id(day, PAYOUT_CURRENCY, merchant_id)
    summary["batch_id"] = batch
    problem = payout_settings_problem()
    if problem:
        # Nothing is reserved: a reservation that cannot be filed would only strand the merchant's money.
        summary["error"] = f"payout settings: {problem}"
        log.error("auto_withdraw_summary", **summary)
        return summary
    if not dry_run:
        summary["refiled"] = _refile_unfiled_batches(day)
    existing = store.get_batch(batch)
    if existing is not None and existing.status == "filing" and not dry_run:
        _file_batch(batch)              # an earlier run of this batch died while filing: finish it
        existing = store.get_batch(batch)
    if existing is not None and existing.status != "open":
        # The file may already be with the bank: nothing joins it now (a new merchant waits for tomorrow).
        summary.update(skipped=f"batch already {existing.status}", file=existing.s3_key,
                       withdrawn=int(existing.count or 0), withdrawn_amount=int(existing.total or 0))
        log.info("auto_withdraw_summary", **summary)
        return summary
    mids = [merchant_id] if merchant_id else store.active_merchant_ids()
    for mid in mids:
        merchant = merchant_store.get(mid)
        if merchant is None or not merchant.has_money_flows:
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
        summary["file"] = _file_batch(batch)
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
    if store.of_period(merchant.id, day) is not None:
        return "already_withdrawn", 0
    if any(w.period != day.isoformat() for w in store.open_of_merchant(merchant.id)):
        return "open_withdrawal", 0
    available_account = ledger.merchant_account(merchant.id, PAYOUT_CURRENCY, "available")
    attempt = 0        # which derived id (a clash with another merchant-day's id moves to the next)
    conflicts = 0
    while conflicts < MAX_ATTEMPTS and attempt < MAX_ID_ATTEMPTS:
        available = balance_store.get(available_account)
        if available <= 0 or available < merchant.min_payout:
            return "below_minimum", 0
        if dry_run:
            return "withdrawn", available
        wid = funds.withdrawal_id(merchant.id, day, attempt)
        w = Withdrawal(id=wid, merchant_id=merchant.id, amount=available, currency=PAYOUT_CURRENCY,
                       bank_account=bank_account.validate(merchant.bank_account), batch_id=batch,
                       period=day.isoformat(), status=WithdrawalStatus.FILED, created_at=clock.now())
        try:
            (store.FundsUnit().create_withdrawal(w)
             .post(funds.withdrawal_posting(w), floors={available_account: 0}).commit())
        except Conflict:
            if store.of_period(merchant.id, day) is not None:
                return "already_withdrawn", 0     # another run got there first
            taken = store.get(wid)
            if taken is not None and taken.merchant_id == merchant.id and taken.period == w.period:
                return "already_withdrawn", 0     # written before merchant#day keys existed
            if taken is not None:
                log.warning("withdrawal_id_clash", withdrawal_id=wid, merchant_id=merchant.id, period=w.period)
                attempt += 1
                continue
            now = store.get_batch(batch)
            if now is not None and now.status != "open":
                return "batch_closed", 0          # filed meanwhile by another run: tomorrow's batch
            conflicts += 1
            continue  # a refund took from available meanwhile: read it again
        log.info("withdrawal_created", withdrawal_id=wid, merchant_id=merchant.id, amount=available, batch_id=batch)
        return "withdrawn", available
    raise RuntimeError("withdrawal kept conflicting")


class BatchMismatch(Exception):
    """A batch record and the withdrawals it names disagree: stop, ops must look."""


def _check_members(batch_id: str, ids_: list[str], count: int, total: int) -> list[Withdrawal]:
    """Consistent reads of exactly `ids_`; every one must exist, belong to the batch and add up."""
    from chalicelib.store import withdrawals as store

    found = store.get_many(ids_)
    problems = []
    if len(found) != len(ids_) or len(ids_) != count:
        problems.append(f"{len(found)} of {len(ids_)} withdrawals found, record says {count}")
    if sum(w.amount for w in found) != total:
        problems.append(f"amounts add to {sum(w.amount for w in found)}, record says {total}")
    strays = [w.id for w in found if w.batch_id != batch_id]
    if strays:
        problems.append(f"{len(strays)} belong to another batch")
    if problems:
        log.error("withdrawal_batch_mismatch", batch_id=batch_id, problems=problems)
        raise BatchMismatch("; ".join(problems))
    return found


def _refile_unfiled_batches(day: date) -> list[str]:
    """File every batch of an earlier day that has funds reserved but no file closed on it."""
    from chalicelib.store import withdrawals as store

    out = []
    for batch in store.unfiled_batches(day.isoformat()):
        log.error("withdrawal_batch_unfiled", batch_id=batch, refiling_on=day.isoformat())
        try:
            key = _file_batch(batch)
        except Exception as exc:  # this run's own batch still goes ahead; the alarm has fired
            log.error("withdrawal_batch_refile_failed", batch_id=batch, error=type(exc).__name__)
            continue
        out.append(batch)
        log.error("withdrawal_batch_refiled", batch_id=batch, s3_key=key)
    return out


def _file_batch(batch: str) -> str | None:
    """Write the batch's bank file from consistent reads of the withdrawals that joined it, then close it.

    The batch record's `joined` set is written in the same transaction as each reservation, so nothing
    reserved into the batch can be missing. Filing first freezes it (open -> filing: nothing joins any
    more), so every run that writes the file writes the same members; closing (filing -> filed) keeps
    the exact member ids, count and total of the file, and batch_paid pays those and nothing else. A run
    that dies before the close leaves it filing: the next run writes the same key again and closes it.
    """
    import boto3

    from chalicelib.store import merchants as merchant_store
    from chalicelib.store import withdrawals as store

    for _ in range(MAX_ATTEMPTS):
        record = store.get_batch(batch)
        if record is None:
            return None
        if record.status in ("filed", "paid"):
            return record.s3_key
        if record.status == "open" and not store.freeze_batch(batch, int(record.joined_count or 0)):
            continue  # one more withdrawal joined (or another run froze it) meanwhile: read it again
        joined = _check_members(batch, sorted(record.joined or ()), int(record.joined_count or 0),
                                int(record.joined_total or 0))
        members = [w for w in joined if w.status is WithdrawalStatus.FILED]   # failed before filing: not paid
        if not members:
            store.file_batch(batch, None, [], 0, 0, None, None)
            log.info("withdrawal_batch_empty", batch_id=batch, joined=len(joined))
            return None
        s = settings.get()
        names = {}
        for w in members:
            m = merchant_store.get(w.merchant_id)
            names[w.merchant_id] = m.name if m else ""
        created = calendar_nz.local_date(clock.now())
        day = date.fromisoformat(record.period)
        f = bank_files.render([bank_files.Credit(w.bank_account, w.amount, names[w.merchant_id], w.bank_reference)
                               for w in members],
                              source_account=bank_account.validate(s.payout_source_account),
                              subscriber_name=s.payout_subscriber_name,
                              due=calendar_nz.business_day_on_or_after(max(day, created)), created=created)
        if f.count != len(members) or f.total != sum(w.amount for w in members):
            raise BatchMismatch("the rendered file does not match its members")
        key = f"withdrawals/{record.period}/batch-{batch}.csv"
        body = f.text.encode("ascii")
        boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url).put_object(
            Bucket=s.bucket, Key=key, Body=body, ContentType="text/csv", ServerSideEncryption="AES256")
        if store.file_batch(batch, key, [w.id for w in members], f.count, f.total, f.hash_total,
                            hashlib.sha256(body).hexdigest()):
            log.info("withdrawal_batch_filed", batch_id=batch, s3_key=key, count=f.count, total=f.total,
                     hash_total=f.hash_total)
        return key
    raise RuntimeError("batch kept changing while being filed")


# ---- ops actions -----------------------------------------------------------------------------
def batch_paid(batch_id: str) -> dict:
    """The bank paid the batch: each withdrawal in its file moves reserved -> payout clearing -> settlement
    bank, once. Exactly the file's members, checked against the record's count and total first."""
    from chalicelib.store import withdrawals as store
    from chalicelib.store.unit import Conflict

    summary = {"action": "withdrawal_batch_paid", "batch_id": batch_id, "paid": 0, "paid_amount": 0,
               "already_paid": 0, "failed_before": 0, "batch_marked_paid": False}
    record = store.get_batch(str(batch_id)) if batch_id else None
    if record is None:
        summary["error"] = "no such batch"
        log.warning("withdrawal_batch_paid_summary", **summary)
        return summary
    if record.status not in ("filed", "paid"):
        summary["error"] = f"batch is {record.status}: its file is not closed yet"
        log.warning("withdrawal_batch_paid_summary", **summary)
        return summary
    if record.members is None:
        summary["error"] = "batch record has no member list (filed before they were kept): not paid automatically"
        log.error("withdrawal_batch_paid_summary", **summary)
        return summary
    try:
        members = _check_members(record.batch_id, list(record.members), int(record.count or 0),
                                 int(record.total or 0))
    except BatchMismatch as exc:
        summary["error"] = f"batch members do not match its file: {exc}"
        log.error("withdrawal_batch_paid_summary", **summary)
        return summary
    for w in members:
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
    """The credit did not happen: the reservation goes back to available (a reversing posting), once, in
    one transaction with a check of its batch. Out of an open batch (the file is not written yet);
    refused while the batch is filing (the file being written may pay it); after filing only as a bank
    return of a withdrawal the file lists (the bank did not credit it)."""
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
        batch = store.get_batch(w.batch_id)
        why_not = _why_not_failable(w, batch)
        if why_not:
            out["error"] = why_not
        else:
            reserved = ledger.merchant_account(w.merchant_id, w.currency, "reserved")
            try:
                (store.FundsUnit().move_withdrawal(w.move(WithdrawalStatus.FAILED, clock.now(), reason),
                                                   WithdrawalStatus.FILED)
                 .batch_unchanged_for_failure(w.batch_id, w.id, batch.status)
                 .post(funds.reversal_posting(w, reason), floors={reserved: 0}).commit())
                out["result"] = "reversed"
                out["amount"] = w.amount
                out["as"] = "before_filing" if batch.status == "open" else "bank_return"
            except Conflict:
                now = store.get(w.id)
                if now is not None and now.status is not WithdrawalStatus.FILED:
                    out["result"] = f"already_{now.status.value}"
                else:
                    out["error"] = _why_not_failable(w, store.get_batch(w.batch_id)) or "conflict: try again"
    log.info("withdrawal_failed_summary", **out)
    return out


def _why_not_failable(w: Withdrawal, batch) -> str | None:
    if batch is None:
        return "the withdrawal's batch is missing: ops must look"
    if batch.status == "open":
        return None
    if batch.status == "filing":
        return "its batch is being filed (the file may pay it): fail it after filing, as a bank return"
    if w.id not in (batch.members or []):
        return f"its batch is {batch.status} and its file does not list this withdrawal"
    return None
