"""Alipay files -> plain records: forex_compare_file / forex_liquidation_file (spec §8) and
forex_rate_file (spec §7). Line by line, so a large file never sits in memory twice.

Standard record keys (shared with the other channels): channel, bill_date (YYYY-MM-DD, Beijing),
record_type PAY|REFUND, our_no, channel_no, status, amount_minor, currency, fee_minor,
channel_time (ISO-8601 UTC), raw_line_no. Alipay extras: original_our_no (refunds: the order, from
Remarks), settlement_minor, settlement_time, rate (Decimal text), file_status (the raw status letter).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Iterable, Iterator

from chalicelib.channels.alipay import BEIJING, parse_beijing
from chalicelib.money import Money, MoneyError

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
        return Money.from_major(text, currency).amount
    except MoneyError as exc:
        raise StatementFormatError(no, str(exc)) from None


def _iso(no: int, text: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    dt = parse_beijing(text)
    if dt is None:
        raise StatementFormatError(no, f"bad time {text!r}")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bill_date(no: int, text: str) -> str:
    dt = parse_beijing((text or "").strip())
    if dt is None:
        raise StatementFormatError(no, f"bad time {text!r}")
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d")


def _norm(name: str) -> str:
    return name.strip().lower()


def parse_compare_file(source: Iterable[str | bytes] | str | bytes) -> Iterator[dict]:
    """forex_compare_file (transactions) or forex_liquidation_file (settlement) -> standard records.

    Header-driven when a header row is present (V2017 16 columns and the 13-column variant);
    otherwise the V2013 positional layout (9 columns, no header).
    """
    header: list[str] | None = None
    for no, line in _lines(source):
        if not line.strip():
            continue
        cells = line.split("|")
        if header is None and _norm(cells[0]) == "partner_transaction_id":
            header = [_norm(c) for c in cells]
            continue
        if line.startswith("<") or line.lower().startswith("file download failed"):
            raise StatementFormatError(no, "not a statement (error answer)")
        if header is not None:
            if len(cells) < len(header):
                raise StatementFormatError(no, f"{len(cells)} columns, header has {len(header)}")
            yield _from_header(no, dict(zip(header, cells)))
        else:
            yield _from_v2013(no, cells)


def _from_header(no: int, row: dict[str, str]) -> dict:
    currency = row.get("currency", "").strip().upper()
    if not _CURRENCY.match(currency):
        raise StatementFormatError(no, f"bad currency {currency!r}")
    kind = _TYPES.get(row.get("type", "").strip().upper())
    if kind is None:
        raise StatementFormatError(no, f"bad type {row.get('type')!r}")
    our_no = row.get("partner_transaction_id", "").strip()
    if not our_no:
        raise StatementFormatError(no, "missing Partner_transaction_id")
    letter = row.get("status", "").strip().upper()
    payment_time = row.get("payment_time", "")
    rate = row.get("rate", "").strip()
    if rate:
        try:
            Decimal(rate)
        except InvalidOperation:
            raise StatementFormatError(no, f"bad rate {rate!r}") from None
    settlement = row.get("settlement", "")
    remarks = row.get("remarks", "").strip()
    return {
        "channel": "alipay",
        "bill_date": _bill_date(no, payment_time),
        "record_type": kind,
        "our_no": our_no,
        "channel_no": row.get("transaction_id", "").strip() or None,
        "status": _STATUS.get(letter, letter or "SUCCESS"),
        "amount_minor": abs(_money(no, row.get("amount", ""), currency)),
        "currency": currency,
        "fee_minor": abs(_money(no, row.get("fee", ""), currency)),
        "channel_time": _iso(no, payment_time),
        "raw_line_no": no,
        "original_our_no": remarks if kind == "REFUND" and remarks else None,
        "settlement_minor": _money(no, settlement, currency) if settlement.strip() else None,
        "settlement_time": _iso(no, row.get("settlement_time", "")),
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
