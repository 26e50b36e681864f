"""Alipay cross-border acquiring over the legacy MAPI gateway (`gateway.do`, MD5 / RSA2).

signing.py   pre-sign string and the MD5 / RSA / RSA2 algorithms
client.py    AlipayChannel: the wire protocol (create, query, close, refund, rates, statements)
notify.py    verify + parse the asynchronous notification; verify (only) the browser return
statement.py forex_compare_file / forex_liquidation_file / forex_rate_file -> standard records
sandbox.py   a simulator of gateway.do with the same wire format

This module holds the few protocol facts the others share; stdlib only (cold start).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

# Alipay stamps every time in Beijing time (GMT+8, no daylight saving).
BEIJING = timezone(timedelta(hours=8), "GMT+8")

# trade_status / alipay_trans_status -> our ChannelStatus value (spec §3, §6.2, §6.3).
TRADE_STATUS = {
    "WAIT_BUYER_PAY": "pending",
    "TRADE_SUCCESS": "paid",      # in-store: paid, still refundable
    "TRADE_FINISHED": "paid",     # online: paid; in-store: refund window over
    "TRADE_CLOSED": "closed",
}

# Bounds for anything Alipay (or someone pretending to be Alipay) sends us.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 80
MAX_VALUE_CHARS = 2048


class FormError(ValueError):
    pass


def beijing_str(dt: datetime) -> str:
    """`yyyy-MM-dd HH:mm:ss` in GMT+8 (notify_time, gmt_payment, timestamp)."""
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def beijing_compact(dt: datetime) -> str:
    """`yyyyMMddHHmmss` in GMT+8 (gmt_return, alipay_pay_time)."""
    return dt.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def parse_beijing(text: str) -> datetime | None:
    """Either Beijing time format -> aware UTC datetime; None when it is neither."""
    text = (text or "").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=BEIJING).astimezone(timezone.utc)
        except ValueError:
            continue
    return None


def parse_form(body: bytes | str, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """A strict, size-bounded form/query parse: UTF-8, no repeated keys, bounded field count and size."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if len(body) > max_bytes:
        raise FormError("body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("body is not UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise FormError("malformed or oversized form") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise FormError(f"repeated field {k[:40]}")
        if len(k) > 64 or len(v) > MAX_VALUE_CHARS:
            raise FormError("field too long")
        out[k] = v
    return out
