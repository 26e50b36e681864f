"""Reconciliation (对账): the channel's statement lines against Kauri's records of one bill date.

Pure: two streams of standard records in, matches and discrepancies out (money-core §1.6). The
service feeds it from S3 and DynamoDB and stores what it returns; nothing here knows either.

Key: our order number for payments, our refund number for refunds (partial refunds each have one).
Compared: status, currency and the amount in minor units, exactly; the channel's fee against the
contract (payments only); the channel's FX rate against the rate Kauri showed (recorded, never a
discrepancy).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from itertools import filterfalse
from operator import is_
from typing import Iterable, Iterator, NamedTuple

from chalicelib.money import EXPONENTS

PAYMENT = "payment"
REFUND = "refund"

SUCCEEDED = "succeeded"
FAILED = "failed"
PROCESSING = "processing"
CLOSED = "closed"

# Discrepancy kinds (neutral codes: money-core §1.6 naming note).
CHANNEL_ONLY = "only_at_channel"
KAURI_ONLY = "only_at_kauri"
AMOUNT_DIFFERS = "amount_differs"
STATUS_DIFFERS = "status_differs"
CURRENCY_DIFFERS = "currency_differs"
FEE_DIFFERS = "fee_differs"
DUPLICATE_LINE = "duplicate_line"
SETTLEMENT_SHORT = "settlement_short"
KINDS = (CHANNEL_ONLY, KAURI_ONLY, AMOUNT_DIFFERS, STATUS_DIFFERS, CURRENCY_DIFFERS, FEE_DIFFERS, DUPLICATE_LINE,
         SETTLEMENT_SHORT)

SUSPENSE_BILL_DATES = 3       # a Kauri record missing from this many bill dates becomes only_at_kauri
FEE_TOLERANCE_MINOR = 1       # a channel rounds its fee per line; one minor unit either way is not a finding

# Each channel's words -> ours. WeChat reports a refund still PROCESSING on its bill as done (spec §1.4).
_KIND = {"PAY": PAYMENT, "payment": PAYMENT, "REFUND": REFUND, "refund": REFUND}
_STATUS = {
    "SUCCESS": SUCCEEDED, "SETTLED": SUCCEEDED, "paid": SUCCEEDED, "succeeded": SUCCEEDED,
    "PROCESSING": SUCCEEDED,
    "FAILED": FAILED, "FAIL": FAILED, "CHANGE": FAILED, "failed": FAILED,
    "REVOKED": CLOSED, "CLOSED": CLOSED, "processing": PROCESSING,
}


class Line(NamedTuple):
    """One statement line, normalised: what the matcher and the store need, nothing else."""
    kind: str                  # payment | refund
    our_no: str                # our order number (payments) or refund number (refunds)
    channel_no: str
    status: str                # succeeded | failed | processing | closed
    amount: int                # minor units of `currency`
    currency: str
    fee: int
    channel_time: str
    line_no: int
    settlement: int | None = None
    rate: str | None = None


def line_of(record: dict) -> Line:
    """A channel parser's standard record -> a Line (the parsers differ in their words, not their facts)."""
    return Line(_KIND.get(record["record_type"], record["record_type"]), record["our_no"],
                record.get("channel_no") or "", _STATUS.get(record["status"], record["status"]),
                record["amount_minor"], record["currency"], record.get("fee_minor") or 0,
                record.get("channel_time") or "", record.get("raw_line_no") or 0,
                record.get("settlement_minor"), record.get("rate"))


@dataclass(frozen=True, slots=True)
class Expected:
    """What Kauri believes about one payment or refund the channel should list."""
    kind: str
    our_no: str
    ref: str                   # payment_id or refund_id
    merchant_id: str
    status: str                # succeeded | failed | processing | closed | pending
    amount: int
    currency: str
    bill_date: str             # the Beijing day Kauri expects it on (first seen, for suspense)
    expected_fee: int | None = None   # the contract's fee on a payment; None: not checked
    shown_rate: str | None = None     # the rate Kauri showed the shopper (Decimal text)
    channel_rate: str | None = None   # the rate the channel reported for it (its callback), if any
    # The amount and fee as a bill prints them ("12.50"): the fast path compares text, not numbers.
    amount_text: str | None = field(default=None, compare=False)
    fee_text: str | None = field(default=None, compare=False)

    def __post_init__(self):
        # Only a 2-decimal currency and amounts a bill prints unsigned: any other line is parsed in full.
        if EXPONENTS.get(self.currency) == 2 and self.amount >= 0 and (self.expected_fee or 0) >= 0:
            object.__setattr__(self, "amount_text", _major_text(self.amount))
            if self.expected_fee is not None:
                object.__setattr__(self, "fee_text", _major_text(self.expected_fee))


