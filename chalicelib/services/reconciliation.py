"""Reconciliation: feed the pure matcher (domain.reconciliation) and store what it finds; report; resolve.

One statement file -> one run: its lines stream through the channel's parser into the matcher and
out to the standard records table in batches; Kauri's side of the bill date comes from the
recon_by_day indexes plus the suspense pool. Only a whole file is reconciled: a file that breaks
half way stores no findings and moves nothing in or out of suspense.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterable

from chalicelib import channels, clock, log, settings
from chalicelib.domain import ledger
from chalicelib.domain import reconciliation as recon
from chalicelib.store import reconciliation as store

ACTIONS = ("apply", "refund", "write_off", "accept")
_ACTIONS_FOR = {
    "apply": (recon.STATUS_DIFFERS,),
    "refund": (recon.CHANNEL_ONLY, recon.STATUS_DIFFERS),
    "write_off": (recon.CHANNEL_ONLY, recon.KAURI_ONLY, recon.AMOUNT_DIFFERS, recon.SETTLEMENT_SHORT),
    "accept": recon.KINDS,
}
MAX_REASON = 500


def _fee_bps(channel: str) -> int | None:
    return settings.get().recon_fee_bps.get(channel)


def _noon_beijing(bill_date: str) -> datetime:
    return datetime.fromisoformat(f"{bill_date}T12:00:00+08:00")


def _shown_rate(channel: str, bill_date: str) -> str | None:
    if channel == "payease":
        return None  # PayEase is checked against each payment's locked quote instead
    return store.shown_rate(channel, "NZD", _noon_beijing(bill_date))


def run_file(channel: str, bill_date: str, kind: str, key: str, version: str, raw_lines: Iterable[bytes]) -> dict:
    from chalicelib.services import statements

    run_key = f"file#{key}#{version}"
    if not store.claim_run(run_key, {"channel": channel, "bill_date": bill_date, "kind": kind}):
        previous = store.get_run(run_key)
        log.info("statement_already_processed", key=key, status=previous.status if previous else None)
        return {"key": key, "status": "already_processed", "run": previous.detail if previous else None}
    started = clock.ticks()
    tail = statements.LineTail(raw_lines)
    summary = {"channel": channel, "bill_date": bill_date, "kind": kind, "key": key, "version": version}
    try:
        if kind == "settlement":
            result = _settle(channel, bill_date, key, tail)
        else:
            result = _reconcile(channel, bill_date, key, tail)
    except statements.StatementRefused as exc:
        summary.update(status="refused", reason=str(exc), duration_ms=clock.ms_since(started))
        store.put_run(run_key, "refused", summary)
        log.warning("statement_refused", key=key, reason=str(exc))
        return summary
    except _FileBroken as exc:
        summary.update(status=exc.status, line_no=exc.line_no, reason=exc.reason, records=exc.records,
                       duration_ms=clock.ms_since(started))
        store.put_run(run_key, exc.status, summary)
        log.warning("statement_" + exc.status, key=key, line_no=exc.line_no, reason=exc.reason)
        return summary
    except Exception as exc:
        # Ours, not the file's (DynamoDB, S3): free the claim and fail the invocation, so SQS retries it.
        store.put_run(run_key, "error", {**summary, "status": "error", "error": type(exc).__name__})
        log.error("statement_error", key=key, error=type(exc).__name__)
        raise
    summary.update(status="done", duration_ms=clock.ms_since(started), **result)
    store.put_run(run_key, "done", summary)
    store.put_run(f"{'day' if kind == 'transactions' else 'settlement'}#{channel}#{bill_date}", "done", summary)
    log.info("statement_reconciled", key=key, matched=result.get("matched"), found=result.get("discrepancies"))
    return summary


class _FileBroken(Exception):
    def __init__(self, status: str, line_no: int, reason: str, records: int):
        super().__init__(reason)
        self.status, self.line_no, self.reason, self.records = status, line_no, reason, records


def _broken(channel: str, exc: ValueError, n: int) -> Exception:
    """A parse error as what it means: a file of another format (refused) or a bad line (failed)."""
    from chalicelib.services import statements

    line_no = getattr(exc, "line_no", 0)
    reason = getattr(exc, "reason", None) or str(exc)
    if n == 0 and (line_no <= 1 or "header" in str(exc)):  # the file's first line is not this channel's
        return statements.StatementRefused(f"not a {channel} statement: {exc}")
    return _FileBroken("failed", line_no, reason, n)


def _lines_of(channel: str, kind: str, tail, settled_on: str | None = None) -> Iterable[recon.Line]:
    """The parser's records as Lines; a parse error becomes _FileBroken with its line number.

    `settled_on` (a settlement file): every line must have been settled on that Beijing date, the date
    the file sits under and its batch is named by; a line settled on another date (the file put under
    the wrong date, rows sent again) or never settled (a transactions file) refuses the whole file
    before anything is booked, so no line ever moves the receivable twice."""
    from chalicelib.services import statements

    n = 0
    try:
        for record in statements.records(channel, kind, tail):
            n += 1
            if settled_on is not None:
                _check_settled_on(record, settled_on)
            yield recon.line_of(record)
    except statements.StatementRefused:
        raise
    except ValueError as exc:
        raise _broken(channel, exc, n) from None
    why = statements.truncation(channel, tail, n)
    if why:
        raise _FileBroken("failed", 0, why, n)


def _check_settled_on(record: dict, settled_on: str) -> None:
    from chalicelib.services import statements

    at, no = record.get("settlement_time"), record.get("raw_line_no") or 0
    if not at:
        raise statements.StatementRefused(f"line {no} has no settlement time: not a settlement file")
    day = clock.bill_day(datetime.fromisoformat(at.replace("Z", "+00:00")))
    if day != settled_on:
        raise statements.StatementRefused(f"line {no} was settled on {day}, not on {settled_on} (the date the "
                                          "file sits under): put it under its own settlement date")


def feed_file(channel: str, matcher: recon.Matcher, tail, keep=None) -> None:
    """Every line of a transactions file through the matcher, streaming. Where the channel offers a fast
    reader, a line whose text agrees exactly with Kauri's record is matched from its text (the reader
    runs recon.TextMatch's test in its own loop); every other line is parsed in full and fed as a Line.
    `keep(line, outcome)` sees each line (to store it): a line matched from its text is read in full
    by the reader's `line` first."""
    from chalicelib.services import statements

    fast = statements.fast_rows(channel, tail.lines)  # reads the raw source itself: no layer per line
    if fast is None:
        for line in _lines_of(channel, "transactions", tail):
            outcome = matcher.feed(line)
            if keep is not None:
                keep(line, outcome)
        return

    def slow(line_no: int, text) -> None:
        record = fast.full(line_no, text)
        if record is None:
            return  # a line the full parse skips (blank, a comment)
        line = recon.line_of(record)
        outcome = matcher.feed(line)
        if keep is not None:
            keep(line, outcome)

    def kept(exp: recon.Expected, line_no: int, text) -> None:
        channel_no, fee, at, settlement, rate = fast.line(exp, line_no, text)
        keep(recon.Line(exp.kind, exp.our_no, channel_no, exp.status, exp.amount, exp.currency, fee, at, line_no,
                        settlement, rate), "matched")

    tm = matcher.text_match(getattr(fast, "status_words", None), kept if keep is not None else None)
    try:
        fast.match(tm, slow)
    except ValueError as exc:
        matcher.absorb(tm)
        raise _broken(channel, exc, matcher.outcome.lines) from None
    matcher.absorb(tm)
    n = matcher.outcome.lines
    why = statements.truncation(channel, fast, n)
    if why:
        raise _FileBroken("failed", 0, why, n)


