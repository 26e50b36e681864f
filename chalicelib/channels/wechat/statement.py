"""The downloadbill text (spec §9) -> standard statement records, one line at a time.

Columns are found by header NAME (Chinese Variant A/B or English Variant C), so extra or moved
columns do not matter. Data rows carry a backtick before every value; header rows do not.
"""
from __future__ import annotations

import io
from datetime import datetime
from typing import Iterable, Iterator

from chalicelib import clock
from chalicelib.channels.wechat import wire
from chalicelib.money import Money, MoneyError

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
        return Money.from_major(text or "0", currency).amount
    except MoneyError as exc:
        raise StatementError(str(exc), line_no) from None


def parse(source: str | bytes | Iterable[str] | Iterable[bytes], bill_date: str | None = None) -> Iterator[dict]:
    """Yield one standard record per detail row (payment or refund); summary rows are skipped.

    `bill_date` (yyyy-mm-dd) labels every record; without it each record takes its UTC+8 day.
    """
    columns: dict[str, int] | None = None
    width = 0
    in_summary = False
    for line_no, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise StatementError("line too long", line_no)
        if not line.startswith("`"):  # a header row
            if columns is None:
                width = len(line.split(","))
                columns = _header_map(line.split(","), line_no)
            else:
                in_summary = True  # the second header introduces the summary row
            continue
        if columns is None:
            raise StatementError("data before the header", line_no)
        if in_summary:
            continue
        # Every value starts with a backtick, so ",`" splits cells even if a product name has a comma.
        values = [v.strip() for v in line[1:].split(",`")]
        if len(values) < width:
            raise StatementError("row has fewer columns than the header", line_no)
        yield _record(columns, values, line_no, bill_date)
    if columns is None:
        raise StatementError("no bill header found")


def _record(columns: dict[str, int], values: list[str], line_no: int, bill_date: str | None) -> dict:
    def col(key: str) -> str:
        pos = columns.get(key)
        return values[pos] if pos is not None else ""

    try:
        at = datetime.strptime(col("time"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=wire.CHINA_TZ)
    except ValueError:
        raise StatementError("bad transaction time", line_no) from None
    currency = col("currency")
    refund_no = col("out_refund_no")
    is_refund = col("trade_status") == "REFUND" or (refund_no not in ("", "0"))
    if is_refund:
        our_no, channel_no = refund_no, col("refund_id")
        status = col("refund_status") or col("trade_status")
        amount = _minor(col("refund_amount"), currency, line_no)
    else:
        our_no, channel_no = col("out_trade_no"), col("transaction_id")
        status = col("trade_status")
        amount = _minor(col("total"), currency, line_no)
    return {
        "channel": CHANNEL,
        "bill_date": bill_date or at.date().isoformat(),
        "record_type": "REFUND" if is_refund else "PAY",
        "our_no": our_no,
        "channel_no": channel_no,
        "status": status,
        "amount_minor": amount,
        "currency": currency,
        "fee_minor": _minor(col("fee"), currency, line_no),
        "channel_time": clock.iso(at),
        "raw_line_no": line_no,
    }
