"""Structured JSON logging. Callers pass fields; secrets never go in them.

Every line carries request_id, merchant_id and payment_id (null when not known): app.py's middleware
binds the request id for each invocation, api.caller the merchant, and the code that learns which
payment a request or callback is about binds it (`bind`). The context lives in a contextvar, so it
never leaks from one invocation (or thread) into another.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys

_logger = logging.getLogger("kauri.events")
_logger.setLevel(logging.INFO)
_ready = False


def _ensure_output() -> None:
    """Lambda (and pytest) give the root logger a handler: use it. Elsewhere print to stderr ourselves."""
    global _ready
    if _ready:
        return
    from chalicelib import settings

    _logger.setLevel(settings.get().log_level.upper())
    if not logging.getLogger().handlers and not _logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _logger.addHandler(handler)
        _logger.propagate = False
    _ready = True

_REDACT = ("key", "secret", "sign", "password", "authorization", "token")
# Values that are secrets whatever their field is called: merchant API keys, webhook signing secrets.
_SECRET_VALUE = re.compile(r"(sk_(?:live|test)_[A-Za-z0-9_]+|whsec_[A-Za-z0-9_\-]+)")
CORRELATION = ("request_id", "merchant_id", "payment_id")

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("kauri_log_context", default={})


def bind(**fields) -> None:
    """Add fields (request_id, merchant_id, payment_id) to every line logged from here on in this context."""
    current = dict(_context.get())
    current.update({k: v for k, v in fields.items() if v is not None})
    _context.set(current)


def clear() -> None:
    """Nothing bound from here on in this context."""
    _context.set({})


@contextlib.contextmanager
def scope(**fields):
    """One invocation: only these fields bound inside; whatever was bound outside is back afterwards
    (the local stack and tests run the channel sandboxes' calls to us inside our own requests)."""
    token = _context.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def bound() -> dict:
    return dict(_context.get())


def _clean(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        if any(word in k.lower() for word in _REDACT):
            out[k] = "[redacted]"
        elif isinstance(v, str) and ("sk_" in v or "whsec_" in v):
            out[k] = _SECRET_VALUE.sub("[redacted]", v)
        else:
            out[k] = v
    return out


def event(name: str, level: int = logging.INFO, **fields) -> None:
    _ensure_output()
    line = dict.fromkeys(CORRELATION)
    line.update(_context.get())
    line.update(_clean(fields))
    line["event"] = name
    _logger.log(level, json.dumps(line, default=str, sort_keys=True))


def info(name: str, **fields) -> None:
    event(name, logging.INFO, **fields)


def warning(name: str, **fields) -> None:
    event(name, logging.WARNING, **fields)


def error(name: str, **fields) -> None:
    event(name, logging.ERROR, **fields)
