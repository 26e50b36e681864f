"""Settlement: what a channel paid into Kauri's bank, booked receivable -> bank once per batch.

One booking path for every channel (`book`): Alipay's batches come from its liquidation file
(services.reconciliation, when the file lands), WeChat's from /pay/settlementquery (`settle_wechat`,
run by the download_statements job). Per batch, in ONE transaction: the posting
`settlement:{channel}:{batch}:{currency}` (Dr bank what was paid, Dr channel fees what the channel
kept, Cr the channel receivable by both; its id is the batch's conditional write, so a batch is booked
once ever) and, when the channel paid less (or more) than it owes, the batch's `settlement_short`
finding. The short part stays in the receivable until a person writes it off. The posting's memo names
the settlement date it was booked for: a batch number the channel uses again on another settlement date
is another payout, never taken as booked already, and is a finding (`#reused`) for a person.

WeChat's difference waits (`recheck`): Kauri's side of a WeChat batch is listed by the recon_by_day
indexes, which are eventually consistent, so a payment booked moments ago (late, by the chase) may not
be listed yet. The booking is the same (WeChat's amounts, once), but a difference goes into the suspense
pool (`settlement#wechat`, with the batch's figures) in the booking's transaction, and becomes the
batch's finding only if a run at least `settlement_recheck_minutes` after it was first seen still finds
it (`recheck_wechat`, run by every download_statements): the finding is written and the pool's record
removed in one transaction; a difference gone by then leaves no finding and its record is removed.
Alipay's owed amount is summed from its own file's lines, no index: its finding is written at once.

Currency (as the Alipay path): a batch is booked in its own currency (WeChat's settlementfee_type,
Alipay's Currency column), against the receivable in that currency, with no conversion and no rate:
the institution is paid in the currency its shoppers were charged (NZD, AUD). A batch in a currency
Kauri does not settle in is never booked: it is a `currency_differs` finding for a person.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Iterable

from chalicelib import clock, log, settings
from chalicelib.domain import ledger
from chalicelib.domain import reconciliation as recon
from chalicelib.domain.withdrawal import settlement_bank_account
from chalicelib.money import SETTLEMENT_CURRENCIES


def channel_fee_account(currency: str) -> str:
    return f"P:channel_fees:{currency}"


def posting_of(channel: str, batch: recon.SettlementBatch, memo: str) -> ledger.Posting:
    """Dr bank (paid) + Dr channel fees (fees), Cr receivable (both): what leaves the receivable is what
    the channel paid out plus what it kept; a shortfall stays owed."""
    legs = [ledger.Leg(settlement_bank_account(batch.currency), batch.paid, batch.currency)]
    if batch.fees:
        legs.append(ledger.Leg(channel_fee_account(batch.currency), batch.fees, batch.currency))
    legs.append(ledger.Leg(ledger.receivable_account(channel, batch.currency), -(batch.paid + batch.fees),
                           batch.currency))
    return ledger.Posting(f"settlement:{channel}:{batch.batch_id}:{batch.currency}", "settlement", tuple(legs),
                          f"{channel}:{batch.batch_id}", "kauri", memo=memo[:200])


def _legs(posting: ledger.Posting) -> list[list]:
    return sorted([leg.account, leg.amount, leg.currency] for leg in posting.legs)


_SETTLED = "settled "   # a settlement posting's memo starts with the settlement date it was booked for


def _memo(bill_date: str, source: str) -> str:
    return f"{_SETTLED}{bill_date} {source}"


def _settled_on(posting: ledger.Posting) -> str | None:
    memo = posting.memo or ""
    return memo[len(_SETTLED):len(_SETTLED) + 10] if memo.startswith(_SETTLED) else None


def _finding(channel: str, bill_date: str, kind: str, batch_id: str, detail: dict, currency: str,
             adjustment: int = 0, suffix: str = "") -> recon.Discrepancy:
    key = f"{batch_id}:{currency}{suffix}"   # as recon.settlement_key: one finding per batch AND currency
    return recon.Discrepancy(recon.discrepancy_id(channel, bill_date, kind, "settlement", key), kind,
                             channel, bill_date, "settlement", batch_id, batch_id, None, None, detail, adjustment,
                             currency)


def _pending(channel: str, bill_date: str, batch: recon.SettlementBatch, extra: dict, source: str):
    """The pool's record of a difference first seen now: what re-checking it needs, no channel call."""
    from chalicelib.store import reconciliation as store

    return store.pending_difference_item(channel, bill_date, f"{batch.batch_id}:{batch.currency}", {
        "batch": batch.batch_id, "currency": batch.currency, "fees": batch.fees, "paid": batch.paid,
        "period": extra["period"], "shortfall": batch.shortfall, "seen_at": clock.iso(clock.now()),
        "source": source})


