"""The downloadbill text (spec §9) -> standard statement records, one line at a time.

Columns are found by header NAME (Chinese Variant A/B or English Variant C), so extra or moved
columns do not matter. Data rows carry a backtick before every value; header rows do not.
"""
from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Iterable, Iterator

from chalicelib import clock
from chalicelib.channels.blocks import TextLines
from chalicelib.channels.wechat import wire
from chalicelib.money import MoneyError, minor_from_major

CHANNEL = "wechat"
MAX_LINE_CHARS = 16 * 1024

# canonical key -> accepted header names (normalised: lower case, "(...)" and spaces removed)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "time": ("交易时间", "transactiontime"),
    "sub_mch_id": ("子商户号", "特约商户号", "subvendorid"),
    "transaction_id": ("微信订单号", "wechatordernumber"),
    "out_trade_no": ("商户订单号", "vendorordernumber"),
    "trade_status": ("交易状态", "transactionstatus"),
    "currency": ("货币种类", "currencytype"),
    "total": ("总金额", "订单金额", "totalamount"),
    "refund_id": ("微信退款单号", "wechatrefundnumber"),
    "out_refund_no": ("商户退款单号", "vendorrefundnumber"),
    "refund_amount": ("退款金额", "refundamount"),
    "refund_status": ("退款状态", "refundstatus"),
    "fee": ("手续费", "fee", "servicecharge"),
}
_REQUIRED = ("time", "transaction_id", "out_trade_no", "trade_status", "currency", "total", "fee")


class StatementError(ValueError):
    """The file is not a WeChat bill we can read; `line_no` says where."""

    def __init__(self, message: str, line_no: int = 0):
        super().__init__(f"line {line_no}: {message}" if line_no else message)
        self.line_no = line_no


def _normalise(name: str) -> str:
    out, depth = [], 0
    for ch in name:
        if ch in "(（":
            depth += 1
        elif ch in ")）":
            depth = max(0, depth - 1)
        elif depth == 0 and not ch.isspace():
            out.append(ch.lower())
    return "".join(out)


def _header_map(cells: list[str], line_no: int) -> dict[str, int]:
    index = {}
    for pos, cell in enumerate(cells):
        index.setdefault(_normalise(cell), pos)
    found = {}
    for key, names in _COLUMNS.items():
        for name in names:
            if name in index:
                found[key] = index[name]
                break
    missing = [k for k in _REQUIRED if k not in found]
    if missing:
        raise StatementError(f"bill header lacks columns {missing}", line_no)
    return found


def _lines(source: str | bytes | Iterable[str] | Iterable[bytes]) -> Iterator[str]:
    if isinstance(source, bytes):
        source = source.decode("utf-8-sig")
    if isinstance(source, str):
        source = io.StringIO(source)  # iterates lazily, no list of a million lines
    first = True
    for line in source:
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        if first:
            line = line.lstrip("\ufeff")
            first = False
        yield line.rstrip("\r\n")


def _minor(text: str, currency: str, line_no: int) -> int:
    try:
        return minor_from_major(text or "0", currency)
    except MoneyError as exc:
        raise StatementError(str(exc), line_no) from None


_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PLAIN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}").fullmatch


@lru_cache(maxsize=64)
def _day_before(day: str) -> str | None:
    """'YYYY-MM-DD' -> the day before it, ISO; None when it is no date or before 1001 (strptime decides)."""
    try:
        d = date(int(day[:4]), int(day[5:7]), int(day[8:10]))
    except ValueError:
        return None
    return (d - timedelta(days=1)).isoformat() if d.year > 1000 else None