_REFUND_MARK = "\x1f"  # never in an order number: refund keys cannot meet payment keys


def key_of(kind: str, our_no: str) -> str:
    """The matcher's key: the order number itself for a payment (no tuple per line at a million lines),
    the marked refund number for a refund."""
    return our_no if kind == PAYMENT else _REFUND_MARK + our_no


def by_key(records: Iterable[Expected]) -> dict[str, Expected]:
    return {key_of(e.kind, e.our_no): e for e in records}


# In place of an Expected a line consumed: a second line with its key is a duplicate. Its amount_text
# is None, so the fast path never matches it and hands the line to feed().
_SEEN = Expected("", "", "", "", "", 0, "", "")


@dataclass(frozen=True)
class Discrepancy:
    id: str
    kind: str
    channel: str
    bill_date: str
    record_type: str
    our_no: str
    channel_no: str
    ref: str | None
    merchant_id: str | None
    detail: dict
    # What writing it off moves into the channel receivable (+: the channel holds more than our books).
    receivable_adjustment: int = 0
    currency: str = ""


def discrepancy_id(channel: str, bill_date: str, kind: str, record_type: str, our_no: str) -> str:
    digest = hashlib.sha256(f"{channel}|{bill_date}|{kind}|{record_type}|{our_no}".encode()).hexdigest()
    return "dsc_" + digest[:24]


def _finding(channel: str, bill_date: str, kind: str, line: Line | None, exp: Expected | None, detail: dict,
             adjustment: int = 0) -> Discrepancy:
    record_type = line.kind if line else exp.kind
    our_no = line.our_no if line else exp.our_no
    return Discrepancy(discrepancy_id(channel, bill_date, kind, record_type, our_no), kind, channel, bill_date,
                       record_type, our_no, line.channel_no if line else "", exp.ref if exp else None,
                       exp.merchant_id if exp else None, detail, adjustment,
                       (line.currency if line else exp.currency))


def _signed(kind: str, amount: int) -> int:
    return -amount if kind == REFUND else amount


def compare(channel: str, bill_date: str, line: Line, exp: Expected | None) -> list[Discrepancy]:
    """Everything that differs between one statement line and what Kauri holds for its key."""
    if exp is None:
        return [_finding(channel, bill_date, CHANNEL_ONLY, line, None,
                         {"channel_status": line.status, "channel_amount": line.amount, "currency": line.currency},
                         _signed(line.kind, line.amount) if line.status == SUCCEEDED else 0)]
    out = []
    if line.currency != exp.currency:
        out.append(_finding(channel, bill_date, CURRENCY_DIFFERS, line, exp,
                            {"channel_currency": line.currency, "kauri_currency": exp.currency}))
        return out  # amounts in different currencies say nothing more
    if line.status != exp.status:
        out.append(_finding(channel, bill_date, STATUS_DIFFERS, line, exp,
                            {"channel_status": line.status, "kauri_status": exp.status,
                             "channel_amount": line.amount, "currency": line.currency}))
        return out
    if line.amount != exp.amount:
        out.append(_finding(channel, bill_date, AMOUNT_DIFFERS, line, exp,
                            {"channel_amount": line.amount, "kauri_amount": exp.amount, "currency": line.currency},
                            _signed(line.kind, line.amount - exp.amount)))
    if exp.expected_fee is not None and line.kind == PAYMENT and abs(line.fee - exp.expected_fee) > FEE_TOLERANCE_MINOR:
        out.append(_finding(channel, bill_date, FEE_DIFFERS, line, exp,
                            {"channel_fee": line.fee, "contract_fee": exp.expected_fee, "currency": line.currency}))
    return out


@dataclass
class FxVariance:
    """The channel's rate against the one Kauri showed, per day: reported, never a discrepancy."""
    threshold_bps: int
    compared: int = 0
    beyond: int = 0
    max_bps: int = 0
    examples: list = field(default_factory=list)

    # (channel rate, shown rate) -> basis points or None: a day has a handful of rates and a million lines.
    _bps: dict = field(default_factory=dict, repr=False, compare=False)
    REMEMBER = 4096

    def add(self, our_no: str, channel_rate: str | None, shown_rate: str | None) -> None:
        if not channel_rate or not shown_rate:
            return
        pair = (channel_rate, shown_rate)
        bps = self._bps.get(pair, -1)
        if bps == -1:
            bps = self._bps_of(channel_rate, shown_rate)
            if len(self._bps) < self.REMEMBER:
                self._bps[pair] = bps
        if bps is None:
            return
        self.compared += 1
        if bps > self.max_bps:
            self.max_bps = bps
        if bps > self.threshold_bps:
            self.beyond += 1
            if len(self.examples) < 20:
                self.examples.append({"our_no": our_no, "channel_rate": channel_rate, "shown_rate": shown_rate,
                                      "bps": bps})

    @staticmethod
    def _bps_of(channel_rate: str, shown_rate: str) -> int | None:
        """|channel - shown| / shown in basis points, rounded ROUND_HALF_UP; None: not two rates to compare."""
        try:
            got, shown = Decimal(channel_rate), Decimal(shown_rate)
        except InvalidOperation:
            return None
        if shown <= 0:
            return None
        return int((abs(got - shown) * 10000 / shown).to_integral_value(rounding="ROUND_HALF_UP"))

    def as_dict(self) -> dict:
        return {"threshold_bps": self.threshold_bps, "compared": self.compared, "beyond_threshold": self.beyond,
                "max_bps": self.max_bps, "examples": self.examples}


