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
from datetime import datetime
from typing import Iterable, Iterator

from chalicelib import clock
from chalicelib.channels.payease.client import CHINA_TZ
from chalicelib.channels.payease.notify import AMOUNT_RE, MONEYTYPE_CURRENCY, OID_RE, decode_text
from chalicelib.money import Money, MoneyError

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
        return Money.from_major(text, currency).amount
    except MoneyError:
        raise StatementError(line_no, f"bad {what} {text!r}") from None


def parse(lines: Iterable[bytes | str], bill_date: str | None = None) -> Iterator[dict]:
    """Yield one standard record per data line. Raises StatementError (with the line number)."""
    fixed_date = _norm_date(bill_date) if bill_date else None
    columns: list[str] | None = None
    for line_no, line in enumerate(lines, start=1):
        text = decode_text(line) if isinstance(line, (bytes, bytearray)) else line
        text = text.lstrip("\ufeff").rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS:
            raise StatementError(line_no, "line too long")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in text.split("|")]
        if columns is None:
            columns = [c.lower() for c in cells]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise StatementError(line_no, "header lacks " + ",".join(missing))
            continue
        if len(cells) != len(columns):
            raise StatementError(line_no, f"{len(cells)} cells, header has {len(columns)}")
        row = dict(zip(columns, cells))
        yield _record(row, line_no, fixed_date)
    if columns is None:
        raise StatementError(0, "no header line")


def _record(row: dict[str, str], line_no: int, fixed_date: str | None) -> dict:
    kind = row["type"].upper()
    if kind not in ("PAY", "REF"):
        raise StatementError(line_no, f"unknown type {row['type']!r}")
    oid = row["oid"]
    m = OID_RE.match(oid)
    if not m:
        raise StatementError(line_no, "bad oid")
    serial = m.group(3)
    currency = MONEYTYPE_CURRENCY.get(row["moneytype"])
    if currency is None:
        raise StatementError(line_no, f"unsupported moneytype {row['moneytype']!r}")
    statuses = PAY_STATUS if kind == "PAY" else REFUND_STATUS
    status = statuses.get(row["pstatus"])
    if status is None:
        raise StatementError(line_no, f"unknown pstatus {row['pstatus']!r}")
    try:
        local = datetime.strptime(row["time"], "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise StatementError(line_no, f"bad time {row['time']!r}") from None
    fee_text = row.get("fee", "") or "0"
    if kind == "PAY":
        our_no, channel_no = serial, oid
    else:
        channel_no = row.get("refid", "")
        if not channel_no:
            raise StatementError(line_no, "refund without refid")
        reason_word = (row.get("refreason", "") or "").split(" ", 1)[0]
        our_no = reason_word or serial
    return {
        "channel": CHANNEL,
        "bill_date": fixed_date or local.strftime("%Y-%m-%d"),
        "record_type": "payment" if kind == "PAY" else "refund",
        "our_no": our_no,
        "channel_no": channel_no,
        "status": status,
        "amount_minor": _money(row["amount"], currency, line_no, "amount"),
        "currency": currency,
        "fee_minor": _money(fee_text, currency, line_no, "fee"),
        "channel_time": clock.iso(local),
        "raw_line_no": line_no,
    }


def parse_file(path: str, bill_date: str | None = None) -> Iterator[dict]:
    with open(path, "rb") as fh:
        yield from parse(fh, bill_date)
