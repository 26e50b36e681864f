"""The one interface every payment channel implements, and the types that cross it.

A channel speaks its own wire protocol and nothing else: it never imports a service or the store.
Services hand it plain request objects and get plain results back.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.money import Money


_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,63}")


class ChannelError(Exception):
    """The channel refused or failed a call. `retryable` says whether the same call may succeed later.

    `refused` says the call certainly had no effect at the channel: the channel answered a readable,
    verified "no", or the request was never sent. Anything else (timeout, reset, an HTTP error page, an
    unreadable or unverifiable answer) may have reached the channel, and money decisions must not
    treat it as a refusal."""

    def __init__(self, code: str, message: str = "", retryable: bool = False, refused: bool = False):
        # `code` reaches merchants (API errors, a refund's failure_code): only a channel's documented
        # token, never its free text; the text stays in `message`, for our logs.
        code = code if isinstance(code, str) and _CODE.fullmatch(code) else "CHANNEL_ERROR"
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.refused = refused and not retryable


class InvalidNotification(Exception):
    """A callback that failed verification (signature, ids, format). Never applied."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ChannelStatus(str, enum.Enum):
    PENDING = "pending"     # created, not paid yet
    PAID = "paid"
    FAILED = "failed"
    CLOSED = "closed"       # closed or expired at the channel
    REFUNDED = "refunded"   # paid, then (partly) refunded: still counts as paid
    NOT_FOUND = "not_found"


class RefundStatus(str, enum.Enum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_FOUND = "not_found"   # the channel does not list the refund (never reached it, or its list lags)
    # The channel paid the refund out but it could not reach the payer (WeChat CHANGE, 退款异常): the money
    # has left and a person routes it on the channel's platform. Never a refusal, never a success.
    ABNORMAL = "abnormal"


@dataclass(frozen=True)
class MerchantChannelConfig:
    """Per-merchant ids at a channel (WeChat sub_mch_id, Alipay secondary merchant, ...)."""
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


@dataclass(frozen=True)
class CreateRequest:
    payment_id: str
    channel_order_id: str          # our order number at the channel (WeChat out_trade_no)
    amount: Money                  # what the channel is asked to charge (NZD, or CNY for PayEase)
    flow: str                      # native | jsapi | h5 | web | wap | qr | bank
    description: str
    notify_url: str
    expires_at: datetime
    merchant: MerchantChannelConfig
    return_url: str | None = None
    client_ip: str = "127.0.0.1"
    payer: dict[str, str] = field(default_factory=dict)  # e.g. {"openid": ...}
    product_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateResult:
    next_action: dict[str, Any]    # {"type": "qr_code", "qr_code": ...} | {"type": "redirect", "url": ...} | jsapi params
    channel_data: dict[str, str] = field(default_factory=dict)  # e.g. prepay_id (no secrets)


@dataclass(frozen=True)
class OrderRef:
    channel_order_id: str
    merchant: MerchantChannelConfig
    channel_transaction_id: str | None = None


@dataclass(frozen=True)
class ChannelPayment:
    """What the channel says about a payment, from a query or a verified notification."""
    channel_order_id: str
    status: ChannelStatus
    amount: Money | None = None               # in the currency the order was priced in
    payer_amount: Money | None = None         # what the shopper paid (CNY)
    rate: Decimal | None = None               # payer currency per one unit of amount currency
    channel_transaction_id: str | None = None
    paid_at: datetime | None = None
    merchant_channel_id: str | None = None    # e.g. sub_mch_id the channel reports
    raw: dict[str, str] = field(default_factory=dict)  # the fields received (verified), for ops


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str
    channel_refund_id: str          # our refund number at the channel (WeChat out_refund_no)
    payment: OrderRef
    total: Money                    # the original payment amount
    amount: Money                   # this refund
    reason: str = ""
    notify_url: str | None = None


@dataclass(frozen=True)
class ChannelRefund:
    channel_refund_id: str
    status: RefundStatus
    channel_refund_ref: str | None = None     # the channel's own refund id
    amount: Money | None = None
    raw: dict[str, str] = field(default_factory=dict)
    # What a refund notification says it belongs to, checked against our refund before it is applied.
    # Minor units of the order's currency (WeChat's refund notification does not name the currency).
    channel_order_id: str | None = None
    channel_transaction_id: str | None = None
    refund_minor: int | None = None
    order_total_minor: int | None = None


@dataclass(frozen=True)
class Notification:
    """A verified callback. `kind` is 'payment' or 'refund'."""
    kind: str
    payment: ChannelPayment | None = None
    refund: ChannelRefund | None = None
    # Some channels batch several notifications in one request (PayEase).
    more: tuple["Notification", ...] = ()


@dataclass(frozen=True)
class Ack:
    """The body a channel expects back from our callback endpoint."""
    body: str
    content_type: str = "text/plain"
    status_code: int = 200


class Channel(Protocol):
    name: str
    flows: tuple[str, ...]
    # Optional: set to a currency code when the channel can only charge that currency (PayEase: CNY).
    # Payments priced in another currency then lock an FX quote and send the channel the quoted amount.
    charge_currency: str | None
    # True when the channel can neither close nor expire an order (PayEase): Kauri closes it on its own
    # clock at expires_at, and money arriving later is the callback rule's case, never a reason to wait.
    closes_on_kauri_clock: bool
    # True when sending a refund again under the same refund number is the same refund at the channel
    # (so a refund the channel never saw can simply be sent again); False where it would pay twice.
    resends_refunds_safely: bool

    def create(self, req: CreateRequest) -> CreateResult: ...
    def query(self, ref: OrderRef) -> ChannelPayment: ...
    def close(self, ref: OrderRef) -> ChannelPayment | None:
        """Close an unpaid order. None: closed, nobody can pay it. A ChannelPayment (status REFUNDED):
        the channel's close reversed a payment made meanwhile (Alipay cancel's `action: refund`), which
        Kauri must book as paid and then refunded. Raises ChannelError when it cannot close."""
        ...
    def refund(self, req: RefundRequest) -> ChannelRefund: ...
    def refund_query(self, req: RefundRequest) -> ChannelRefund: ...
    def parse_notification(self, body: bytes, headers: dict[str, str]) -> Notification: ...
    def ack(self, ok: bool, message: str = "") -> Ack: ...

    def unknown_order_payable_until(self, flow: str, created_at: datetime, expires_at: datetime) -> datetime | None:
        """Until when an order the channel answers "not found" for could still be opened and paid.

        None: an order the channel does not know can never be paid (it is created when we create it).
        A time: the channel creates the trade only when the shopper opens its page, so "not found" is no
        proof; the payment stays open until this hard deadline."""
        ...


def streamed(chunks, too_large: ChannelError, log_event: str, **log_fields: Any):
    """A body streaming from the channel (chalicelib.http.iter_bounded) with its failures as ChannelError:
    a network error while reading is NETWORK (retryable: nothing was stored), a body past its bound is
    `too_large`."""
    import requests

    from chalicelib import http, log

    try:
        yield from chunks
    except requests.RequestException as exc:
        log.warning(log_event, error=type(exc).__name__, **log_fields)
        raise ChannelError("NETWORK", type(exc).__name__, retryable=True) from None
    except http.BodyTooLarge:
        raise too_large from None


def join_bounded(chunks, max_bytes: int, too_large: ChannelError) -> bytes:
    """The rest of a streamed answer that should be a short one (an error answer), at most `max_bytes`."""
    out = b""
    for chunk in chunks:
        out += chunk
        if len(out) > max_bytes:
            raise too_large
    return out
