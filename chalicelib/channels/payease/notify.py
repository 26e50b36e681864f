"""Verify and parse what PayEase sends us: the server notify (batched) and the browser return.

Server notify (spec §3.5): a form POST whose fields `v_oid`, `v_pmode`, `v_pstatus`, `v_pstring`,
`v_amount`, `v_moneytype` each carry 1-4 values joined by `|_|`, counted by `v_count`;
`v_mac` = HMAC(v_oid+v_pmode+v_pstatus+v_pstring+v_count) over the joined strings as received,
`v_md5money` = HMAC(v_amount+v_moneytype). Status codes there: 1 paid, 3 rejected.

Order ids: `v_oid` is `yyyymmdd-<v_mid>-<serial>` and the serial is Kauri's channel_order_id, so a
ChannelPayment carries the serial as `channel_order_id` and the full v_oid as
`channel_transaction_id` (PayEase has no other trade number; refunds and queries need the v_oid).

Browser return (spec §3.4): GET to `v_url` with `v_pstatus` 1 pending / 20 paid / 30 failed,
`v_md5info` = HMAC(v_oid+v_pstatus+v_pstring+v_pmode), `v_md5money` as above. It is verified so
the page can say the truth, but only the server notify may change a payment's state.

`v_sign` (PayEase's RSA signature) is not checked: we hold no PayEase public key; the MD5 MACs are
what most integrations rely on (spec §3.4).
"""
from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import unquote_to_bytes

from chalicelib import log
from chalicelib.channels.base import ChannelPayment, ChannelStatus, InvalidNotification
from chalicelib.channels.payease import signing
from chalicelib.money import Money, MoneyError

MAX_BATCH = 4
MAX_FIELDS = 64
MAX_VALUE_BYTES = 4096

# The server notify uses 1/3; 20/30 (browser-return codes) are accepted too because several
# integrations report the notify carrying them (the brief's reading). No notify code means pending.
NOTIFY_STATUS = {"1": ChannelStatus.PAID, "3": ChannelStatus.FAILED,
                 "20": ChannelStatus.PAID, "30": ChannelStatus.FAILED}
RETURN_STATUS = {"1": ChannelStatus.PENDING, "20": ChannelStatus.PAID, "30": ChannelStatus.FAILED}

# v_moneytype is numeric; Kauri's PayEase channel is CNY only (domestic-card merchant).
MONEYTYPE_CURRENCY = {"0": "CNY"}
CURRENCY_MONEYTYPE = {v: k for k, v in MONEYTYPE_CURRENCY.items()}

# v_oid = yyyymmdd-<v_mid>-<serial>; Kauri uses its channel_order_id (e.g. pay_x1y2...) as the serial.
OID_RE = re.compile(r"^(\d{8})-([0-9A-Za-z]{1,20})-([0-9A-Za-z_]{1,40})$")
SERIAL_RE = re.compile(r"^[0-9A-Za-z_]{1,40}$")
AMOUNT_RE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,2})?$")
_KEY_RE = re.compile(rb"^[A-Za-z0-9_]{1,32}$")

NOTIFY_REQUIRED = ("v_oid", "v_pmode", "v_pstatus", "v_pstring", "v_amount", "v_moneytype",
                   "v_count", "v_mac", "v_md5money")
RETURN_REQUIRED = ("v_oid", "v_pstatus", "v_pstring", "v_pmode", "v_amount", "v_moneytype",
                   "v_md5info", "v_md5money")
_BATCHED = ("v_oid", "v_pmode", "v_pstatus", "v_pstring", "v_amount", "v_moneytype")


def header(headers: Mapping[str, str] | None, name: str) -> str:
    for k, v in (headers or {}).items():
        if k.lower() == name.lower():
            return v or ""
    return ""


def charset_of(content_type: str) -> str | None:
    m = re.search(r"charset=\"?([A-Za-z0-9_\-]+)", content_type or "")
    return m.group(1).lower() if m else None


def decode_text(raw: bytes, charset: str | None = None) -> str:
    """Field bytes as text: the declared charset, else UTF-8, else GB18030 (a superset of GBK)."""
    for enc in ([charset] if charset else []) + ["utf-8", "gb18030"]:
        try:
            return raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("gb18030", "replace")


def parse_form(body: bytes, max_bytes: int = 65536) -> dict[str, bytes]:
    """An x-www-form-urlencoded body as {name: raw value bytes}. Strict: bounded, no duplicates."""
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidNotification("body is not bytes")
    if not body:
        raise InvalidNotification("empty body")
    if len(body) > max_bytes:
        raise InvalidNotification("body too large")
    pairs = bytes(body).strip().split(b"&")
    if len(pairs) > MAX_FIELDS:
        raise InvalidNotification("too many fields")
    out: dict[str, bytes] = {}
    for pair in pairs:
        if not pair:
            continue
        name, sep, value = pair.partition(b"=")
        name = unquote_to_bytes(name.replace(b"+", b" "))
        if not sep or not _KEY_RE.match(name):
            raise InvalidNotification("malformed field")
        key = name.decode("ascii")
        if key in out:
            raise InvalidNotification(f"duplicate field {key}")
        raw = unquote_to_bytes(value.replace(b"+", b" "))
        if len(raw) > MAX_VALUE_BYTES:
            raise InvalidNotification(f"field {key} too long")
        out[key] = raw
    return out