def _reconcile(channel: str, bill_date: str, key: str, tail) -> dict:
    fee_bps = _fee_bps(channel)
    shown = _shown_rate(channel, bill_date)
    expected = store.expected_for_day(channel, bill_date, fee_bps, shown)
    waiting = store.suspense_of(channel)
    for k, e in waiting.items():
        expected.setdefault(k, e)
    matcher = recon.Matcher(channel, bill_date, expected, settings.get().fx_variance_threshold_bps)
    writer = store.RecordWriter(channel, bill_date, key)

    def keep(line: recon.Line, outcome: str) -> None:
        if outcome != "unknown":
            writer.add(line, outcome)

    try:
        feed_file(channel, matcher, tail, keep)
        outcome = matcher.finish()
        # Keys the day's index does not hold: pending, closed, another day's, or truly unknown to Kauri.
        for line in outcome.unknown:
            exp = store.expected_by_key(channel, line.kind, line.our_no, bill_date, fee_bps, shown)
            found = recon.compare(channel, bill_date, line, exp)
            if found:
                outcome.discrepancies.extend(found)
                writer.add(line, found[0].kind)
            else:
                outcome.matched += 1
                outcome.matched_amount[line.currency] = outcome.matched_amount.get(line.currency, 0) + (
                    -line.amount if line.kind == recon.REFUND else line.amount)
                writer.add(line, "matched")
    finally:
        writer.close()
    new = sum(store.save_finding(d) for d in outcome.discrepancies)
    # Out of the pool: whatever this bill listed, and whatever just became only_at_kauri.
    still_waiting = {recon.key_of(e.kind, e.our_no) for e in outcome.suspense}
    store.release_from_suspense(channel, [(e.kind, e.our_no) for k, e in waiting.items() if k not in still_waiting])
    held = store.hold_in_suspense(channel, outcome.suspense)
    by_kind: dict[str, int] = {}
    totals: dict[str, dict[str, int]] = {}
    for d in outcome.discrepancies:
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
        amount = d.detail.get("channel_amount", d.detail.get("kauri_amount", 0))
        t = totals.setdefault(d.kind, {})
        t[d.currency] = t.get(d.currency, 0) + int(amount or 0)
    return {"lines": outcome.lines, "records": writer.written, "matched": outcome.matched,
            "matched_amount": outcome.matched_amount, "discrepancies": len(outcome.discrepancies),
            "new_discrepancies": new, "by_kind": by_kind, "totals_by_kind": totals,
            "in_suspense": len(outcome.suspense), "newly_in_suspense": held, "fx_variance": outcome.fx.as_dict()}


