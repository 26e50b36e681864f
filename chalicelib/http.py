"""The one HTTP session factory. Channels and webhooks use it; tests swap its transport."""
from __future__ import annotations

import threading
from typing import Any

_local = threading.local()
_mounts: dict[str, Any] = {}


def mount(prefix: str, adapter: Any) -> None:
    """Route every request whose URL starts with `prefix` through `adapter` (tests, local stack)."""
    _mounts[prefix] = adapter
    _forget_sessions()


def unmount_all() -> None:
    _mounts.clear()
    _forget_sessions()


def _forget_sessions() -> None:
    _local.__dict__.pop("session", None)
    _local.__dict__.pop("guarded_session", None)


def session(guarded: bool = False):
    """A requests.Session per thread, created lazily (requests costs ~90 ms to import).

    `guarded`: for URLs someone else chose (chalicelib.egress): every connection not routed by a
    mount goes through egress's address-checking adapter.
    """
    name = "guarded_session" if guarded else "session"
    s = getattr(_local, name, None)
    if s is None:
        import requests

        s = requests.Session()
        s.trust_env = False
        if guarded:
            from chalicelib import egress

            for scheme in ("http://", "https://"):
                s.mount(scheme, egress.guarded_adapter())
        for prefix, adapter in _mounts.items():
            s.mount(prefix, adapter)
        setattr(_local, name, s)
    return s


def read_bounded(resp, max_bytes: int) -> bytes | None:
    """The body of a `stream=True` response, or None if it is longer than max_bytes (read no further)."""
    if resp.raw is None:  # an adapter that hands over the whole body at once
        body = resp.content or b""
    else:
        body = resp.raw.read(max_bytes + 1, decode_content=True) or b""
        resp.close()
    return None if len(body) > max_bytes else body


CHUNK_BYTES = 64 * 1024


class BodyTooLarge(ValueError):
    """A streamed body went past its bound: nothing after the bound was read."""


def iter_bounded(resp, max_bytes: int, chunk_size: int = CHUNK_BYTES):
    """The body of a `stream=True` response in chunks of at most `chunk_size`, closing the response
    at the end; BodyTooLarge as soon as it passes max_bytes. Network errors while reading propagate
    (requests' own exceptions) for the caller to map."""
    seen = 0
    try:
        for chunk in resp.iter_content(chunk_size):
            if not chunk:
                continue
            seen += len(chunk)
            if seen > max_bytes:
                raise BodyTooLarge(f"body larger than {max_bytes} bytes")
            yield chunk
    finally:
        resp.close()


def peek(chunks, at_least: int):
    """(the first `at_least` bytes or more — fewer only when the body is shorter —, an iterator over the
    whole body, those bytes included). Reads no more chunks than it needs."""
    import itertools

    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= at_least:
            break
    return head, itertools.chain((head,) if head else (), it)