def _ascii(raw: bytes, name: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidNotification(f"{name} is not ASCII") from None


def _amount(text: str, moneytype: str) -> Money:
    currency = MONEYTYPE_CURRENCY.get(moneytype)
    if currency is None:
        raise InvalidNotification(f"unsupported v_moneytype {moneytype!r}")
    if not AMOUNT_RE.match(text):
        raise InvalidNotification("bad v_amount")
    try:
        money = Money.from_major(text, currency)
    except MoneyError:
        raise InvalidNotification("bad v_amount") from None
    if money.amount <= 0:
        raise InvalidNotification("bad v_amount")
    return money


def _oid(text: str, expected_mid: str | None) -> str:
    """The serial (our channel_order_id) of a v_oid, checked."""
    m = OID_RE.match(text)
    if not m:
        raise InvalidNotification("bad v_oid")
    if expected_mid is not None and m.group(2) != expected_mid:
        raise InvalidNotification("v_oid belongs to another merchant")
    return m.group(3)


def _mac_matches(key: str, raw_parts: list[bytes], text_parts: list[str], given: str) -> str | None:
    """Which form of the fields `given` signs: the bytes as received, else the text re-encoded."""
    if signing.check(key, list(raw_parts), given, encodings=(signing.GBK,)):
        return "as-received"
    return signing.check(key, list(text_parts), given)


def verify_notification(body: bytes, headers: Mapping[str, str] | None, key: str,
                        expected_mid: str | None = None, max_bytes: int = 65536) -> list[ChannelPayment]:
    """Verify a server notify and return one ChannelPayment per batched order (1..4), in order."""
    fields = parse_form(body, max_bytes)
    missing = [f for f in NOTIFY_REQUIRED if f not in fields]
    if missing:
        raise InvalidNotification("missing " + ",".join(missing))
    count_text = _ascii(fields["v_count"], "v_count")
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_BATCH:
        raise InvalidNotification("bad v_count")
    count = int(count_text)
    charset = charset_of(header(headers, "content-type"))
    texts = {name: decode_text(raw, charset) for name, raw in fields.items()}

    given_mac = _ascii(fields["v_mac"], "v_mac")
    matched = _mac_matches(key, [fields[f] for f in signing.NOTIFY_FIELDS],
                           [texts[f] for f in signing.NOTIFY_FIELDS], given_mac)
    if not matched:
        raise InvalidNotification("v_mac mismatch")
    given_money = _ascii(fields["v_md5money"], "v_md5money")
    if not _mac_matches(key, [fields[f] for f in signing.MONEY_FIELDS],
                        [texts[f] for f in signing.MONEY_FIELDS], given_money):
        raise InvalidNotification("v_md5money mismatch")
    if matched != "as-received":
        log.info("payease.notify_mac_encoding", encoding=matched)

    columns: dict[str, list[str]] = {}
    for name in _BATCHED:
        parts = texts[name].split(signing.BATCH_SEPARATOR)
        if len(parts) != count:
            raise InvalidNotification(f"{name} has {len(parts)} values, v_count is {count}")
        columns[name] = parts

    payments = []
    seen: set[str] = set()
    for i in range(count):
        row = {name: columns[name][i] for name in _BATCHED}
        serial = _oid(row["v_oid"], expected_mid)
        if serial in seen:
            raise InvalidNotification("duplicate order in batch")
        seen.add(serial)
        status = NOTIFY_STATUS.get(row["v_pstatus"])
        if status is None:
            raise InvalidNotification(f"unknown v_pstatus {row['v_pstatus']!r}")
        amount = _amount(row["v_amount"], row["v_moneytype"])
        payments.append(ChannelPayment(
            channel_order_id=serial, channel_transaction_id=row["v_oid"], status=status,
            amount=amount, payer_amount=amount, raw={**row, "v_count": count_text, "index": str(i), "mac_encoding": matched},
        ))
    return payments


def verify_return(params: Mapping[str, str], key: str, expected_mid: str | None = None) -> ChannelPayment:
    """Verify the browser return to v_url. For showing a result page only: never change state on it."""
    if not isinstance(params, Mapping):
        raise InvalidNotification("no parameters")
    values: dict[str, str] = {}
    for name in RETURN_REQUIRED:
        value = params.get(name)
        if not isinstance(value, str) or (value == "" and name not in ("v_pstring", "v_pmode")):
            raise InvalidNotification(f"missing {name}")
        if len(value) > 256:
            raise InvalidNotification(f"{name} too long")
        values[name] = value
    # latin-1: a GBK query string that a framework decoded byte-for-byte (mangled, but recoverable).
    encodings = signing.VERIFY_ENCODINGS + ("latin-1",)
    matched = signing.verify(key, values, signing.RETURN_INFO_FIELDS, values["v_md5info"], encodings)
    if not matched:
        raise InvalidNotification("v_md5info mismatch")
    if not signing.verify(key, values, signing.MONEY_FIELDS, values["v_md5money"]):
        raise InvalidNotification("v_md5money mismatch")
    serial = _oid(values["v_oid"], expected_mid)
    status = RETURN_STATUS.get(values["v_pstatus"])
    if status is None:
        raise InvalidNotification(f"unknown v_pstatus {values['v_pstatus']!r}")
    amount = _amount(values["v_amount"], values["v_moneytype"])
    raw = {k: v for k, v in values.items() if k not in ("v_md5info", "v_md5money")}
    raw["mac_encoding"] = matched
    return ChannelPayment(channel_order_id=serial, channel_transaction_id=values["v_oid"], status=status,
                          amount=amount, payer_amount=amount, raw=raw)
