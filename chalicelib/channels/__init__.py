"""Channel registry: one line per channel. Modules load on first use (cold-start cost)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.channels.base import Channel

# name -> (module with the Channel class, class name)
REGISTRY: dict[str, tuple[str, str]] = {
    "wechat": ("chalicelib.channels.wechat.client", "WeChatChannel"),
    "alipay": ("chalicelib.channels.alipay.client", "AlipayChannel"),
    "payease": ("chalicelib.channels.payease.client", "PayEaseChannel"),
}

_instances: dict[str, "Channel"] = {}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> "Channel":
    inst = _instances.get(name)
    if inst is None:
        if name not in REGISTRY:
            raise KeyError(name)
        module, cls = REGISTRY[name]
        inst = getattr(importlib.import_module(module), cls)()
        _instances[name] = inst
    return inst


def sandbox_blueprint(name: str):
    """The channel's simulator routes (chalice Blueprint), mounted only where the stage allows."""
    return importlib.import_module(f"chalicelib.channels.{name}.sandbox").blueprint


def reset() -> None:
    _instances.clear()
