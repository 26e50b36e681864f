"""Alipay files -> plain records: forex_compare_file / forex_liquidation_file (spec §8) and
forex_rate_file (spec §7). Line by line, so a large file never sits in memory twice.

Standard record keys (shared with the other channels): channel, bill_date (YYYY-MM-DD, Beijing),
record_type PAY|REFUND, our_no, channel_no, status, amount_minor, currency, fee_minor,
channel_time (ISO-8601 UTC), raw_line_no. Alipay extras: original_our_no (refunds: the order, from
Remarks), settlement_minor, settlement_time, rate (Decimal text), file_status (the raw status letter).
"""
from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable, Iterator

from chalicelib.channels.alipay import BEIJING, parse_beijing
from chalicelib.channels.blocks import TextLines
from chalicelib.money import MoneyError, minor_from_major

MAX_LINE_CHARS = 4096
MAX_RATE_LINES = 500

_TYPES = {"P": "PAY", "R": "REFUND"}
# File status letter -> standard status (spec §8.1: P paid, L liquidated/settled, F failed).
_STATUS = {"P": "SUCCESS", "L": "SETTLED", "F": "FAILED", "S": "SUCCESS"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class StatementFormatError(ValueError):
    def __init__(self, line_no: int, reason: str):
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no
        self.reason = reason


def _lines(source: Iterable[str | bytes] | str | bytes) -> Iterator[tuple[int, str]]:
    if isinstance(source, (str, bytes)):
        source = source.splitlines()
    for no, line in enumerate(source, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                line = line.decode("gbk", errors="replace")  # older files were GBK
        line = line.rstrip("\r\n").lstrip("\ufeff")
        if len(line) > MAX_LINE_CHARS:
            raise StatementFormatError(no, "line too long")
        yield no, line


def _money(no: int, text: str, currency: str) -> int:
    text = (text or "").strip()
    if text == "":
        return 0
    try:
        return minor_from_major(text, currency)
    except MoneyError as exc:
        raise StatementFormatError(no, str(exc)) from None


_DASHED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}").fullmatch
_COMPACT_TIME = re.compile(r"[0-9]{14}").fullmatch


@lru_cache(maxsize=64)
def _day_and_before(year: str, month: str, day: str) -> tuple[str, str] | None:
    """Digit strings -> ('YYYY-MM-DD', the day before it); None when no date or before 1001 (strptime decides)."""
    try:
        d = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return (d.isoformat(), (d - timedelta(days=1)).isoformat()) if d.year > 1000 else None


def _times(text: str) -> tuple[str, str] | None:
    """A Beijing time -> (Beijing date 'YYYY-MM-DD', UTC 'YYYY-MM-DDTHH:MM:SSZ'); None where parse_beijing
    gives None. Exactly parse_beijing(text.strip()) with .astimezone(BEIJING).strftime("%Y-%m-%d")
    and .strftime("%Y-%m-%dT%H:%M:%SZ"), what _bill_date and _iso returned before.

    A zero-padded valid time in either format is read by slicing: Beijing is UTC+8 all year, so UTC
    has the same minutes and seconds, the hour 8 less, on the day before when the Beijing hour is
    before 8. Anything else (single digits, an invalid field, years before 1001) goes through
    parse_beijing (strptime).
    """
    text = (text or "").strip()
    if _DASHED_TIME(text) is not None:
        days, hh, mm, ss = _day_and_before(text[:4], text[5:7], text[8:10]), text[11:13], text[14:16], text[17:19]
    elif _COMPACT_TIME(text) is not None:
        days, hh, mm, ss = _day_and_before(text[:4], text[4:6], text[6:8]), text[8:10], text[10:12], text[12:14]
    else:
        days = None
    if days is not None:
        hour = int(hh)
        if hour < 24 and mm < "60" and ss < "60":
            if hour >= 8:
                return days[0], f"{days[0]}T{hour - 8:02d}:{mm}:{ss}Z"
            return days[0], f"{days[1]}T{hour + 16:02d}:{mm}:{ss}Z"
    dt = parse_beijing(text)
    if dt is None:
        return None
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d"), dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(no: int, text: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    times = _times(text)
    if times is None:
        raise StatementFormatError(no, f"bad time {text!r}")
    return times[1]


def _bill_date(no: int, text: str) -> str:
    times = _times(text)
    if times is None:
        raise StatementFormatError(no, f"bad time {text!r}")
    return times[0]


def _norm(name: str) -> str:
    return name.strip().lower()


def parse_compare_file(source: Iterable[str | bytes] | str | bytes) -> Iterator[dict]:
    """forex_compare_file (transactions) or forex_liquidation_file (settlement) -> standard records.

    Header-driven when a header row is present (V2017 16 columns and the 13-column variant);
    otherwise the V2013 positional layout (9 columns, no header).
    """
    header: list[str] | None = None
    columns: _Columns | None = None
    for no, line in _lines(source):
        if not line.strip():
            continue
        cells = line.split("|")
        if header is None and _norm(cells[0]) == "partner_transaction_id":
            header = [_norm(c) for c in cells]
            columns = _Columns(header)
            continue
        if line[0] == "<" or (line[0] in "fF" and line.lower().startswith("file download failed")):
            raise StatementFormatError(no, "not a statement (error answer)")
        if columns is not None:
            if len(cells) < columns.width:
                raise StatementFormatError(no, f"{len(cells)} columns, header has {columns.width}")
            if columns.pad:
                cells.append("")
            yield _from_cells(no, cells, columns)
        else:
            yield _from_v2013(no, cells)


class _Columns:
    """Where each column the records use sits in a header row (dict(zip(header, cells)): the LAST
    cell of a repeated name wins); a column the header lacks reads as "", from index -1 (the ""
    parse_compare_file appends to each row when `pad`). Valid currency and rate texts are remembered
    (a few hundred at most), so each is checked once, and so is the last Payment_time's _times()
    (rows of one second sit together)."""

    _NAMES = ("currency", "type", "partner_transaction_id", "status", "payment_time", "rate", "settlement",
              "remarks", "transaction_id", "amount", "fee", "settlement_time")
    REMEMBER = 256

    def __init__(self, header: list[str]):
        index = {name: pos for pos, name in enumerate(header)}
        self.width = len(header)
        self.has_type = "type" in index
        self.pad = any(name not in index for name in self._NAMES)
        (self.currency, self.type, self.partner_transaction_id, self.status, self.payment_time, self.rate,
         self.settlement, self.remarks, self.transaction_id, self.amount, self.fee, self.settlement_time) = (
            index.get(name, -1) for name in self._NAMES)
        self.currencies: set[str] = set()
        self.rates: set[str] = set()
        self.last_payment_time: str | None = None
        self.last_payment_times: tuple[str, str] | None = None


def _from_cells(no: int, cells: list[str], col: _Columns) -> dict:
    """One header-driven row -> a record: the checks, values and errors of the per-row dict this replaced."""
    currency = cells[col.currency].strip().upper()
    if currency not in col.currencies:
        if not _CURRENCY.match(currency):
            raise StatementFormatError(no, f"bad currency {currency!r}")
        if len(col.currencies) < col.REMEMBER:
            col.currencies.add(currency)
    kind = _TYPES.get(cells[col.type].strip().upper())
    if kind is None:
        raise StatementFormatError(no, f"bad type {(cells[col.type] if col.has_type else None)!r}")
    our_no = cells[col.partner_transaction_id].strip()
    if not our_no:
        raise StatementFormatError(no, "missing Partner_transaction_id")
    letter = cells[col.status].strip().upper()
    rate = cells[col.rate].strip()
    if rate and rate not in col.rates:
        try:
            Decimal(rate)
        except InvalidOperation:
            raise StatementFormatError(no, f"bad rate {rate!r}") from None
        if len(col.rates) < col.REMEMBER:
            col.rates.add(rate)
    payment_time = cells[col.payment_time]
    if payment_time != col.last_payment_time:
        col.last_payment_times, col.last_payment_time = _times(payment_time), payment_time
    payment_times = col.last_payment_times
    if payment_times is None:
        raise StatementFormatError(no, f"bad time {payment_time!r}")
    settlement = cells[col.settlement]
    remarks = cells[col.remarks].strip()
    return {
        "channel": "alipay",
        "bill_date": payment_times[0],
        "record_type": kind,
        "our_no": our_no,
        "channel_no": cells[col.transaction_id].strip() or None,
        "status": _STATUS.get(letter, letter or "SUCCESS"),
        "amount_minor": abs(_money(no, cells[col.amount], currency)),
        "currency": currency,
        "fee_minor": abs(_money(no, cells[col.fee], currency)),
        "channel_time": payment_times[1],
        "raw_line_no": no,
        "original_our_no": remarks if kind == "REFUND" and remarks else None,
        "settlement_minor": _money(no, settlement, currency) if settlement.strip() else None,
        "settlement_time": _iso(no, cells[col.settlement_time]),
        "rate": rate or None,
        "file_status": letter or None,
    }


def _from_v2013(no: int, cells: list[str]) -> dict:
    # partner_transaction_id|amount|currency|transaction_time|settlement_time|type|service_charge|status|remarks
    if len(cells) < 8:
        raise StatementFormatError(no, f"{len(cells)} columns; expected a header or the 9-column layout")
    our_no, amount, currency, tx_time, settle_time, typ, fee, status = (c.strip() for c in cells[:8])
    remarks = cells[8].strip() if len(cells) > 8 else ""
    currency = currency.upper()
    if not _CURRENCY.match(currency):
        raise StatementFormatError(no, f"bad currency {currency!r}")
    kind = _TYPES.get(typ.upper())
    if kind is None:
        raise StatementFormatError(no, f"bad type {typ!r}")
    return {
        "channel": "alipay",
        "bill_date": _bill_date(no, tx_time),
        "record_type": kind,
        "our_no": our_no,
        "channel_no": None,
        "status": _STATUS.get(status.upper(), status.upper() or "SUCCESS"),
        "amount_minor": abs(_money(no, amount, currency)),
        "currency": currency,
        "fee_minor": abs(_money(no, fee, currency)),
        "channel_time": _iso(no, tx_time),
        "raw_line_no": no,
        "original_our_no": remarks if kind == "REFUND" and remarks else None,
        "settlement_minor": None,
        "settlement_time": _iso(no, settle_time),
        "rate": None,
        "file_status": status.upper() or None,
    }


def parse_rate_file(source: Iterable[str | bytes] | str | bytes) -> dict[str, dict]:
    """forex_rate_file: `Date|Time|Currency|Rate[|...]`, no header -> {currency: {rate, at}}.

    rate is a Decimal (CNY per one unit of the currency); at is the line's own ISO-8601 UTC time
    (currencies may carry different dates). A later line for the same currency wins.
    """
    out: dict[str, dict] = {}
    for no, line in _lines(source):
        if not line.strip():
            continue
        if no > MAX_RATE_LINES:
            raise StatementFormatError(no, "too many lines for a rate file")
        if line.startswith("<"):
            raise StatementFormatError(no, "not a rate file (error answer)")
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4:
            raise StatementFormatError(no, "expected Date|Time|Currency|Rate")
        date, time, currency, rate_text = cells[:4]
        if not _CURRENCY.match(currency):
            raise StatementFormatError(no, f"bad currency {currency!r}")
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            raise StatementFormatError(no, f"bad rate {rate_text!r}") from None
        if not rate.is_finite() or rate <= 0:
            raise StatementFormatError(no, f"bad rate {rate_text!r}")
        at = _iso(no, date + time)
        out[currency] = {"rate": rate, "at": at}
    return out


class FastRows:
    """A compare/liquidation file read for reconciliation's fast path (`match`).

    The file is read in blocks of about a megabyte, each decoded and split into lines at once; each
    row is split once and matched from its text where it can be. A row gets that chance only when it
    has the header's width and every field the full parse checks and matching does not convert is
    good (type, order number, payment and settlement times, rate); its fee and settlement are read
    by `line` when the row is kept for storing. Every other line (odd text, a line that is not UTF-8,
    a file without a header row (V2013), an error answer) goes to `full`: parse_compare_file of the
    header and that line, which gives the record or the error the full parse gives. (An error
    answer's first cell, '<...' or 'file download failed', is no order number Kauri has, so such a
    line never matches from its text either.)"""

    status_words = _STATUS  # a row's status is the file's letter; the record's word is this map's

    def __init__(self, source: Iterable[bytes]):
        self.source = source
        self.header: str | None = None
        self.last: list[bytes] = []
        self._columns: _Columns | None = None
        self._text: TextLines | None = None

    @property
    def ended_cleanly(self) -> bool:
        """The file's last line ended with a newline (what the truncation check asks)."""
        return self._text is None or self._text.ended_cleanly

    def match(self, tm, slow) -> None:
        """Every line of the file, in order: a row matched from its text (`tm`, a TextMatch: its test
        is inlined here) or `slow(line_no, line)` (the full parse and the matcher)."""
        expected, get, seen, mark, statuses, sums, keep, took = tm.hot()
        matched = 0
        line_no = 0
        col = None
        good_rates: set[str] = {""}      # rate texts the full parse reads as they stand
        last_time = last_settled = None  # rows of one second sit together: each time is checked once
        times_ok = False
        good_days: dict[str, bool] = {}
        try:
            self._text = TextLines(self.source)
            for lines in self._text:
                if col is None:  # up to the header row
                    for start, line in enumerate(lines, start=1):
                        line_no += 1
                        raw = self._text.raw(line_no, line)
                        text = (raw if isinstance(raw, str) else raw.decode("gbk", errors="replace"))
                        text = text.rstrip("\r\n").lstrip("\ufeff")
                        if len(text) > MAX_LINE_CHARS:
                            raise StatementFormatError(line_no, "line too long")
                        if not text.strip():
                            continue
                        cells = text.split("|")
                        if _norm(cells[0]) != "partner_transaction_id":
                            slow(line_no, raw)  # V2013, or not a statement at all
                            continue
                        self.header = text
                        col = self._columns = _Columns([_norm(c) for c in cells])
                        width, pad = (col.width if col.width > 1 else -1), col.pad
                        i_no, i_type, i_status, i_ccy, i_amount, i_fee, i_rate, i_time, i_settled = (
                            col.partner_transaction_id, col.type, col.status, col.currency, col.amount, col.fee,
                            col.rate, col.payment_time, col.settlement_time)
                        break
                    else:
                        continue
                    lines = lines[start:]
                # The rows: the hot loop. Too long a line (for the full parse too, perhaps) goes to it.
                long_lines = max(map(len, lines), default=0) > MAX_LINE_CHARS
                for line in lines:
                    line_no += 1
                    v = line.split("|")
                    if len(v) != width or (long_lines and len(line) > MAX_LINE_CHARS):
                        if line == "\n" or line.strip():
                            slow(line_no, self._text.raw(line_no, line))
                        continue
                    if pad:
                        v.append("")
                    at = v[i_time]
                    settled = v[i_settled]
                    if at != last_time or settled != last_settled:
                        last_time, last_settled = at, settled
                        times_ok = _time_ok(at, good_days) and _settle_time(settled) is not _BAD
                    rate = v[i_rate]
                    typ = v[i_type]
                    no = v[i_no]
                    if times_ok and no and (rate in good_rates or _good_rate(rate, good_rates)):
                        if typ == "P":
                            key = no
                        elif typ == "R":
                            key = mark + no
                        else:
                            slow(line_no, line)
                            continue
                        exp = get(key)
                        currency = v[i_ccy]
                        if exp is not None and v[i_amount] == exp.amount_text and currency == exp.currency \
                                and statuses.get(v[i_status]) == exp.status \
                                and (exp.fee_text is None or v[i_fee] == exp.fee_text):
                            if keep is not None or exp.shown_rate is not None:
                                took(exp, no, rate, line_no, line)
                            expected[key] = seen
                            matched += 1
                            sums[currency] += exp.amount if typ == "P" else -exp.amount
                            continue
                    slow(line_no, line)
        finally:
            tm.matched += matched

    def full(self, line_no: int, raw: str | bytes) -> dict | None:
        """The line as parse_compare_file reads it after the header (None: a line it skips)."""
        try:
            record = next(parse_compare_file([self.header, raw] if self.header else [raw]), None)
        except StatementFormatError as exc:
            raise StatementFormatError(line_no, exc.reason) from None
        if record is not None:
            record["raw_line_no"] = line_no
        return record

    def line(self, exp, line_no: int, line: str) -> tuple:
        """A row matched from its text: the record's facts beyond those Kauri's record fixed, read as the
        full parse reads them (so a bad fee or settlement fails the file here, at this line):
        (channel_no, fee, time, settlement, rate)."""
        v, col = line.lstrip("\ufeff").split("|"), self._columns
        if col.pad:
            v.append("")
        settlement, rate = v[col.settlement], v[col.rate].strip()
        return (v[col.transaction_id].strip(), abs(_money(line_no, v[col.fee], exp.currency)),
                _times(v[col.payment_time])[1],
                _money(line_no, settlement, exp.currency) if settlement.strip() else None, rate or None)


_BAD = object()
def _rate_text(text: str):
    rate = text.strip()
    if not rate:
        return None
    try:
        Decimal(rate)
    except InvalidOperation:
        return _BAD
    return rate


# A dashed Beijing time of a valid clock on a date _times reads by slicing: _times(text) is not None.
_CLOCK = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]").fullmatch


def _time_ok(text: str, good_days: dict[str, bool]) -> bool:
    """_times(text) is not None: by pattern and a remembered date where it can, else by _times itself."""
    if _CLOCK(text) is not None:
        day = text[:10]
        good = good_days.get(day)
        if good is None:
            good = _day_and_before(text[:4], text[5:7], text[8:10]) is not None
            if len(good_days) < 64:
                good_days[day] = good
        if good:
            return True
    try:
        return _times(text) is not None
    except (ValueError, OverflowError):
        return False  # the full parse raises it, at its turn among the row's checks


def _good_rate(text: str, known: set[str]) -> bool:
    """A rate the full parse reads as it stands (remembered: a day has a few)."""
    if _rate_text(text) != text:
        return False
    if len(known) < 256:
        known.add(text)
    return True


def _settle_time(text: str):
    try:
        return None if not text.strip() or _times(text) is not None else _BAD
    except (ValueError, OverflowError):
        return _BAD


read_statement = parse_compare_file  # the name reconciliation reads every channel's statements by