def _times(text: str) -> tuple[str, str | None]:
    """A transaction time -> (its China date 'YYYY-MM-DD', channel_time 'YYYY-MM-DDTHH:MM:SSZ' in UTC).

    Exactly what strptime(text, _TIME_FORMAT) in CHINA_TZ, .date().isoformat() and clock.iso give, and
    ValueError where strptime raises it. A zero-padded valid time is read by slicing: China is UTC+8
    all year, so UTC has the same minutes and seconds, the hour 8 less, on the day before when the
    China hour is before 8. Anything else (single digits, extra spaces, an invalid field, years
    before 1001) goes through strptime. channel_time is None where clock.iso overflows (1 Jan of
    year 1 before 08:00): _channel_time raises that OverflowError where the record takes it, as before.
    """
    if _PLAIN_TIME(text) is not None:
        day = text[:10]
        day_before = _day_before(day)
        hour = int(text[11:13])
        if day_before is not None and hour < 24 and text[14:16] < "60" and text[17:19] < "60":
            if hour >= 8:
                return day, f"{day}T{hour - 8:02d}{text[13:19]}Z"
            return day, f"{day_before}T{hour + 16:02d}{text[13:19]}Z"
    at = datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=wire.CHINA_TZ)
    try:
        return at.date().isoformat(), clock.iso(at)
    except OverflowError:
        return at.date().isoformat(), None


def _channel_time(text: str) -> str:
    return clock.iso(datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=wire.CHINA_TZ))


def parse(source: str | bytes | Iterable[str] | Iterable[bytes], bill_date: str | None = None) -> Iterator[dict]:
    """Yield one standard record per detail row (payment or refund); summary rows are skipped.

    `bill_date` (yyyy-mm-dd) labels every record; without it each record takes its UTC+8 day.
    """
    columns: dict[str, int] | None = None
    width = 0
    in_summary = False
    last_time = day = channel_time = None
    for line_no, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise StatementError("line too long", line_no)
        if not line.startswith("`"):  # a header row
            if columns is None:
                width = len(line.split(","))
                columns = _header_map(line.split(","), line_no)
                # A column the header lacks reads as "": its index is -1, the "" appended to each row.
                pad = any(key not in columns for key in _COLUMNS)
                (i_time, i_transaction_id, i_out_trade_no, i_trade_status, i_currency, i_total,
                 i_refund_id, i_out_refund_no, i_refund_amount, i_refund_status, i_fee) = (
                    columns.get(key, -1) for key in (
                        "time", "transaction_id", "out_trade_no", "trade_status", "currency", "total",
                        "refund_id", "out_refund_no", "refund_amount", "refund_status", "fee"))
            else:
                in_summary = True  # the second header introduces the summary row
            continue
        if columns is None:
            raise StatementError("data before the header", line_no)
        if in_summary:
            continue
        # Every value starts with a backtick, so ",`" splits cells even if a product name has a comma.
        values = line[1:].split(",`")
        if len(values) < width:
            raise StatementError("row has fewer columns than the header", line_no)
        if pad:
            values.append("")
        time_text = values[i_time].strip()
        if time_text != last_time:  # rows of one second sit together: parse each time once
            try:
                day, channel_time = _times(time_text)
            except ValueError:
                raise StatementError("bad transaction time", line_no) from None
            last_time = time_text
        currency = values[i_currency].strip()
        refund_no = values[i_out_refund_no].strip()
        trade_status = values[i_trade_status].strip()
        is_refund = trade_status == "REFUND" or (refund_no not in ("", "0"))
        if is_refund:
            our_no, channel_no = refund_no, values[i_refund_id].strip()
            status = values[i_refund_status].strip() or trade_status
            amount = _minor(values[i_refund_amount].strip(), currency, line_no)
        else:
            our_no, channel_no = values[i_out_trade_no].strip(), values[i_transaction_id].strip()
            status = trade_status
            amount = _minor(values[i_total].strip(), currency, line_no)
        yield {
            "channel": CHANNEL,
            "bill_date": bill_date or day,
            "record_type": "REFUND" if is_refund else "PAY",
            "our_no": our_no,
            "channel_no": channel_no,
            "status": status,
            "amount_minor": amount,
            "currency": currency,
            "fee_minor": _minor(values[i_fee].strip(), currency, line_no),
            "channel_time": channel_time or _channel_time(time_text),
            "raw_line_no": line_no,
        }
    if columns is None:
        raise StatementError("no bill header found")


# A dashed China time of a valid clock: _times reads it by slicing when its date is one _day_before reads.
_CLOCK = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]").fullmatch


