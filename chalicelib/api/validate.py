"""Reading merchant requests: bounded JSON bodies and strictly typed fields, each with a clear error."""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from chalicelib.api.errors import ApiError, invalid

MAX_AMOUNT = 100_000_000  # 1,000,000.00 in a 2-decimal currency: anything above is a mistake


def json_body(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None or raw == b"":
        return {}
    if len(raw) > max_bytes:
        raise ApiError(413, "invalid_request_error", "body_too_large", f"request body is over {max_bytes} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_float=_no_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        msg = str(exc) if isinstance(exc, _FloatSeen) else "request body is not valid JSON"
        raise invalid("body_invalid", msg) from None
    if not isinstance(data, dict):
        raise invalid("body_invalid", "request body must be a JSON object")
    return data


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
    if any(ord(c) < 32 for c in v):
        raise invalid("parameter_invalid", f"{name} must not contain control characters", name)
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
    parts = urlsplit(v)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise invalid("parameter_invalid", f"{name} must be an absolute {'/'.join(schemes)} URL", name)
    if https_only and ("@" in parts.netloc or any(ch in v for ch in "\\\r\n\t ")):
        raise invalid("parameter_invalid", f"{name} must not carry credentials or whitespace", name)
    return v


def string_map(data: dict, name: str, max_keys: int = 20, max_len: int = 500) -> dict[str, str]:
    v = data.get(name)
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > max_keys:
        raise invalid("parameter_invalid", f"{name} must be an object of at most {max_keys} string values", name)
    for k, val in v.items():
        if not isinstance(val, str) or len(k) > 40 or len(val) > max_len:
            raise invalid("parameter_invalid", f"{name} values must be strings (keys <= 40, values <= {max_len})",
                          name)
    return dict(v)


def only(data: dict, allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise invalid("parameter_unknown", f"unknown parameter {extra[0]}", extra[0])