def book(channel: str, bill_date: str, batches: Iterable[tuple[recon.SettlementBatch, dict]], source: str,
         recheck: bool = False) -> dict:
    """Book each (batch, what to keep in the summary about it) once; findings under `bill_date` (the
    settlement date). Safe to run again at any point: a booked batch is found booked, never booked twice.
    `recheck` (WeChat: Kauri's side came from an index): a difference waits in the pool instead of being
    a finding at once; `extra` then names the batch's trade `period`."""
    from chalicelib.store import ledger as ledger_store
    from chalicelib.store import reconciliation as store
    from chalicelib.store.unit import Conflict, Unit

    out: dict = {"batches": [], "discrepancies": 0, "new_discrepancies": 0, "pending": 0, "matched_amount": {}}
    for batch, extra in batches:
        row = {"batch": batch.batch_id, "currency": batch.currency, "lines": batch.lines, "gross": batch.gross,
               "fees": batch.fees, "paid": batch.paid, "expected_paid": batch.expected_paid,
               "shortfall": batch.shortfall, **extra}
        if batch.currency not in SETTLEMENT_CURRENCIES:
            found = _finding(channel, bill_date, recon.CURRENCY_DIFFERS, batch.batch_id,
                             {"settlement_currency": batch.currency, "paid": batch.paid,
                              "kauri_currencies": list(SETTLEMENT_CURRENCIES)}, batch.currency)
            out["discrepancies"] += 1
            out["new_discrepancies"] += store.save_finding(found)
            out["batches"].append({**row, "posted": False, "booked": False})
            continue
        posting = posting_of(channel, batch, _memo(bill_date, source))
        finding = recon.settlement_finding(channel, bill_date, batch)
        pending = _pending(channel, bill_date, batch, extra, source) if recheck and finding is not None else None
        unit = Unit().post(posting)
        if pending is not None:
            unit.put_new(pending)                       # the difference waits, recorded with the booking
        elif finding is not None:
            unit.put_new(store.finding_item(finding))   # the shortfall is recorded with the booking, atomically
        try:
            unit.commit()
            posted, new = True, int(finding is not None)
        except Conflict:
            booked = ledger_store.get(posting.id)
            if booked is None:
                raise   # not "booked before": something else refused the transaction; fail loudly, retry
            posted = False
            booked_for = _settled_on(booked)
            if booked_for is not None and booked_for != bill_date:
                # The channel used this batch number again for another settlement date: another payout,
                # not a re-report. Never book it over the first one, never take it as booked: say so.
                reused = _finding(channel, bill_date, recon.SETTLEMENT_SHORT, batch.batch_id,
                                  {"batch_reused": True, "posting": posting.id, "booked_for": booked_for,
                                   "reported_for": bill_date, "booked": _legs(booked), "reported": _legs(posting)},
                                  batch.currency, suffix="#reused")
                out["discrepancies"] += 1
                out["new_discrepancies"] += store.save_finding(reused)
                log.error("settlement_batch_reused", channel=channel, batch=batch.batch_id)
                out["batches"].append({**row, "posted": False, "booked": False, "booked_for": booked_for})
                continue
            if pending is not None:     # unless its finding was confirmed already, it waits (once)
                new = 0
                if store.get_finding(finding.id) is None:
                    store.hold_difference(pending)
            else:
                new = store.save_finding(finding) if finding is not None else 0
            if _legs(booked) != _legs(posting):
                # The channel now reports this batch differently from what was booked: never rebook, say so.
                changed = _finding(channel, bill_date, recon.SETTLEMENT_SHORT, batch.batch_id,
                                   {"changed_after_booking": True, "posting": posting.id,
                                    "booked": _legs(booked), "reported": _legs(posting)},
                                   batch.currency, suffix="#changed")
                out["discrepancies"] += 1
                out["new_discrepancies"] += store.save_finding(changed)
                log.error("settlement_batch_changed", channel=channel, batch=batch.batch_id)
        if pending is not None:
            out["pending"] += 1
        elif finding is not None:
            out["discrepancies"] += 1
            out["new_discrepancies"] += new
        out["matched_amount"][batch.currency] = out["matched_amount"].get(batch.currency, 0) + batch.paid + batch.fees
        out["batches"].append({**row, "posted": posted, "booked": True, "pending": pending is not None})
    return out


# ---- WeChat: /pay/settlementquery ---------------------------------------------------------------