def _settle(channel: str, bill_date: str, key: str, tail) -> dict:
    """A settlement file (Alipay's liquidation file): its lines summed per batch, then booked by the one
    settlement path every channel shares (services.settlement.book)."""
    from chalicelib.services import settlement

    batches = list(recon.settlement_batches(_lines_of(channel, "settlement", tail, bill_date), lambda _l: bill_date))
    return settlement.book(channel, bill_date, ((b, {}) for b in batches), key)


def write_off_account(currency: str) -> str:
    return f"P:recon_write_off:{currency}"


# ---- report ----------------------------------------------------------------------------------------

def report(event: dict) -> dict:
    """{"channel": ..., "bill_date": "YYYY-MM-DD"} -> the day's run summary and its discrepancies."""
    if not isinstance(event, dict):
        return {"error": "the event must be a JSON object"}
    channel, bill_date = event.get("channel"), str(event.get("bill_date") or "")
    if channel not in channels.names():
        return {"error": f"channel must be one of {list(channels.names())}"}
    try:
        date.fromisoformat(bill_date)
    except ValueError:
        return {"error": "bill_date must be YYYY-MM-DD"}
    run = store.get_run(f"day#{channel}#{bill_date}")
    settled = store.get_run(f"settlement#{channel}#{bill_date}")
    findings = [store.finding_view(m) for m in store.findings_of_day(channel, bill_date)]
    return {"channel": channel, "bill_date": bill_date,
            "status": run.status if run else "not_reconciled", "summary": run.detail if run else None,
            "settlement": settled.detail if settled else None,
            "open": sum(1 for f in findings if f["status"] == "open"), "discrepancies": findings}


# ---- resolve -------------------------------------------------------------------------------------

class ResolveError(ValueError):
    pass


def resolve_job(event: dict) -> dict:
    if not isinstance(event, dict):
        return {"error": "the event must be a JSON object"}
    try:
        return resolve(str(event.get("discrepancy_id") or ""), str(event.get("action") or ""),
                       str(event.get("reason") or ""), str(event.get("by") or "ops"))
    except ResolveError as exc:
        return {"error": str(exc)}


