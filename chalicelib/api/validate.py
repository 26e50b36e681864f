"""Reading merchant requests: bounded JSON bodies and strictly typed fields, each with a clear error."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from chalicelib.api.errors import ApiError, invalid

MAX_AMOUNT = 100_000_000  # 1,000,000.00 in a 2-decimal currency: anything above is a mistake
MAX_DEPTH = 8             # our deepest request (payment -> payer -> value) is 2 levels: no JSON parser recursion

# What no field may hold: C0/C1 controls and DEL, lone surrogates (not encodable in UTF-8, so they crash
# DynamoDB writes and channel signing) and Unicode noncharacters (U+FDD0-FDEF, U+xFFFE/xFFFF).
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
                       + "".join(f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000))
                       + "]")
_JSON_TOKEN = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape, a quote or a bracket


def json_body(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None or raw == b"":
        return {}
    if len(raw) > max_bytes:
        raise ApiError(413, "invalid_request_error", "body_too_large", f"request body is over {max_bytes} bytes")
    if _depth(raw) > MAX_DEPTH:
        raise invalid("body_invalid", f"request body is nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(raw.decode("utf-8"), parse_float=_no_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        msg = str(exc) if isinstance(exc, _FloatSeen) else "request body is not valid JSON"
        raise invalid("body_invalid", msg) from None
    if not isinstance(data, dict):
        raise invalid("body_invalid", "request body must be a JSON object")
    texts(data)
    return data


def _depth(raw: bytes) -> int:
    """How deep the JSON text nests, counted before parsing (the parser recurses once per level).

    One linear pass over quotes, escapes and brackets; stops as soon as the limit is passed.
    """
    depth = deepest = 0
    in_string = False
    for m in _JSON_TOKEN.finditer(raw):
        token = m.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or token[:1] == b"\\":
            continue
        elif token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        else:
            depth -= 1
    return deepest


def text_problem(value: str) -> str | None:
    """Why a piece of outside text cannot be stored, signed or sent to a channel (None: it can)."""
    bad = _BAD_TEXT.search(value)
    if bad is None:
        return None
    c = bad.group()
    if "\ud800" <= c <= "\udfff":
        return "is not valid Unicode (lone surrogate)"
    if ord(c) < 0xA0:
        return "must not contain control characters"
    return "must not contain Unicode noncharacters"


def texts(value: Any, param: str | None = None) -> None:
    """Every string (and object key) anywhere in a parsed request must be storable text; else a 400."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise invalid("parameter_invalid", f"{param or 'text'} {problem}", param)
    elif isinstance(value, dict):
        for k, v in value.items():
            texts(k, param)  # a bad key is never echoed back: name its parent
            texts(v, k if param is None else f"{param}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            texts(v, f"{param}[{i}]" if param else f"[{i}]")


class _FloatSeen(ValueError):
    pass


def _no_float(text: str):
    raise _FloatSeen(f"amounts are integers in minor units; got {text}")


def _no_constant(text: str):
    raise ValueError(text)


def required(data: dict, name: str) -> Any:
    if name not in data or data[name] is None:
        raise invalid("parameter_missing", f"{name} is required", name)
    return data[name]


def integer(data: dict, name: str, minimum: int = 1, maximum: int = MAX_AMOUNT, default: Any = ...) -> int:
    if default is not ... and data.get(name) is None:
        return default
    v = required(data, name)
    if type(v) is not int:
        raise invalid("parameter_invalid", f"{name} must be an integer", name)
    if not minimum <= v <= maximum:
        raise invalid("parameter_out_of_range", f"{name} must be between {minimum} and {maximum}", name)
    return v


def string(data: dict, name: str, max_len: int = 255, default: Any = ..., pattern: str | None = None,
           choices: tuple[str, ...] | None = None) -> str:
    if default is not ... and data.get(name) is None:
        return default
    v = required(data, name)
    if not isinstance(v, str):
        raise invalid("parameter_invalid", f"{name} must be a string", name)
    if not v or len(v) > max_len:
        raise invalid("parameter_invalid", f"{name} must be 1-{max_len} characters", name)
    problem = text_problem(v)
    if problem:
        raise invalid("parameter_invalid", f"{name} {problem}", name)
    if pattern and not re.fullmatch(pattern, v):
        raise invalid("parameter_invalid", f"{name} has an invalid format", name)
    if choices and v not in choices:
        raise invalid("parameter_invalid", f"{name} must be one of {list(choices)}", name)
    return v


def url(data: dict, name: str, default: Any = ..., https_only: bool = False) -> str | None:
    """An absolute URL; `https_only` URLs (where we send a shopper's browser) also carry no credentials."""
    v = string(data, name, max_len=2000, default=default)
    if v is None:
        return None
    schemes = ("https",) if https_only else ("https", "http")
    try:
        parts = urlsplit(v)
        ok = parts.scheme in schemes and bool(parts.hostname) and parts.port != 0 and " " not in v
    except ValueError:  # "https://[::1" or a port that is not a number
        ok = False
    if not ok:
        raise invalid("parameter_invalid", f"{name} must be an absolute {'/'.join(schemes)} URL", name)
    if https_only and ("@" in parts.netloc or any(ch in v for ch in "\\\r\n\t ")):
        raise invalid("parameter_invalid", f"{name} must not carry credentials or whitespace", name)
    return v


def ip_address(data: dict, name: str, default: Any = ...) -> str | None:
    v = string(data, name, max_len=45, default=default)
    if v is None:
        return None
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise invalid("parameter_invalid", f"{name} must be an IPv4 or IPv6 address", name) from None


def string_map(data: dict, name: str, max_keys: int = 20, max_len: int = 500) -> dict[str, str]:
    v = data.get(name)
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > max_keys:
        raise invalid("parameter_invalid", f"{name} must be an object of at most {max_keys} string values", name)
    for k, val in v.items():
        if not isinstance(val, str) or not k or len(k) > 40 or len(val) > max_len:
            raise invalid("parameter_invalid", f"{name} values must be strings (keys 1-40, values <= {max_len})",
                          name)
        texts(k, name)
        texts(val, f"{name}.{k}")
    return dict(v)


def only(data: dict, allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise invalid("parameter_unknown", f"unknown parameter {extra[0]}", extra[0])