def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def wechat_batches(settled_on: date) -> list[tuple[recon.SettlementBatch, dict]]:
    """WeChat's batches settled on one UTC+8 day, each matched against Kauri's WeChat receivable for the
    trade dates it covers: what Kauri is owed is its own net (payments less refunds booked for those
    dates) less the fee WeChat kept; what WeChat paid is its settlement_fee. (The amount booked is
    always WeChat's; Kauri's figure only decides whether there is a finding.)"""
    from chalicelib import channels
    from chalicelib.store import reconciliation as store

    out = []
    for s in channels.get("wechat").settlements(settled_on, settled_on):
        days = _days(s.period_start, s.period_end)
        kauri_net, count = store.receivable_of_days("wechat", s.currency, days)
        batch = recon.SettlementBatch(s.batch_no, s.currency, kauri_net, s.fee, s.settled, count)
        if batch.shortfall:   # a difference is confirmed from the items themselves before it is reported
            kauri_net, count = store.receivable_of_days("wechat", s.currency, days, consistent=True)
            batch = recon.SettlementBatch(s.batch_no, s.currency, kauri_net, s.fee, s.settled, count)
        out.append((batch, {"period": [s.period_start.isoformat(), s.period_end.isoformat()],
                            "date_settlement": s.settled_on.isoformat(),
                            "channel": {"pay": s.pay, "refund": s.refund, "net": s.net, "fee": s.fee,
                                        "settled": s.settled, "unsettled": s.unsettled}}))
    return out


def settle_wechat(settled_on: date) -> dict:
    """Fetch and book one settlement date. The day's summary (`settlement#wechat#{date}`) is what
    reconciliation_report shows; a day WeChat settled nothing is recorded as no_settlement."""
    from chalicelib.store import reconciliation as store

    day = settled_on.isoformat()
    batches = wechat_batches(settled_on)
    source = f"wechat:/pay/settlementquery:{day}"
    result = book("wechat", day, batches, source, recheck=True)
    status = "done" if batches else "no_settlement"
    summary = {"channel": "wechat", "bill_date": day, "kind": "settlement", "source": source, "status": status,
               **result}
    store.put_run(f"settlement#wechat#{day}", status, summary)
    log.info("settlement_booked", channel="wechat", bill_date=day, batches=len(batches),
             found=result["discrepancies"])
    return summary


def _owed(channel: str, pending: dict) -> recon.SettlementBatch:
    """The batch as WeChat reported it (kept in the pool), against Kauri's books read again now."""
    from chalicelib.store import reconciliation as store

    days = _days(date.fromisoformat(pending["period"][0]), date.fromisoformat(pending["period"][1]))
    kauri_net, count = store.receivable_of_days(channel, pending["currency"], days, consistent=True)
    return recon.SettlementBatch(pending["batch"], pending["currency"], kauri_net, int(pending["fees"]),
                                 int(pending["paid"]), count)


def recheck_wechat() -> dict:
    """Every WeChat settlement difference seen at least `settlement_recheck_minutes` ago, checked again
    against Kauri's books: still there, it is the batch's finding (written, and the pool's record removed,
    in one transaction: once, whoever else runs this); gone, the record is removed and nothing is found."""
    from chalicelib.store import reconciliation as store
    from chalicelib.store.unit import Conflict, Unit

    channel = "wechat"
    wait = timedelta(minutes=settings.get().settlement_recheck_minutes)
    now = clock.now()
    out = {"waiting": 0, "found": 0, "cleared": 0}
    for item in store.pending_differences(channel):
        pending = item.expected
        if now < clock.parse_iso(pending["seen_at"]) + wait:
            out["waiting"] += 1
            continue
        batch = _owed(channel, pending)
        finding = recon.settlement_finding(channel, item.since, batch)
        if finding is not None:
            finding = replace(finding, detail={**finding.detail, "first_seen": pending["seen_at"],
                                               "first_shortfall": pending["shortfall"]})
        unit = Unit().close_pending_difference(item.channel, item.key)
        if finding is not None:
            unit.put_new(store.finding_item(finding))
        try:
            unit.commit()
        except Conflict:
            if not store.pending_difference_still(item):
                continue        # another run closed this record first (with its finding, if there was one)
            if finding is None or store.get_finding(finding.id) is None:
                raise           # refused for another reason: fail loudly, the next run tries again
            # Found already (a re-run of the booking held it again after it was confirmed): close it only.
            Unit().close_pending_difference(item.channel, item.key).commit()
            continue
        out["found" if finding is not None else "cleared"] += 1
        log.info("settlement_difference_rechecked", channel=channel, batch=batch.batch_id,
                 bill_date=item.since, found=finding is not None, shortfall=batch.shortfall)
    return out
