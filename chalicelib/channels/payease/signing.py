"""PayEase MACs: HMAC-MD5 (RFC 2104) over plain concatenated field values, lowercase hex.

Every PayEase message has its own field order (peers.md §3.3-3.6); the orders are the constants
below and nothing else decides what is signed. The gateway is GBK-era: Chinese values (bank name
`v_pmode`, status text `v_pstring`, consignee names) are hashed as GBK bytes. Integrations in the
wild also hash UTF-8, so verification accepts either and reports which one matched.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping

GBK = "gbk"
SIGN_ENCODING = GBK
VERIFY_ENCODINGS: tuple[str, ...] = (GBK, "utf-8")

# Batched server notifications join each field's per-order values with this literal.
BATCH_SEPARATOR = "|_|"

# Field orders, one per message (spec §3.3-3.6).
REQUEST_FIELDS = ("v_moneytype", "v_ymd", "v_amount", "v_rcvname", "v_oid", "v_mid", "v_url")  # v_md5info
RETURN_INFO_FIELDS = ("v_oid", "v_pstatus", "v_pstring", "v_pmode")                          # v_md5info
MONEY_FIELDS = ("v_amount", "v_moneytype")                                                   # v_md5money
NOTIFY_FIELDS = ("v_oid", "v_pmode", "v_pstatus", "v_pstring", "v_count")                     # v_mac
QUERY_FIELDS = ("v_mid", "v_oid")                                                            # v_mac
REFUND_FIELDS = ("v_mid", "v_oid", "v_refamount", "v_refoprt")                               # v_mac
REFUND_QUERY_FIELDS = ("v_mid", "v_oid")                                                     # v_mac
REFUND_DAY_FIELDS = ("v_mid", "v_ymd")                                                       # v_mac

Value = str | bytes


def _message(parts: Iterable[Value], encoding: str) -> bytes:
    out = bytearray()
    for part in parts:
        out += part if isinstance(part, bytes) else part.encode(encoding)
    return bytes(out)


def mac(key: str, parts: Iterable[Value], encoding: str = SIGN_ENCODING) -> str:
    """HMAC-MD5 of the concatenated parts (str encoded with `encoding`, bytes taken as-is)."""
    if not key:
        raise ValueError("PayEase MD5 key is not configured")
    return hmac.new(key.encode("utf-8"), _message(parts, encoding), hashlib.md5).hexdigest()


def sign(key: str, fields: Mapping[str, Value], order: tuple[str, ...], encoding: str = SIGN_ENCODING) -> str:
    """The MAC of `fields` in `order` (a missing field signs as empty, as the PHP references do)."""
    return mac(key, (fields.get(name, "") for name in order), encoding)


def check(key: str, parts: list[Value], given: str,
          encodings: tuple[str, ...] = VERIFY_ENCODINGS) -> str | None:
    """The encoding under which `given` is the MAC of `parts`, or None. Constant-time compares."""
    if not isinstance(given, str) or len(given) != 32:
        return None
    given_b = given.lower().encode("ascii", "replace")
    matched = None
    seen: set[bytes] = set()
    for enc in encodings:
        try:
            msg = _message(parts, enc)
        except UnicodeEncodeError:
            continue
        if msg in seen:
            continue
        seen.add(msg)
        expected = hmac.new(key.encode("utf-8"), msg, hashlib.md5).hexdigest().encode("ascii")
        if hmac.compare_digest(expected, given_b) and matched is None:
            matched = enc
    return matched


def verify(key: str, fields: Mapping[str, Value], order: tuple[str, ...], given: str,
           encodings: tuple[str, ...] = VERIFY_ENCODINGS) -> str | None:
    """`check` over `fields` in `order`: the matching encoding, or None if the MAC is wrong."""
    if not key:
        return None
    return check(key, [fields.get(name, "") for name in order], given, encodings)


# ---- one named helper per message, so call sites read like the spec --------------------------

def request_md5info(key: str, fields: Mapping[str, Value]) -> str:
    return sign(key, fields, REQUEST_FIELDS)


def return_md5info(key: str, fields: Mapping[str, Value]) -> str:
    return sign(key, fields, RETURN_INFO_FIELDS)


def md5money(key: str, fields: Mapping[str, Value]) -> str:
    return sign(key, fields, MONEY_FIELDS)


def notify_mac(key: str, fields: Mapping[str, Value]) -> str:
    return sign(key, fields, NOTIFY_FIELDS)


def query_mac(key: str, mid: str, oid: str) -> str:
    return sign(key, {"v_mid": mid, "v_oid": oid}, QUERY_FIELDS)


def refund_mac(key: str, mid: str, oid: str, refamount: str, refoprt: str) -> str:
    return sign(key, {"v_mid": mid, "v_oid": oid, "v_refamount": refamount, "v_refoprt": refoprt},
                REFUND_FIELDS)


def refund_query_mac(key: str, mid: str, oid: str) -> str:
    return sign(key, {"v_mid": mid, "v_oid": oid}, REFUND_QUERY_FIELDS)
