"""Idempotency-Key handling for every POST: replay, reject a changed body, refuse a concurrent twin."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from chalicelib import clock
from chalicelib.services import errors
from chalicelib.store import idempotency as store
from chalicelib.store.unit import Unit

MAX_KEY_LENGTH = 255


@dataclass
class Completion:
    """Lets a use case store the response inside its own final transaction (saves a round trip)."""
    key: str
    attached: bool = False
    status_code: int = 0
    body: str = field(default="", repr=False)

    def attach(self, unit: Unit, status_code: int, body: dict) -> None:
        self.status_code = status_code
        self.body = json.dumps(body, sort_keys=True)
        unit.complete_idempotency(self.key, status_code, self.body, clock.now() + timedelta(seconds=store.TTL_SECONDS))
        self.attached = True


def run(merchant_id: str, route: str, idem_key: str | None, raw_body: bytes,
        handler: Callable[[Completion | None], tuple[int, dict]]) -> tuple[int, dict]:
    """Run `handler` at most once per (merchant, route, key). Returns (status, body)."""
    if idem_key is None:
        return handler(None)
    if not idem_key or len(idem_key) > MAX_KEY_LENGTH or not idem_key.isprintable():
        raise errors.invalid("idempotency_key_invalid", "Idempotency-Key must be 1-255 printable characters",
                             "Idempotency-Key")
    key = f"{merchant_id}#{route}#{idem_key}"
    request_hash = hashlib.sha256(raw_body).hexdigest()
    outcome = store.claim(key, request_hash)
    if outcome.kind == "replay":
        return outcome.status_code, json.loads(outcome.body)
    if outcome.kind == "mismatch":
        raise errors.ServiceError("unprocessable", "idempotency_key_reused",
                                  "this Idempotency-Key was used with a different request body", "Idempotency-Key")
    if outcome.kind == "in_progress":
        raise errors.conflict("idempotency_request_in_progress",
                              "a request with this Idempotency-Key is still being processed")
    completion = Completion(key)
    try:
        status, body = handler(completion)
    except errors.ServiceError as exc:
        if exc.kind in ("channel", "unavailable"):
            store.release(key)  # nothing changed; the merchant may retry with the same key
        else:
            store.complete(key, _status_of(exc), json.dumps(_error_body(exc), sort_keys=True))
        raise
    except Exception:
        store.release(key)
        raise
    if not completion.attached:
        store.complete(key, status, json.dumps(body, sort_keys=True))
    return status, body


def _status_of(exc: errors.ServiceError) -> int:
    return errors.STATUS_BY_KIND[exc.kind]


def _error_body(exc: errors.ServiceError) -> dict:
    return {"error": {"type": "invalid_request_error" if exc.kind != "channel" else "channel_error",
                      "code": exc.code, "message": exc.message, "param": exc.param}}
