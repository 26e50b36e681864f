"""Reconciliation's tables: statement runs, standard records, discrepancies and the suspense pool,
and the reads of Kauri's side of a bill date (the recon_by_day indexes; never a scan)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib import clock
from chalicelib.domain import reconciliation as recon
from chalicelib.store.base import applied, meta
from chalicelib.store.models import PaymentModel, RefundModel

_PAYMENT_STATUS = {"succeeded": recon.SUCCEEDED, "failed": recon.FAILED, "closed": recon.CLOSED,
                   "pending": "pending"}
# A processing refund is already booked (its posting is written when it is asked for; only a failure
# reverses it), and channels list a refund in progress as done: both count as succeeded here.
_REFUND_STATUS = {"succeeded": recon.SUCCEEDED, "failed": recon.FAILED, "processing": recon.SUCCEEDED}


class StatementRunModel(Model):
    """One processed statement file (run_key file#<s3 key>#<sha256>) or one channel day's reconciliation
    summary (day#<channel>#<bill date>) or download attempt (download#<channel>#<bill date>#<kind>)."""
    Meta = meta("statement_runs")
    run_key = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()          # running | done | failed | refused | no_bill | not_ready
    detail = JSONAttribute(default=dict)
    updated_at = UTCDateTimeAttribute()


class StatementRecordModel(Model):
    """A statement line as a standard record, once per key however often the file is processed."""
    Meta = meta("statement_records")
    record_key = UnicodeAttribute(hash_key=True)     # channel#kind#our_no
    bill_date = UnicodeAttribute()
    channel_no = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    fee = NumberAttribute(default=0)
    settlement = NumberAttribute(null=True)
    rate = UnicodeAttribute(null=True)
    channel_time = UnicodeAttribute(null=True)
    line_no = NumberAttribute()
    source = UnicodeAttribute()                      # the S3 key it came from
    outcome = UnicodeAttribute()                     # matched | a discrepancy kind | unknown


class _DiscrepanciesByDay(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_day"
        projection = AllProjection()

    day_key = UnicodeAttribute(hash_key=True)        # channel#bill_date
    discrepancy_id = UnicodeAttribute(range_key=True)


class DiscrepancyModel(Model):
    """A finding, under a deterministic id: a re-run finds the same one and never rewrites it."""
    Meta = meta("discrepancies")
    discrepancy_id = UnicodeAttribute(hash_key=True)
    day_key = UnicodeAttribute()
    kind = UnicodeAttribute()
    channel = UnicodeAttribute()
    bill_date = UnicodeAttribute()
    record_type = UnicodeAttribute()
    our_no = UnicodeAttribute()
    channel_no = UnicodeAttribute(null=True)
    ref = UnicodeAttribute(null=True)
    merchant_id = UnicodeAttribute(null=True)
    detail = JSONAttribute(default=dict)
    receivable_adjustment = NumberAttribute(default=0)
    currency = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="open")        # open | resolved
    resolution = JSONAttribute(null=True)            # action, reason, by, at, effect
    created_at = UTCDateTimeAttribute()
    by_day = _DiscrepanciesByDay()


class SuspenseModel(Model):
    """Kauri records a bill did not list yet, waiting (up to SUSPENSE_BILL_DATES) for a later one."""
    Meta = meta("recon_suspense")
    channel = UnicodeAttribute(hash_key=True)
    key = UnicodeAttribute(range_key=True)           # kind#our_no
    expected = JSONAttribute()
    since = UnicodeAttribute()                       # the first bill date it was missing from


# ---- runs ----------------------------------------------------------------------------------------

def get_run(run_key: str) -> StatementRunModel | None:
    try:
        return StatementRunModel.get(run_key, consistent_read=True)
    except DoesNotExist:
        return None


RUN_LEASE = timedelta(seconds=960)  # longer than a Lambda lives: a "running" run older than this died


def claim_run(run_key: str, detail: dict) -> bool:
    """Start a run unless one finished (or is running) under this key. True: ours to do. A run that
    failed, or died while running (its lease is over), is taken over."""
    now = clock.now()
    item = StatementRunModel(run_key, status="running", detail=detail, updated_at=now)
    cond = (StatementRunModel.run_key.does_not_exist() | StatementRunModel.status.is_in("failed", "error")
            | ((StatementRunModel.status == "running") & (StatementRunModel.updated_at < now - RUN_LEASE)))
    return applied(lambda: item.save(condition=cond))


def put_run(run_key: str, status: str, detail: dict) -> None:
    StatementRunModel(run_key, status=status, detail=detail, updated_at=clock.now()).save()


# ---- Kauri's side ------------------------------------------------------------------------------

def _payment_expected(m, bill_date: str, fee_bps: int | None, shown_rate: str | None) -> recon.Expected:
    from chalicelib.money import Money, bps_of

    amount = int(m.channel_amount) if m.channel_amount is not None else int(m.amount)
    currency = m.channel_currency if m.channel_amount is not None else m.currency
    fee = bps_of(Money(amount, currency), fee_bps, "HALF_UP").amount if fee_bps is not None else None
    quote_rate = (m.quote or {}).get("rate") if m.quote else None
    return recon.Expected(recon.PAYMENT, m.channel_order_id, m.payment_id, m.merchant_id,
                          _PAYMENT_STATUS.get(m.status, m.status), amount, currency, bill_date, fee,
                          quote_rate or shown_rate, m.rate)


def _refund_expected(m, bill_date: str) -> recon.Expected:
    amount = int(m.channel_amount) if m.channel_amount is not None else int(m.amount)
    currency = m.channel_currency if m.channel_amount is not None else m.currency
    return recon.Expected(recon.REFUND, m.channel_refund_id, m.refund_id, m.merchant_id,
                          _REFUND_STATUS.get(m.status, m.status), amount, currency, bill_date)


def expected_for_day(channel: str, bill_date: str, fee_bps: int | None,
                     shown_rate: str | None) -> dict[str, recon.Expected]:
    """Kauri's payments and refunds of one channel's bill date, from the recon_by_day indexes."""
    day_key = f"{channel}#{bill_date}"
    out: dict[str, recon.Expected] = {}
    for m in PaymentModel.recon_by_day.query(day_key):
        e = _payment_expected(m, bill_date, fee_bps, shown_rate)
        out[recon.key_of(e.kind, e.our_no)] = e
    for m in RefundModel.recon_by_day.query(day_key):
        e = _refund_expected(m, bill_date)
        out[recon.key_of(e.kind, e.our_no)] = e
    return out


def expected_by_key(channel: str, kind: str, our_no: str, bill_date: str, fee_bps: int | None,
                    shown_rate: str | None) -> recon.Expected | None:
    """A statement line's key not in the day's index: read the record itself, consistently (it may be
    pending, closed, or on another day)."""
    from chalicelib.services.payments import payment_id_of

    if kind == recon.PAYMENT:
        payment_id = payment_id_of(our_no)
        if payment_id is None:
            return None
        try:
            m = PaymentModel.get(payment_id, consistent_read=True)
        except DoesNotExist:
            return None
        if m.channel != channel or m.channel_order_id != our_no:
            return None
        return _payment_expected(m, bill_date, fee_bps, shown_rate)
    if our_no.startswith(RECON_REFUND_PREFIX) and len(our_no) == len(RECON_REFUND_PREFIX) + 24:
        return _reconciliation_refund(our_no, bill_date)
    if not our_no.startswith("re_") or len(our_no) > 64:
        return None
    try:
        m = RefundModel.get(our_no, consistent_read=True)
    except DoesNotExist:
        return None
    if m.channel and m.channel != channel:
        return None
    return _refund_expected(m, bill_date)


RECON_REFUND_PREFIX = "rc"  # + the finding's digest: a refund resolve_discrepancy asked the channel for


def recon_refund_no(discrepancy_id: str) -> str:
    return RECON_REFUND_PREFIX + discrepancy_id[len("dsc_"):]


def _reconciliation_refund(our_no: str, bill_date: str) -> recon.Expected | None:
    """A refund Kauri asked for while resolving a finding: expected on the channel's bill like any other."""
    found = get_finding("dsc_" + our_no[len(RECON_REFUND_PREFIX):])
    if found is None or (found.resolution or {}).get("action") != "refund":
        return None
    return recon.Expected(recon.REFUND, our_no, found.discrepancy_id, found.merchant_id or "kauri", recon.SUCCEEDED,
                          int(found.detail["channel_amount"]), found.detail["currency"], bill_date)


def _expected_to_json(e: recon.Expected) -> dict:
    return {"kind": e.kind, "our_no": e.our_no, "ref": e.ref, "merchant_id": e.merchant_id, "status": e.status,
            "amount": e.amount, "currency": e.currency, "bill_date": e.bill_date, "expected_fee": e.expected_fee,
            "shown_rate": e.shown_rate, "channel_rate": e.channel_rate}


def suspense_of(channel: str) -> dict[str, recon.Expected]:
    out = {}
    for m in SuspenseModel.query(channel, consistent_read=True):
        e = recon.Expected(**m.expected)
        out[recon.key_of(e.kind, e.our_no)] = e
    return out


def hold_in_suspense(channel: str, items: Iterable[recon.Expected]) -> int:
    """Put each one in the pool; one already there keeps the bill date it was first missing from."""
    n = 0
    for e in items:
        item = SuspenseModel(channel, f"{e.kind}#{e.our_no}", expected=_expected_to_json(e), since=e.bill_date)
        n += applied(lambda item=item: item.save(condition=SuspenseModel.key.does_not_exist()))
    return n


def release_from_suspense(channel: str, keys: Iterable[tuple[str, str]]) -> None:
    with SuspenseModel.batch_write() as batch:
        for kind, our_no in keys:
            batch.delete(SuspenseModel(channel, f"{kind}#{our_no}"))


# A settlement difference waiting to be seen again (services.settlement): in the suspense pool under
# its own partition, settlement#{channel}, keyed {settlement date}#{batch}:{currency}.

def settlement_pool(channel: str) -> str:
    return f"settlement#{channel}"


def pending_difference_item(channel: str, bill_date: str, batch_key: str, pending: dict) -> SuspenseModel:
    return SuspenseModel(settlement_pool(channel), f"{bill_date}#{batch_key}", expected=pending, since=bill_date)


def pending_differences(channel: str) -> list[SuspenseModel]:
    return list(SuspenseModel.query(settlement_pool(channel), consistent_read=True))


def pending_difference_still(item: SuspenseModel) -> bool:
    try:
        SuspenseModel.get(item.channel, item.key, consistent_read=True)
        return True
    except DoesNotExist:
        return False


def hold_difference(item: SuspenseModel) -> bool:
    """Put it in the pool once; one already there keeps the moment it was first seen."""
    return applied(lambda: item.save(condition=SuspenseModel.key.does_not_exist()))


# ---- records and findings ---------------------------------------------------------------------

def record_key(channel: str, kind: str, our_no: str) -> str:
    return f"{channel}#{kind}#{our_no}"


class RecordWriter:
    """Standard records out in BatchWriteItem calls of 25, from WRITERS threads at once (the calls wait
    on the network, not the CPU); re-processing rewrites the same items. At most MAX_PENDING chunks
    wait, so a million-row file never sits in memory as items."""
    WRITERS = 8
    CHUNK = 500                 # items per task: 20 BatchWriteItem calls
    MAX_PENDING = 2 * WRITERS

    def __init__(self, channel: str, bill_date: str, source: str):
        from concurrent.futures import ThreadPoolExecutor

        self.channel, self.bill_date, self.source = channel, bill_date, source
        self._pool = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="records")
        self._pending: list = []
        self._chunk: list = []
        self.written = 0

    @staticmethod
    def _write(items: list) -> None:
        with StatementRecordModel.batch_write() as batch:
            for item in items:
                batch.save(item)

    def _flush(self) -> None:
        if self._chunk:
            self._pending.append(self._pool.submit(self._write, self._chunk))
            self._chunk = []
        while len(self._pending) > self.MAX_PENDING:
            self._pending.pop(0).result()

    def add(self, line: recon.Line, outcome: str) -> None:
        self._chunk.append(StatementRecordModel(
            record_key(self.channel, line.kind, line.our_no), bill_date=self.bill_date,
            channel_no=line.channel_no or None, status=line.status, amount=line.amount, currency=line.currency,
            fee=line.fee, settlement=line.settlement, rate=line.rate, channel_time=line.channel_time or None,
            line_no=line.line_no, source=self.source, outcome=outcome))
        self.written += 1
        if len(self._chunk) >= self.CHUNK:
            self._flush()

    def close(self) -> None:
        """Write what is left and wait for every write; the first failure is raised."""
        try:
            self._flush()
            for future in self._pending:
                future.result()
        finally:
            self._pending = []
            self._pool.shutdown(wait=True)


def get_record(channel: str, kind: str, our_no: str) -> StatementRecordModel | None:
    try:
        return StatementRecordModel.get(record_key(channel, kind, our_no), consistent_read=True)
    except DoesNotExist:
        return None


def finding_item(d: recon.Discrepancy) -> DiscrepancyModel:
    """A new finding as the item to write (alone, or in a Unit with the posting it goes with)."""
    return DiscrepancyModel(d.id, day_key=f"{d.channel}#{d.bill_date}", kind=d.kind, channel=d.channel,
                            bill_date=d.bill_date, record_type=d.record_type, our_no=d.our_no,
                            channel_no=d.channel_no or None, ref=d.ref, merchant_id=d.merchant_id, detail=d.detail,
                            receivable_adjustment=d.receivable_adjustment, currency=d.currency or None,
                            status="open", created_at=clock.now())


def save_finding(d: recon.Discrepancy) -> bool:
    """Write a finding once: a re-run that finds it again changes nothing (least of all a resolution)."""
    item = finding_item(d)
    return applied(lambda: item.save(condition=DiscrepancyModel.discrepancy_id.does_not_exist()))


def receivable_of_days(channel: str, currency: str, days: Iterable[str], consistent: bool = False) -> tuple[int, int]:
    """What Kauri's books say the channel owes for trades of these bill dates, in `currency`: its succeeded
    payments less its booked refunds (the receivable legs they posted), and how many there were.

    From the recon_by_day indexes' projections (streamed: a million-row day is a few hundred queries and
    no list of it in memory), or, `consistent`, from the items themselves: the indexes only list the ids
    and every amount and status is read again with a consistent read (an index is eventually
    consistent; a caller about to report a difference confirms it this way)."""
    day_keys = sorted({f"{channel}#{day}" for day in days})
    payments = (m for key in day_keys for m in PaymentModel.recon_by_day.query(key))
    refunds = (m for key in day_keys for m in RefundModel.recon_by_day.query(key))
    if consistent:
        payments = PaymentModel.batch_get(sorted({m.payment_id for m in payments}), consistent_read=True)
        refunds = RefundModel.batch_get(sorted({m.refund_id for m in refunds}), consistent_read=True)
    net = count = 0
    for items, expected, sign in ((payments, lambda m: _payment_expected(m, "", None, None), 1),
                                  (refunds, lambda m: _refund_expected(m, ""), -1)):
        for m in items:
            e = expected(m)
            if m.recon_day in day_keys and e.status == recon.SUCCEEDED and e.currency == currency:
                net, count = net + sign * e.amount, count + 1
    return net, count


def findings_of_day(channel: str, bill_date: str) -> list[DiscrepancyModel]:
    return list(DiscrepancyModel.by_day.query(f"{channel}#{bill_date}"))


def get_finding(discrepancy_id: str) -> DiscrepancyModel | None:
    try:
        return DiscrepancyModel.get(discrepancy_id, consistent_read=True)
    except DoesNotExist:
        return None


def finding_view(m: DiscrepancyModel) -> dict:
    return {"id": m.discrepancy_id, "kind": m.kind, "channel": m.channel, "bill_date": m.bill_date,
            "record_type": m.record_type, "our_no": m.our_no, "channel_no": m.channel_no, "ref": m.ref,
            "merchant_id": m.merchant_id, "detail": m.detail, "currency": m.currency,
            "receivable_adjustment": int(m.receivable_adjustment or 0), "status": m.status,
            "resolution": m.resolution, "created": clock.iso(m.created_at)}


def shown_rate(channel: str, currency: str, at: datetime) -> str | None:
    """The rate Kauri displayed for the channel and currency at `at` (the snapshot in effect then)."""
    from chalicelib.store.fx import FxSnapshotModel

    for item in FxSnapshotModel.query(f"{channel}#{currency}", FxSnapshotModel.fetched_at <= at,
                                      scan_index_forward=False, limit=1):
        return str(Decimal(item.rate))
    return None
