"""PayEase statement lines -> Kauri standard records (streaming).

ASSUMPTION: PayEase publishes no order day-list (peers.md §3.6: only per-order query and the
refund day-list were found). This is the most plausible shape, modelled on those XML replies'
field names, in the pipe-separated text Chinese gateways commonly use for 对账 files:

    # comment lines and blank lines are ignored
    type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason     <- header, any column order
    PAY|20240101-444-0001||1|100.00|0|0.60|20240101103000|招商银行|
    REF|20240101-444-0001|R0001|1|40.00|0|0.00|20240102090000||rf_1 partial

- `type` PAY | REF; `pstatus` for PAY 1 paid / 3 failed (server-notify codes), for REF
  0 processing / 1 succeeded / 2 failed; `time` yyyymmddHHMMSS Beijing time; `fee` optional.
- Encoding: UTF-8 or GBK (each line decoded on its own; GBK-era files are common).
- A payment's our_no is the serial inside oid (Kauri's channel_order_id) and its channel_no the
  full oid (PayEase has no separate trade number). A refund's our_no is the first word of
  `refreason` (Kauri writes its refund number there), else the serial; channel_no is `refid`.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Iterable, Iterator

from chalicelib import clock
from chalicelib.channels.blocks import Blocks
from chalicelib.channels.payease.client import CHINA_TZ
from chalicelib.channels.payease.notify import AMOUNT_RE, MONEYTYPE_CURRENCY, OID_RE, decode_text
from chalicelib.money import MoneyError, minor_from_major

CHANNEL = "payease"
REQUIRED_COLUMNS = ("type", "oid", "pstatus", "amount", "moneytype", "time")
MAX_LINE_CHARS = 2048
PAY_STATUS = {"1": "paid", "3": "failed"}
REFUND_STATUS = {"0": "processing", "1": "succeeded", "2": "failed"}
_DATE_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class StatementError(ValueError):
    def __init__(self, line_no: int, reason: str):
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no
        self.reason = reason


def _norm_date(text: str) -> str:
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(f"bill_date {text!r} is not yyyymmdd or yyyy-mm-dd")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}"


def _money(text: str, currency: str, line_no: int, what: str) -> int:
    if not AMOUNT_RE.match(text):
        raise StatementError(line_no, f"bad {what} {text!r}")
    try:
        return minor_from_major(text, currency)
    except MoneyError:
        raise StatementError(line_no, f"bad {what} {text!r}") from None


_PLAIN_TIME = re.compile(r"[0-9]{14}").fullmatch


@lru_cache(maxsize=64)
def _day_and_before(yyyymmdd: str) -> tuple[str, str] | None:
    """'YYYYMMDD' -> ('YYYY-MM-DD', the day before it); None when no date or before 1001 (strptime decides)."""
    try:
        d = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None
    return (d.isoformat(), (d - timedelta(days=1)).isoformat()) if d.year > 1000 else None


def _times(text: str) -> tuple[str, str | None]:
    """A `time` (yyyymmddHHMMSS, Beijing) -> (Beijing date 'YYYY-MM-DD', channel_time in UTC).

    Exactly what strptime(text, "%Y%m%d%H%M%S") in CHINA_TZ, strftime("%Y-%m-%d") and clock.iso give,
    and ValueError where strptime raises it. Fourteen digits of a valid time are read by slicing:
    Beijing is UTC+8 all year, so UTC has the same minutes and seconds, the hour 8 less, on the day
    before when the Beijing hour is before 8. Anything else (fewer digits, an invalid field, years
    before 1001) goes through strptime. channel_time is None where clock.iso overflows (1 Jan of
    year 1 before 08:00): _channel_time raises that OverflowError where the record takes it, as before.
    """
    if _PLAIN_TIME(text) is not None:
        days = _day_and_before(text[:8])
        hour = int(text[8:10])
        if days is not None and hour < 24 and text[10:12] < "60" and text[12:14] < "60":
            if hour >= 8:
                return days[0], f"{days[0]}T{hour - 8:02d}:{text[10:12]}:{text[12:14]}Z"
            return days[0], f"{days[1]}T{hour + 16:02d}:{text[10:12]}:{text[12:14]}Z"
    local = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
    try:
        return local.strftime("%Y-%m-%d"), clock.iso(local)
    except OverflowError:
        return local.strftime("%Y-%m-%d"), None


def _channel_time(text: str) -> str:
    return clock.iso(datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ))


def _decode(raw: bytes | bytearray) -> str:
    """decode_text(raw), without the UnicodeDecodeError its UTF-8 attempt raises on every GBK line.

    'replace' marks each invalid UTF-8 sequence with U+FFFD. No U+FFFD: valid UTF-8, decode_text's
    first answer. U+FFFD while raw holds no encoded U+FFFD (EF BF BD): not UTF-8, so decode_text's
    answer is its strict GB18030 one when there is one. Otherwise decode_text decides.
    """
    text = raw.decode("utf-8", "replace")
    if "\ufffd" not in text:
        return text
    if b"\xef\xbf\xbd" not in raw:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError:
            pass
    return decode_text(raw)


class _Columns:
    """Where each column sits in the header (dict(zip(columns, cells)): the LAST cell of a repeated
    name wins). The optional fee, refid and refreason read as "" when the header lacks them: index
    -1, the "" parse appends to each row when `pad`."""

    def __init__(self, columns: list[str]):
        index = {name: pos for pos, name in enumerate(columns)}
        self.width = len(columns)
        (self.type, self.oid, self.pstatus, self.amount, self.moneytype, self.time) = (
            index[name] for name in ("type", "oid", "pstatus", "amount", "moneytype", "time"))
        self.fee, self.refid, self.refreason = (index.get(name, -1) for name in ("fee", "refid", "refreason"))
        self.pad = -1 in (self.fee, self.refid, self.refreason)
        self.last_time: str | None = None  # the last row's time and its _times(): rows of a second sit together
        self.last_times: tuple[str, str | None] = ("", None)


def parse(lines: Iterable[bytes | str], bill_date: str | None = None) -> Iterator[dict]:
    """Yield one standard record per data line. Raises StatementError (with the line number)."""
    fixed_date = _norm_date(bill_date) if bill_date else None
    columns: list[str] | None = None
    col: _Columns | None = None
    for line_no, line in enumerate(lines, start=1):
        text = _decode(line) if isinstance(line, (bytes, bytearray)) else line
        text = text.lstrip("\ufeff").rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS:
            raise StatementError(line_no, "line too long")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        cells = text.split("|")
        if columns is None:
            columns = [c.strip().lower() for c in cells]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise StatementError(line_no, "header lacks " + ",".join(missing))
            col = _Columns(columns)
            continue
        if len(cells) != col.width:
            raise StatementError(line_no, f"{len(cells)} cells, header has {col.width}")
        if col.pad:
            cells.append("")
        yield _record(cells, col, line_no, fixed_date)
    if columns is None:
        raise StatementError(0, "no header line")


def _record(cells: list[str], col: _Columns, line_no: int, fixed_date: str | None) -> dict:
    """One data row -> a record: the checks, values and errors of the per-row dict this replaced."""
    raw_type = cells[col.type].strip()
    kind = raw_type.upper()
    if kind not in ("PAY", "REF"):
        raise StatementError(line_no, f"unknown type {raw_type!r}")
    oid = cells[col.oid].strip()
    m = OID_RE.match(oid)
    if not m:
        raise StatementError(line_no, "bad oid")
    serial = m.group(3)
    moneytype = cells[col.moneytype].strip()
    currency = MONEYTYPE_CURRENCY.get(moneytype)
    if currency is None:
        raise StatementError(line_no, f"unsupported moneytype {moneytype!r}")
    statuses = PAY_STATUS if kind == "PAY" else REFUND_STATUS
    pstatus = cells[col.pstatus].strip()
    status = statuses.get(pstatus)
    if status is None:
        raise StatementError(line_no, f"unknown pstatus {pstatus!r}")
    time_text = cells[col.time].strip()
    if time_text != col.last_time:
        try:
            col.last_times = _times(time_text)
        except ValueError:
            raise StatementError(line_no, f"bad time {time_text!r}") from None
        col.last_time = time_text
    day, channel_time = col.last_times
    fee_text = cells[col.fee].strip() or "0"
    if kind == "PAY":
        our_no, channel_no = serial, oid
    else:
        channel_no = cells[col.refid].strip()
        if not channel_no:
            raise StatementError(line_no, "refund without refid")
        reason_word = cells[col.refreason].strip().split(" ", 1)[0]
        our_no = reason_word or serial
    return {
        "channel": CHANNEL,
        "bill_date": fixed_date or day,
        "record_type": "payment" if kind == "PAY" else "refund",
        "our_no": our_no,
        "channel_no": channel_no,
        "status": status,
        "amount_minor": _money(cells[col.amount].strip(), currency, line_no, "amount"),
        "currency": currency,
        "fee_minor": _money(fee_text, currency, line_no, "fee"),
        "channel_time": channel_time or _channel_time(time_text),
        "raw_line_no": line_no,
    }


def parse_file(path: str, bill_date: str | None = None) -> Iterator[dict]:
    with open(path, "rb") as fh:
        yield from parse(fh, bill_date)


_OID_BYTES = re.compile(OID_RE.pattern.encode())
_OID_HEAD = re.compile(rb"[0-9]{8}-[0-9A-Za-z]{1,20}").fullmatch  # an oid before "-<serial>", as OID_RE reads it
_KIND = {b"PAY": "payment", b"REF": "refund"}
_PAY_WORDS = {k.encode(): v for k, v in PAY_STATUS.items()}
_REFUND_WORDS = {k.encode(): v for k, v in REFUND_STATUS.items()}
_CURRENCIES = {k.encode(): v for k, v in MONEYTYPE_CURRENCY.items()}
_CLOCK = re.compile(rb"[0-9]{8}(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]").fullmatch  # _times reads it by slicing


class FastRows:
    """The day list read for reconciliation's fast path (`match`).

    Read in blocks of about a megabyte, split into lines and cells as bytes; only the fields compared
    are decoded (they are ASCII; the bank name and the reason may be GBK). A row matches from its text
    only when the full parse reads it alike: the header's width, a good type, oid, status, time and
    (refunds) refid, and cells split as bytes where the text splits: a line that is not UTF-8 has each
    cell before its last that holds non-ASCII bytes decode as GB18030 by itself (else a GBK character
    could end in the byte "|"), or it is parsed in full. A payment's order number is its oid's serial:
    Kauri only ever sends PayEase a serial SERIAL_RE accepts (payease.client), so a serial found among
    Kauri's records is one OID_RE reads too. Every other line goes to `full`: `parse` of the header
    and that line. The fee, oid or refid and time of a matched row are read by `line` when the row is
    kept for storing."""

    def __init__(self, source: Iterable[bytes]):
        self.source = source
        self.header: str | None = None
        self.last: list[bytes] = []
        self.ended_cleanly = True
        self._col: _Columns | None = None

    def match(self, tm, slow) -> None:
        """Every line of the day list, in order: a row matched from its text (`tm`, a TextMatch: its
        test is inlined here) or `slow(line_no, raw)` (the full parse and the matcher)."""
        expected, get, seen, mark, statuses, sums, keep, took = tm.hot()
        matched = 0
        blocks = Blocks(self.source)
        line_no = 0
        col = None
        heads: dict[bytes, bool] = {}    # an oid's "yyyymmdd-mid" -> OID_RE reads it
        whole: dict[bytes, bool] = {}    # a text cell -> it decodes as GB18030 by itself (bank names repeat)
        last_time = None
        try:
            for block in blocks:
                lines = (block.replace(b"\r\n", b"\n") if b"\r" in block else block).split(b"\n")
                if not lines[-1]:
                    lines.pop()
                start = 0
                if col is None:
                    for start, raw in enumerate(lines, start=1):
                        line_no += 1
                        text = _decode(raw).lstrip("\ufeff").rstrip("\r\n")
                        if len(text) > MAX_LINE_CHARS:
                            raise StatementError(line_no, "line too long")
                        if not text.strip() or text.lstrip().startswith("#"):
                            continue
                        columns = [c.strip().lower() for c in text.split("|")]
                        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
                        if missing:
                            raise StatementError(line_no, "header lacks " + ",".join(missing))
                        self.header, col = text, _Columns(columns)
                        self._col = col
                        width, pad = col.width, col.pad
                        i_type, i_oid, i_status, i_amount, i_ccy, i_fee, i_time, i_refid, i_reason = (
                            col.type, col.oid, col.pstatus, col.amount, col.moneytype, col.fee, col.time,
                            col.refid, col.refreason)
                        # Cells a matched row has in ASCII; any other before the last may hold GBK text.
                        ascii_cells = {i_type, i_oid, i_status, i_amount, i_ccy, i_time}
                        free = tuple(i for i in range(width - 1) if i not in ascii_cells)
                        break
                    else:
                        continue
                    lines = lines[start:]
                try:
                    block.decode("utf-8")
                    utf8 = True              # every line is UTF-8: a "|" byte is always a "|"
                except UnicodeDecodeError:
                    utf8 = False
                long_lines = max(map(len, lines), default=0) > MAX_LINE_CHARS
                for raw in lines:  # the rows: the hot loop
                    line_no += 1
                    v = raw.split(b"|")
                    if len(v) != width or (long_lines and len(raw) > MAX_LINE_CHARS):
                        slow(line_no, raw)  # or a blank line, a comment: `full` says
                        continue
                    if not utf8 and not raw.isascii():  # (each text cell before the last decodes by itself)
                        for i in free:
                            cell = v[i]
                            if not cell.isascii() and not (whole.get(cell) or _whole(cell, whole)):
                                break
                        else:
                            i = -1
                        if i != -1:
                            slow(line_no, raw)
                            continue
                    if pad:
                        v.append(b"")
                    at, oid, typ = v[i_time], v[i_oid], v[i_type]
                    if at != last_time:
                        last_time = at if _CLOCK(at) is not None and _day_and_before(at[:8].decode()) is not None \
                            else None
                    if typ == b"PAY":
                        head, _, serial = oid.rpartition(b"-")
                        good = heads.get(head)
                        if good is None:
                            good = _OID_HEAD(head) is not None
                            if len(heads) < 256:
                                heads[head] = good
                        status = _PAY_WORDS.get(v[i_status])
                        key = serial.decode("ascii", "replace")
                        sign = 1
                    elif typ == b"REF":
                        m = _OID_BYTES.match(oid)
                        refid = v[i_refid]
                        word = v[i_reason].strip().split(b" ", 1)[0] if i_reason >= 0 else b""
                        good = m is not None and refid.strip(_ASCII_SPACE) != b"" and refid.isascii() \
                            and word.isascii()
                        status = _REFUND_WORDS.get(v[i_status])
                        key = mark + (word or m.group(3)).decode() if good else ""
                        sign = -1
                    else:
                        good = False
                    if not good or status is None or last_time is None:
                        slow(line_no, raw)
                        continue
                    exp = get(key)
                    currency = _CURRENCIES.get(v[i_ccy])
                    if exp is not None and v[i_amount].decode("ascii", "replace") == exp.amount_text \
                            and currency == exp.currency and statuses.get(status) == exp.status \
                            and (exp.fee_text is None
                                 or (v[i_fee] or b"0.00").decode("ascii", "replace") == exp.fee_text):
                        if keep is not None or exp.shown_rate is not None:
                            took(exp, exp.our_no, None, line_no, raw)
                        expected[key] = seen
                        matched += 1
                        sums[currency] += sign * exp.amount
                        continue
                    slow(line_no, raw)
            if col is None:
                raise StatementError(0, "no header line")
            self.ended_cleanly = blocks.ended_cleanly
        finally:
            tm.matched += matched

    def full(self, line_no: int, raw: bytes) -> dict | None:
        """The line as `parse` reads it after the header (None: a line it skips, a blank or a comment)."""
        try:
            record = next(parse([self.header, raw]), None)
        except StatementError as exc:
            raise StatementError(line_no, exc.reason) from None
        if record is not None:
            record["raw_line_no"] = line_no
        return record

    def line(self, exp, line_no: int, raw: bytes) -> tuple:
        """A row matched from its text: the record's facts beyond those Kauri's record fixed, read as
        `parse` reads them (a bad fee fails the file here, at this line): (channel_no, fee, time,
        settlement, rate)."""
        col = self._col
        v = _decode(raw).lstrip("\ufeff").rstrip("\r\n").split("|")
        if col.pad:
            v.append("")
        channel_no = (v[col.oid] if exp.kind == "payment" else v[col.refid]).strip()
        at = v[col.time].strip()
        fee = _money(v[col.fee].strip() or "0", exp.currency, line_no, "fee")
        return channel_no, fee, _times(at)[1] or _channel_time(at), None, None


def _whole(cell: bytes, known: dict[bytes, bool]) -> bool:
    """The cell decodes as GB18030 by itself: no GBK character of it takes the "|" after it as its second
    byte, so the cells split as bytes are the cells of the text. Remembered (bank names repeat)."""
    try:
        cell.decode("gb18030")
        ok = True
    except UnicodeDecodeError:
        ok = False
    if len(known) < 4096:
        known[cell] = ok
    return ok


_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() strips of ASCII


read_statement = parse  # the name reconciliation reads every channel's statements by
