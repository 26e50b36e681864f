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


class NoTestEnvironment(Exception):
    """Test mode has no environment for this channel on this stage (no sandbox, no KAURI_TEST_* settings)."""

    def __init__(self, name: str):
        super().__init__(f"{name} has no test environment here")
        self.name = name


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def _class(name: str):
    if name not in REGISTRY:
        raise KeyError(name)
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def get(name: str, livemode: bool = True) -> "Channel":
    """The channel as a mode sees it. Live: the channel's settings (read at call time). Test: the
    channel's test environment or sandbox, never the live one; NoTestEnvironment if there is none."""
    if not livemode:
        from chalicelib import settings

        klass = _class(name)
        config = settings.get().channel_config(name, livemode=False)
        if config is None:
            raise NoTestEnvironment(name)
        return klass(config)
    inst = _instances.get(name)
    if inst is None:
        inst = _class(name)()
        _instances[name] = inst
    return inst


def environments(name: str) -> list[tuple[bool | None, "Channel"]]:
    """Each distinct account a channel's callbacks may come from, with its mode: one entry (mode None:
    either) where test mode signs with the very credentials live does, as on a stage run on sandboxes."""
    from chalicelib import settings

    s = settings.get()
    live = get(name)
    test_config = s.channel_config(name, livemode=False)
    if test_config is None:
        return [(True, live)]
    if settings.same_credentials(test_config, s.channel_config(name, livemode=True)):
        return [(None, live)]
    return [(True, live), (False, _class(name)(test_config))]


def rotation_fallbacks(name: str):
    """What to try when a callback verified with none of environments(name), for channels whose
    credentials live in Secrets Manager: each environment's previous key (AWSPREVIOUS), then its current
    key read afresh (at most once per secrets.REFRESH_MIN_SECONDS). Lazy: nothing is read unless asked,
    so a rotation never costs a callback signed with the current key anything."""
    from chalicelib import secrets, settings

    s = settings.get()
    live, test = s.channel_config(name, livemode=True), s.channel_config(name, livemode=False)
    if test is None:
        configs = [(True, live)]
    elif settings.same_credentials(test, live):
        configs = [(None, live)]
    else:
        configs = [(True, live), (False, test)]
    for livemode, cfg in configs:
        if not getattr(cfg, "secret_id", ""):
            continue
        previous = secrets.resolve(cfg, "AWSPREVIOUS")
        if previous is not None:
            yield livemode, _class(name)(previous)
        if secrets.refresh(cfg.secret_id):
            yield livemode, _class(name)(secrets.resolve(cfg))


def sandbox_blueprint(name: str):
    """The channel's simulator routes (chalice Blueprint), mounted only where the stage allows."""
    return importlib.import_module(f"chalicelib.channels.{name}.sandbox").blueprint


def reset() -> None:
    _instances.clear()