class FastRows:
    """The bill read for reconciliation's fast path (`match`): no dicts, no amount or time conversion for
    a row that matches from its text. The file is read in blocks of about a megabyte, each decoded and
    split into lines at once; a detail row is split on ",`" as `parse` splits it, once. A row matches
    from its text only when its time is one `parse` reads; every other row, and every row whose text
    does not settle it (a mismatch, an odd amount, too few columns), goes to `full`: `parse` of the
    header plus that line, with every check. The first cell keeps the row's backtick, so a compared
    column there (no documented layout has one) never matches from text. The fee, the trade number
    and the time of a matched row are read by `line` when the row is kept for storing."""

    def __init__(self, source: Iterable[bytes]):
        self.source = source
        self.header: str | None = None
        self._last_time: tuple[str, str] = ("", "")
        self.last: list[bytes] = []      # the last two lines that are not blank (the summary, when whole)
        self._text: TextLines | None = None

    @staticmethod
    def minor(text: str, currency: str, line_no: int) -> int:
        return _minor(text.strip(), currency, line_no)

    def channel_time(self, text: str, line_no: int) -> str:
        """A row's time as the record carries it (UTC ISO-8601); rows of one second sit together."""
        if text != self._last_time[0]:
            try:
                self._last_time = (text, _times(text.strip())[1] or _channel_time(text.strip()))
            except ValueError:
                raise StatementError("bad transaction time", line_no) from None
        return self._last_time[1]

    @property
    def ended_cleanly(self) -> bool:
        """The file's last line ended with a newline (what the truncation check asks)."""
        return self._text is None or self._text.ended_cleanly

    def match(self, tm, slow) -> None:
        """Every line of the bill, in order: a detail row matched from its text (`tm`, a TextMatch: its
        test is inlined here) or `slow(line_no, line)` (the full parse and the matcher)."""
        expected, get, seen, mark, statuses, sums, keep, took = tm.hot()
        matched = 0
        self._text = TextLines(self.source)
        texts = iter(self._text)
        line_no = 0
        header = None
        for lines in texts:
            for start, line in enumerate(lines, start=1):  # up to the header
                line_no += 1
                if line == "\n":
                    self._text.raw(line_no, line).decode("utf-8")  # raises what `parse` raises on it
                if line_no == 1:
                    line = line.lstrip("\ufeff")
                if not line.strip():
                    continue
                if len(line) > MAX_LINE_CHARS:
                    raise StatementError("line too long", line_no)
                if line[:1] == "`":
                    raise StatementError("data before the header", line_no)
                header = line
                break
            if header is not None:
                break
        else:
            raise StatementError("no bill header found")
        cells = header.split(",")
        cols = _header_map(cells, line_no)
        self.header, width = header, len(cells)
        pad = any(key not in cols for key in _COLUMNS)
        (self._i_time, self._i_txn, i_trade_no, i_status, i_ccy, i_total, self._i_refund_id, i_refund_no,
         i_refund_amount, i_refund_status, i_fee) = (cols.get(key, -1) for key in (
             "time", "transaction_id", "out_trade_no", "trade_status", "currency", "total", "refund_id",
             "out_refund_no", "refund_amount", "refund_status", "fee"))
        i_time, self._i_fee = self._i_time, i_fee
        last_time = ""
        good_days: dict[str, bool] = {}
        lines, carry = lines[start:], self._last_two(lines[:start], [])  # carry: the last two lines so far
        try:
            while lines is not None:
                long_lines = max(map(len, lines), default=0) > MAX_LINE_CHARS
                for n, line in enumerate(lines):  # the detail rows: the hot loop
                    line_no += 1
                    if line[:1] != "`":
                        if line == "\n":
                            slow(line_no, self._text.raw(line_no, line))
                        elif line.strip():  # the summary header: the details are done
                            self._tail(line_no, lines[n:], texts, self._last_two(lines[:n], carry))
                            return
                        continue
                    v = line.split(",`")
                    if len(v) < width or (long_lines and len(line) > MAX_LINE_CHARS):
                        slow(line_no, line)  # `parse` says why
                        continue
                    if pad:
                        v.append("")
                    at = v[i_time]
                    if at != last_time:  # checked as `parse` checks it, once per second of the day
                        last_time = at if self._time_ok(at[1:] if i_time == 0 else at, good_days) else None
                    refund_no = v[i_refund_no]
                    if refund_no == "" or refund_no == "0":  # (a REFUND row without its number: no match)
                        key, amount, status = v[i_trade_no], v[i_total], v[i_status]
                        sign = 1
                    else:
                        key, amount, status = mark + refund_no, v[i_refund_amount], v[i_refund_status] or v[i_status]
                        sign = -1
                    exp = get(key)
                    currency = v[i_ccy]
                    if exp is not None and amount == exp.amount_text and currency == exp.currency \
                            and statuses.get(status) == exp.status \
                            and (exp.fee_text is None or v[i_fee] == exp.fee_text) and last_time is not None:
                        if keep is not None or exp.shown_rate is not None:
                            took(exp, exp.our_no, None, line_no, line)
                        expected[key] = seen
                        matched += 1
                        sums[currency] += sign * exp.amount
                        continue
                    slow(line_no, line)
                carry = self._last_two(lines, carry)
                lines = next(texts, None)
            self.last = carry  # no summary rows: the truncation check says so
        finally:
            tm.matched += matched

    @staticmethod
    def _time_ok(text: str, good_days: dict[str, bool]) -> bool:
        """`parse` reads this transaction time (to a time the record can carry)."""
        text = text.strip()
        if _CLOCK(text) is not None:
            day = text[:10]
            good = good_days.get(day)
            if good is None:
                good = good_days[day] = _day_before(day) is not None
            if good:
                return True
        try:
            return _times(text)[1] is not None
        except ValueError:
            return False

    def _tail(self, line_no: int, lines: list[str], texts: Iterator[list[str]], before: list[bytes]) -> None:
        """From the summary header on, `parse` reads nothing but still refuses a line too long or not
        UTF-8; the file's last two lines that are not blank stay for the truncation check."""
        last: list[bytes] = []
        while lines is not None:
            for line in lines:
                if line == "\n":
                    self._text.raw(line_no, line).decode("utf-8")
                if line.strip():
                    if len(line) > MAX_LINE_CHARS:
                        raise StatementError("line too long", line_no)
                    last = last[-1:] + [line.encode("utf-8")]
                line_no += 1
            lines = next(texts, None)
        self.last = (before + last)[-2:]

    def _last_two(self, lines: list[str], before: list[bytes]) -> list[bytes]:
        """The last two lines that are not blank (what LineTail keeps) of the lines before, then `lines`."""
        last: list[bytes] = []
        for line in reversed(lines):
            if len(last) == 2:
                break
            if line.strip():
                last.insert(0, line.encode("utf-8") if line != "\n" else b"\n")
        return (before + last)[-2:]

    def _cell(self, v: list[str], i: int) -> str:
        return (v[0][1:] if i == 0 else v[i]).strip()

    def full(self, line_no: int, raw: str | bytes) -> dict:
        """The line after the header, parsed and checked by `parse` (errors name its own line number)."""
        try:
            record = next(parse([self.header, raw.rstrip("\r\n") if isinstance(raw, str) else raw]))
        except StatementError as exc:
            raise StatementError(str(exc).split(": ", 1)[-1], line_no) from None
        record["raw_line_no"] = line_no
        return record

    def line(self, exp, line_no: int, line: str) -> tuple:
        """A row matched from its text: the record's facts beyond those Kauri's record fixed, read as
        `parse` reads them (a bad fee fails the file here, at this line): (channel_no, fee, time,
        settlement, rate); a bill has no settlement or rate columns."""
        v = line.split(",`")
        v.append("")
        channel_no = self._cell(v, self._i_refund_id if exp.kind == "refund" else self._i_txn)
        return (channel_no, self.minor(self._cell(v, self._i_fee), exp.currency, line_no),
                self.channel_time(self._cell(v, self._i_time), line_no), None, None)


read_statement = parse  # the name reconciliation reads every channel's statements by
