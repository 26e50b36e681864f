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
SEALED = "sealed_reply"
SEALED_PURPOSE = b"kauri-idempotent-reply"


def _stored_body(text: str) -> dict:
    body = json.loads(text)
    if isinstance(body, dict) and set(body) == {SEALED}:
        from chalicelib import secrets

        return json.loads(secrets.open_sealed(body[SEALED], SEALED_PURPOSE))
    return body


@dataclass
class Completion:
    """Lets a use case store the response inside its own final transaction (saves a round trip)."""
    key: str
    attached: bool = False
    status_code: int = 0
    body: str = field(default="", repr=False)
    ttl_seconds: int = store.TTL_SECONDS

    def attach(self, unit: Unit, status_code: int, body: dict, sealed: bool = False) -> None:
        """`sealed`: the reply carries a secret (a new webhook endpoint's signing secret): it is stored only
        under a KMS envelope, opened again to replay it."""
        self.status_code = status_code
        self.body = json.dumps(body, sort_keys=True)
        if sealed:
            from chalicelib import secrets

            self.body = json.dumps({SEALED: secrets.seal(self.body, SEALED_PURPOSE)}, sort_keys=True)
        unit.complete_idempotency(self.key, status_code, self.body, clock.now() + timedelta(seconds=self.ttl_seconds))
        self.attached = True

    def refresh(self, status_code: int, body: dict) -> None:
        """Replace the stored reply once the use case learns more (e.g. the channel settled the refund)."""
        self.status_code = status_code
        self.body = json.dumps(body, sort_keys=True)
        store.complete(self.key, status_code, self.body, ttl_seconds=self.ttl_seconds)


def record_key(merchant_id: str, route: str, idem_key: str) -> str:
    """Fixed length whatever the path and key (a DynamoDB hash key holds at most 2048 bytes)."""
    digest = hashlib.sha256(f"{route}\n{idem_key}".encode("utf-8")).hexdigest()
    return f"{merchant_id}#{digest}"


def run(merchant_id: str, route: str, idem_key: str | None, raw_body: bytes,
        handler: Callable[[Completion | None], tuple[int, dict]], ttl_seconds: int = store.TTL_SECONDS,
        key_param: str = "Idempotency-Key") -> tuple[int, dict]:
    """Run `handler` at most once per (merchant, route, key). Returns (status, body). `ttl_seconds`: how
    long the reply is kept (a day for the API; ops requests keep theirs far longer); `key_param`: what
    an error about the key names."""
    if idem_key is None:
        return handler(None)
    if not idem_key or len(idem_key) > MAX_KEY_LENGTH or not idem_key.isprintable():
        raise errors.invalid("idempotency_key_invalid", f"{key_param} must be 1-255 printable characters",
                             key_param)
    key = record_key(merchant_id, route, idem_key)
    request_hash = hashlib.sha256(raw_body).hexdigest()
    outcome = store.claim(key, request_hash, ttl_seconds)
    if outcome.kind == "replay":
        return outcome.status_code, _stored_body(outcome.body)
    if outcome.kind == "mismatch":
        raise errors.ServiceError("unprocessable", "idempotency_key_reused",
                                  f"this {key_param} was used with a different request", key_param)
    if outcome.kind == "in_progress":
        raise errors.conflict("idempotency_request_in_progress",
                              "a request with this Idempotency-Key is still being processed")
    completion = Completion(key, ttl_seconds=ttl_seconds)
    try:
        status, body = handler(completion)
    except errors.ServiceError as exc:
        if exc.kind in ("channel", "unavailable"):
            store.release(key)  # nothing changed; the merchant may retry with the same key
        else:
            store.complete(key, _status_of(exc), json.dumps(_error_body(exc), sort_keys=True), only_in_progress=True,
                           ttl_seconds=ttl_seconds)
        raise
    except Exception:
        # Releases only a claim still in progress: if the use case committed its reply with its change,
        # the record is completed and a retry replays that reply instead of doing the work twice.
        store.release(key)
        raise
    if not completion.attached:
        store.complete(key, status, json.dumps(body, sort_keys=True), ttl_seconds=ttl_seconds)
    return status, body


def _status_of(exc: errors.ServiceError) -> int:
    return errors.STATUS_BY_KIND[exc.kind]


def _error_body(exc: errors.ServiceError) -> dict:
    return {"error": {"type": "invalid_request_error" if exc.kind != "channel" else "channel_error",
                      "code": exc.code, "message": exc.message, "param": exc.param}}
