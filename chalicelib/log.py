"""Structured JSON logging. Callers pass fields; secrets never go in them."""
from __future__ import annotations

import json
import logging
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


def _clean(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        if any(word in k.lower() for word in _REDACT):
            out[k] = "[redacted]"
        else:
            out[k] = v
    return out


def event(name: str, level: int = logging.INFO, **fields) -> None:
    _ensure_output()
    _logger.log(level, json.dumps({"event": name, **_clean(fields)}, default=str, sort_keys=True))


def info(name: str, **fields) -> None:
    event(name, logging.INFO, **fields)


def warning(name: str, **fields) -> None:
    event(name, logging.WARNING, **fields)


def error(name: str, **fields) -> None:
    event(name, logging.ERROR, **fields)