@dataclass
class Outcome:
    """What one pass over a statement found."""
    matched: int = 0
    matched_amount: dict = field(default_factory=dict)      # currency -> signed minor units
    lines: int = 0
    discrepancies: list = field(default_factory=list)
    unknown: list = field(default_factory=list)             # lines whose key Kauri's day does not hold
    suspense: list = field(default_factory=list)            # Expected still waiting for a later bill
    fx: FxVariance | None = None


class Matcher:
    """Feed the channel's lines one at a time (a million-row file never sits in memory), then finish.

    `expected` holds Kauri's records for the bill date plus those waiting in suspense from earlier
    dates, keyed by `key(kind, our_no)`; a line that consumes one leaves a marker in its place.
    """

    def __init__(self, channel: str, bill_date: str, expected: dict[str, Expected],
                 fx_threshold_bps: int = 50):
        self.channel = channel
        self.bill_date = bill_date
        self.expected = expected
        self.outcome = Outcome(fx=FxVariance(fx_threshold_bps))

    def feed(self, line: Line) -> str:
        """Match one line; return its outcome ('matched', a discrepancy kind, or 'unknown')."""
        out = self.outcome
        out.lines += 1
        key = key_of(line.kind, line.our_no)
        exp = self.expected.get(key)
        if exp is None:
            self.expected[key] = _SEEN  # a second line with this key is a duplicate, even of an unknown one
            out.unknown.append(line)
            return "unknown"
        if exp is _SEEN:
            out.discrepancies.append(_finding(self.channel, self.bill_date, DUPLICATE_LINE, line, None,
                                              {"line_no": line.line_no}))
            return DUPLICATE_LINE
        self.expected[key] = _SEEN
        found = compare(self.channel, self.bill_date, line, exp)
        out.fx.add(line.our_no, line.rate or exp.channel_rate, exp.shown_rate)
        if found:
            out.discrepancies.extend(found)
            return found[0].kind
        out.matched += 1
        out.matched_amount[line.currency] = out.matched_amount.get(line.currency, 0) + _signed(line.kind, line.amount)
        return "matched"

    def text_match(self, status_words: dict | None = None, keep=None) -> "TextMatch":
        """What a channel's fast reader needs to match rows from their text in its own loop."""
        statuses = _STATUS if status_words is None else {
            token: _STATUS.get(word, word) for token, word in status_words.items()}
        return TextMatch(self.expected, statuses, self.outcome.fx, keep)

    def absorb(self, tm: "TextMatch") -> None:
        """Count what a fast reader matched from text (also when it stopped half way: a bad line)."""
        out = self.outcome
        out.matched += tm.matched
        out.lines += tm.matched
        for currency, amount in tm.sums.items():
            out.matched_amount[currency] = out.matched_amount.get(currency, 0) + amount
        tm.matched = 0
        tm.sums.clear()

    def finish(self, suspense_bill_dates: int = SUSPENSE_BILL_DATES) -> Outcome:
        """Kauri records no line matched: still in suspense, or only at Kauri once their time is up."""
        day = date.fromisoformat(self.bill_date)
        # The records no line consumed (skipping the million that were, in C), then those that took money.
        for exp in filterfalse(partial(is_, _SEEN), self.expected.values()):
            if exp.status != SUCCEEDED:
                continue  # Kauri never took money: nothing the channel must show
            first = date.fromisoformat(exp.bill_date)
            if day - first >= timedelta(days=suspense_bill_dates - 1):
                self.outcome.discrepancies.append(_finding(
                    self.channel, exp.bill_date, KAURI_ONLY, None, exp,
                    {"kauri_amount": exp.amount, "currency": exp.currency, "kauri_status": exp.status,
                     "missing_since": exp.bill_date, "checked_through": self.bill_date},
                    -_signed(exp.kind, exp.amount)))
            else:
                self.outcome.suspense.append(exp)
        self.expected = {}
        return self.outcome