def resolve(discrepancy_id: str, action: str, reason: str, by: str = "ops") -> dict:
    """One action on one finding, exactly once: the finding moves open -> resolved in the same
    transaction as the ledger posting it causes; a repeat answers what the first did."""
    from chalicelib.store.ops import record_once

    if action not in ACTIONS:
        raise ResolveError(f"action must be one of {list(ACTIONS)}")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ResolveError(f"reason is required (at most {MAX_REASON} characters)")
    found = store.get_finding(discrepancy_id) if discrepancy_id.startswith("dsc_") and len(discrepancy_id) < 64 \
        else None
    if found is None:
        raise ResolveError("no such discrepancy")
    if found.status != "open":
        return {"discrepancy": store.finding_view(found), "already_resolved": True}
    if found.kind not in _ACTIONS_FOR[action]:
        raise ResolveError(f"{action} does not apply to {found.kind}")
    effect = {"apply": _apply, "refund": _refund, "write_off": _write_off, "accept": _accept}[action](found)
    resolution = {"action": action, "reason": reason[:MAX_REASON], "by": by[:64], "at": clock.iso(clock.now()),
                  "effect": effect}
    if not effect.get("committed"):
        _mark_resolved(found, resolution)
    record_once(f"recon:{discrepancy_id}:{action}", "recon_resolution", found.channel, found.ref,
                {"discrepancy_id": discrepancy_id, **resolution})
    latest = store.get_finding(discrepancy_id)
    log.info("discrepancy_resolved", discrepancy_id=discrepancy_id, action=action)
    return {"discrepancy": store.finding_view(latest), "already_resolved": latest.resolution != resolution
            and latest.resolution is not None and latest.resolution.get("at") != resolution["at"]}


def _open_condition():
    return store.DiscrepancyModel.status == "open"


def _resolve_actions(resolution: dict) -> list:
    return [store.DiscrepancyModel.status.set("resolved"), store.DiscrepancyModel.resolution.set(resolution)]


def _mark_resolved(found, resolution: dict) -> None:
    from chalicelib.store.unit import Conflict, Unit

    try:
        Unit().update_if(store.DiscrepancyModel(found.discrepancy_id), _resolve_actions(resolution),
                         _open_condition()).commit()
    except Conflict:
        pass  # someone resolved it first: theirs stands


def _apply(found) -> dict:
    """The channel took the money and Kauri missed it: apply it through the callback path."""
    from chalicelib.channels.base import ChannelPayment, ChannelStatus
    from chalicelib.money import Money
    from chalicelib.services import callbacks
    from chalicelib.services.payments import payment_id_of
    from chalicelib.store import payments as payment_store

    if found.record_type != recon.PAYMENT or found.detail.get("channel_status") != recon.SUCCEEDED:
        raise ResolveError("apply needs a payment the channel reports as succeeded")
    record = store.get_record(found.channel, recon.PAYMENT, found.our_no)
    payment = payment_store.get(payment_id_of(found.our_no) or "")
    if record is None or payment is None:
        raise ResolveError("the channel's record or the payment is gone")
    paid_at = clock.parse_iso(record.channel_time) if record.channel_time else None
    cp = ChannelPayment(found.our_no, ChannelStatus.PAID, Money(int(record.amount), record.currency),
                        channel_transaction_id=record.channel_no, paid_at=paid_at,
                        raw={"source": "reconciliation", "discrepancy_id": found.discrepancy_id})
    problem = callbacks.mismatch(payment, cp)
    if problem:
        raise ResolveError(f"the channel's record does not fit the payment: {problem}")
    applied = callbacks.apply_channel_payment(payment, cp, source="reconciliation")
    after = payment_store.get(payment.id)
    if not applied or after.status.value != "succeeded":
        raise ResolveError(f"the payment could not be applied (it is {after.status.value})")
    return {"payment_id": payment.id, "status": after.status.value}


