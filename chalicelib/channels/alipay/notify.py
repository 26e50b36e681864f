"""Verify and parse Alipay's asynchronous notification; verify (only) the synchronous browser return.

Async (spec §3): form POST -> signature over whatever arrived (sign_type named by the message) ->
our partner id -> `notify_verify` round trip must answer `true` -> Notification.
Return URL (spec §4): the shopper's browser carries it, so it is only ever shown, never applied.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Callable, Mapping

from chalicelib.channels.alipay import TRADE_STATUS, FormError, parse_beijing, parse_form, signing
from chalicelib.channels.base import (
    ChannelPayment,
    ChannelRefund,
    ChannelStatus,
    InvalidNotification,
    Notification,
    RefundStatus,
)
from chalicelib.money import Money, MoneyError

_NOTIFY_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_ORDER_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def _cfg(cfg=None):
    from chalicelib import secrets

    if cfg is not None:
        return secrets.resolve(cfg)
    from chalicelib import settings

    return secrets.resolve(settings.get().alipay)


def check_signature(fields: Mapping[str, str], cfg=None) -> None:
    """Raise InvalidNotification unless `sign` matches under the sign_type the message names."""
    cfg = _cfg(cfg)
    sign_type = (fields.get("sign_type") or "").upper()
    if sign_type not in signing.SIGN_TYPES:
        raise InvalidNotification("missing or unsupported sign_type")
    if not fields.get("sign"):
        raise InvalidNotification("missing sign")
    if not signing.verify(fields, sign_type, md5_key=cfg.md5_key, public_pem=cfg.alipay_public_key_pem):
        raise InvalidNotification("bad signature")


def check_ids(fields: Mapping[str, str], cfg=None) -> None:
    """Ids that name the seller, when present, must be ours (spec: partner / seller_id = our PID)."""
    cfg = _cfg(cfg)
    for key in ("partner", "seller_id", "alipay_seller_id"):
        if key in fields and fields[key] != cfg.partner:
            raise InvalidNotification(f"{key} is not ours")


def verify(body: bytes, confirm: Callable[[str], bool], cfg=None) -> Notification:
    """The whole async check. `confirm(notify_id)` performs notify_verify at the gateway."""
    try:
        fields = parse_form(body)
    except FormError as exc:
        raise InvalidNotification(f"unreadable body: {exc}") from None
    check_signature(fields, cfg)
    check_ids(fields, cfg)
    notification = to_notification(fields)
    notify_id = fields.get("notify_id", "")
    if not _NOTIFY_ID.match(notify_id):
        raise InvalidNotification("missing or malformed notify_id")
    if not confirm(notify_id):
        raise InvalidNotification("notify_verify did not answer true")
    return notification


def verify_return(params: Mapping[str, str], cfg=None) -> dict[str, str]:
    """Signature check of the browser return (return_url query). For showing a page ONLY: it changes no state.

    Returns the verified fields without `sign`; raises InvalidNotification when they do not verify.
    """
    fields = {str(k): str(v) for k, v in dict(params).items()}
    if len(fields) > 80 or any(len(k) > 64 or len(v) > 2048 for k, v in fields.items()):
        raise InvalidNotification("return parameters too large")
    check_signature(fields, cfg)
    check_ids(fields, cfg)
    return {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}


def _money(value: str, currency: str) -> Money:
    try:
        return Money.from_major(value, currency)
    except (MoneyError, AttributeError):
        raise InvalidNotification("bad amount or currency") from None


def _paid_at(fields: Mapping[str, str]) -> datetime | None:
    for key in ("gmt_payment", "alipay_pay_time"):
        if fields.get(key):
            return parse_beijing(fields[key])
    return None


def to_notification(fields: Mapping[str, str]) -> Notification:
    """Verified fields -> Notification (payment or refund). Format errors raise InvalidNotification."""
    raw = {k: v for k, v in fields.items() if k != "sign"}
    if "out_return_no" in fields or "refund_status" in fields:
        refund_no = fields.get("out_return_no", "")
        if not _ORDER_NO.match(refund_no):
            raise InvalidNotification("bad out_return_no")
        status = {"REFUND_SUCCESS": RefundStatus.SUCCEEDED, "REFUND_FAIL": RefundStatus.FAILED}.get(
            fields.get("refund_status", ""), RefundStatus.PROCESSING)
        amount = None
        if fields.get("return_amount") and fields.get("currency"):
            amount = _money(fields["return_amount"], fields["currency"])
        return Notification(kind="refund", refund=ChannelRefund(
            channel_refund_id=refund_no, status=status, amount=amount, raw=raw))

    order_no = fields.get("out_trade_no", "")
    if not _ORDER_NO.match(order_no):
        raise InvalidNotification("bad out_trade_no")
    state = TRADE_STATUS.get(fields.get("trade_status", ""))
    if state is None:
        raise InvalidNotification("unknown trade_status")
    currency = fields.get("currency") or fields.get("trans_currency") or ""
    if not fields.get("total_fee") or not currency:
        raise InvalidNotification("missing total_fee or currency")
    trade_no = fields.get("trade_no") or None
    if trade_no is not None and len(trade_no) > 64:
        raise InvalidNotification("bad trade_no")
    return Notification(kind="payment", payment=ChannelPayment(
        channel_order_id=order_no,
        status=ChannelStatus(state),
        amount=_money(fields["total_fee"], currency),
        channel_transaction_id=trade_no,
        paid_at=_paid_at(fields) if state == "paid" else None,
        merchant_channel_id=fields.get("secondary_merchant_id") or None,
        raw=raw,
    ))