class TextMatch:
    """Matching a statement row from its text, inside a channel's fast reader (one tight loop per
    layout: at a million rows a day a function call or a tuple per row shows in the rate).

    A row matches from its text when Kauri holds its key (`key_of`) and the row's amount text, currency
    and status (`statuses[token]`) are exactly Kauri's record's `amount_text`, `currency` and `status`,
    and, where Kauri's record has a contract fee, the fee text is its `fee_text` (each reader inlines
    that test). Then the reader calls `took` (keep, FX), marks the key consumed (`expected[key] =
    seen`) and counts it in `matched` and `sums`. Any other
    row goes to the full parse and `Matcher.feed`. The reader gives a row this chance only when every
    field the full parse checks, other than those `keep` reads, is good, so a row matched here is one
    the full parse would have matched (pinned by tests/unit/test_statement_fast_path.py)."""

    seen = _SEEN
    refund_mark = _REFUND_MARK

    def __init__(self, expected: dict[str, Expected], statuses: dict, fx: FxVariance, keep=None):
        self.expected, self.statuses, self.fx, self.keep = expected, statuses, fx, keep
        self.matched = 0
        self.sums: dict[str, int] = defaultdict(int)

    def hot(self) -> tuple:
        """What a reader's loop holds in local variables: (expected, expected.get, seen, refund_mark,
        statuses, sums, keep, took)."""
        return (self.expected, self.expected.get, self.seen, self.refund_mark, self.statuses, self.sums,
                self.keep, self.took)

    def took(self, exp: Expected, our_no: str, rate: str | None, line_no: int, line) -> None:
        """A row matched from its text, beyond counting it: kept (first: reading the rest of its record
        may fail the file at this line), and its rate compared where Kauri showed one. A reader calls it
        only when there is a `keep` or a shown rate."""
        if self.keep is not None:
            self.keep(exp, line_no, line)
        if exp.shown_rate is not None:
            self.fx.add(our_no, rate or exp.channel_rate, exp.shown_rate)



def _major_text(minor: int) -> str:
    return f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def match(channel: str, bill_date: str, lines: Iterable[Line], expected: dict[str, Expected],
          fx_threshold_bps: int = 50) -> Outcome:
    m = Matcher(channel, bill_date, expected, fx_threshold_bps)
    for line in lines:
        m.feed(line)
    return m.finish()


# ---- settlement ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SettlementBatch:
    """What the channel paid into our bank for one batch, and what its lines say it should be."""
    batch_id: str
    currency: str
    gross: int        # payments minus refunds, as the lines list them
    fees: int
    paid: int         # the settlement amounts the channel paid out
    lines: int

    @property
    def expected_paid(self) -> int:
        return self.gross - self.fees

    @property
    def shortfall(self) -> int:
        return self.expected_paid - self.paid


def settlement_batches(lines: Iterable[Line], batch_of) -> Iterator[SettlementBatch]:
    """Sum a settlement file's lines per (batch, currency); `batch_of(line)` names the batch."""
    totals: dict[tuple[str, str], list[int]] = {}
    for line in lines:
        t = totals.setdefault((batch_of(line), line.currency), [0, 0, 0, 0])
        gross = _signed(line.kind, line.amount)
        fee = abs(line.fee) if line.kind == PAYMENT else 0   # a refund's fee stays with the channel (Alipay)
        t[0] += gross
        t[1] += fee
        t[2] += _signed(line.kind, abs(line.settlement)) if line.settlement is not None else gross - fee
        t[3] += 1
    for (batch_id, currency), (gross, fees, paid, n) in sorted(totals.items()):
        yield SettlementBatch(batch_id, currency, gross, fees, paid, n)


def settlement_key(batch: SettlementBatch) -> str:
    """A batch's identity in finding ids: one batch name can pay in two currencies (Alipay names its
    batches by settlement date), each booked and each found on its own, as its posting id says."""
    return f"{batch.batch_id}:{batch.currency}"


def settlement_finding(channel: str, bill_date: str, batch: SettlementBatch) -> Discrepancy | None:
    if batch.shortfall == 0:
        return None
    return Discrepancy(discrepancy_id(channel, bill_date, SETTLEMENT_SHORT, "settlement", settlement_key(batch)),
                       SETTLEMENT_SHORT, channel, bill_date, "settlement", batch.batch_id, batch.batch_id, None, None,
                       {"expected": batch.expected_paid, "paid": batch.paid, "shortfall": batch.shortfall,
                        "currency": batch.currency, "lines": batch.lines},
                       -batch.shortfall, batch.currency)
