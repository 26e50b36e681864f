"""Structured JSON logging. Callers pass fields; secrets never go in them."""
from __future__ import annotations

import json
import logging
import sys

_logger = logging.getLogger("kauri")
if not _logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = True

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
    _logger.log(level, json.dumps({"event": name, **_clean(fields)}, default=str, sort_keys=True))


def info(name: str, **fields) -> None:
    event(name, logging.INFO, **fields)


def warning(name: str, **fields) -> None:
    event(name, logging.WARNING, **fields)


def error(name: str, **fields) -> None:
    event(name, logging.ERROR, **fields)
