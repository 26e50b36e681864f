"""The one HTTP session factory. Channels and webhooks use it; tests swap its transport."""
from __future__ import annotations

import threading
from typing import Any

_local = threading.local()
_mounts: dict[str, Any] = {}


def mount(prefix: str, adapter: Any) -> None:
    """Route every request whose URL starts with `prefix` through `adapter` (tests, local stack)."""
    _mounts[prefix] = adapter
    _local.__dict__.pop("session", None)


def unmount_all() -> None:
    _mounts.clear()
    _local.__dict__.pop("session", None)


def session():
    """A requests.Session per thread, created lazily (requests costs ~90 ms to import)."""
    s = getattr(_local, "session", None)
    if s is None:
        import requests

        s = requests.Session()
        s.trust_env = False
        for prefix, adapter in _mounts.items():
            s.mount(prefix, adapter)
        _local.session = s
    return s