def _refund(found) -> dict:
    """Money the channel holds that Kauri will not keep: return it to the shopper at the channel."""
    from chalicelib.channels.base import MerchantChannelConfig, OrderRef, RefundRequest
    from chalicelib.money import Money
    from chalicelib.services.payments import payment_id_of
    from chalicelib.store import payments as payment_store

    if found.record_type != recon.PAYMENT or found.detail.get("channel_status") != recon.SUCCEEDED:
        raise ResolveError("refund needs a payment the channel reports as succeeded")
    payment = payment_store.get(payment_id_of(found.our_no) or "")
    if payment is not None and payment.status.value == "succeeded":
        raise ResolveError("Kauri holds this payment: refund it through the refunds API")
    amount = Money(int(found.detail["channel_amount"]), found.detail["currency"])
    refund_no = store.recon_refund_no(found.discrepancy_id)  # a retry is the same refund at the channel
    merchant = MerchantChannelConfig(dict(payment.channel_merchant) if payment else {})
    answer = channels.get(found.channel).refund(RefundRequest(
        refund_id=refund_no, channel_refund_id=refund_no, payment=OrderRef(found.our_no, merchant, found.channel_no),
        total=amount, amount=amount, reason="reconciliation"))
    return {"channel_refund_id": refund_no, "channel_status": answer.status.value}


def _write_off(found) -> dict:
    """Book the difference between the channel's money and our books, in one transaction with the
    resolution: Dr/Cr channel receivable against the write-off account."""
    from chalicelib.store.unit import Conflict, Unit

    amount = int(found.receivable_adjustment or 0)
    currency = found.currency
    if not amount or not currency:
        raise ResolveError("nothing to write off")
    posting = ledger.Posting(f"recon_write_off:{found.discrepancy_id}", "recon_write_off",
                             (ledger.Leg(ledger.receivable_account(found.channel, currency), amount, currency),
                              ledger.Leg(write_off_account(currency), -amount, currency)),
                             found.ref or found.our_no, found.merchant_id or "kauri", memo=found.kind)
    effect = {"posting": posting.id, "receivable_adjustment": amount, "currency": currency, "committed": True}
    resolution_base = {"action": "write_off", "at": clock.iso(clock.now()), "effect": effect}
    try:
        Unit().update_if(store.DiscrepancyModel(found.discrepancy_id),
                         _resolve_actions(resolution_base), _open_condition()).post(posting).commit()
    except Conflict:
        raise ResolveError("resolved meanwhile") from None
    return effect


def _accept(found) -> dict:
    return {"accepted": True}


# ---- release gate and the balance view ---------------------------------------------------------

def payment_cleared(payment) -> bool:
    """Release gate (balances.register_recon_check): the channel's bill listed this payment and it matched,
    in a file that was read whole."""
    record = store.get_record(payment.channel, recon.PAYMENT, payment.channel_order_id)
    if record is None or record.outcome != "matched":
        return False
    day = store.get_run(f"day#{payment.channel}#{record.bill_date}")
    return day is not None and day.status == "done"


def held_for_reconciliation(merchant_id: str, livemode: bool, currency: str) -> int:
    """Net pending funds of paid, unreleased payments whose bill has not matched them yet."""
    from chalicelib.store import payments as payment_store
    from chalicelib.store import withdrawals as wstore

    held = 0
    for payment_id, _paid_at in wstore.unreleased_of(merchant_id):  # sparse index: re-read each payment
        p = payment_store.get(payment_id)
        if p is None or p.released or p.livemode != livemode or p.amount.currency != currency:
            continue
        if not payment_cleared(p):
            held += p.own_pending
    return held


def install() -> None:
    """Gate release_funds on reconciliation, unless another check is registered already."""
    from chalicelib.services import balances

    if balances._recon_check is None:
        balances.register_recon_check(payment_cleared)


def balance_view(merchant, livemode: bool) -> dict:
    """GET /v1/balance: the buckets, and per currency how much of pending is held for reconciliation
    (only while release waits on it: KAURI_RELEASE_REQUIRES_RECON)."""
    from chalicelib.services import balances

    view = balances.balance_of(merchant, livemode)
    gate = settings.get().release_requires_recon
    for row in view["balances"]:
        row["held_for_reconciliation"] = held_for_reconciliation(merchant.id, livemode, row["currency"]) \
            if gate else 0
    return view
