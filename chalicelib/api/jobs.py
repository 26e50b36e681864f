"""Scheduled functions that ops can also invoke by hand with a small JSON event."""
from __future__ import annotations

from chalice.app import CloudWatchEvent


class HandRunnableEvent(CloudWatchEvent):
    """A schedule's event as EventBridge sends it, or as ops type it by hand ({"date": ...}).

    Chalice's CloudWatchEvent insists on every EventBridge field; absent ones read as empty here,
    and `to_dict()` still returns exactly what was sent.
    """
    _BLANK = {"version": "0", "account": "", "region": "", "detail": {}, "detail-type": "", "source": "",
              "time": "", "id": "", "resources": []}

    def _extract_attributes(self, event_dict):
        super()._extract_attributes({**self._BLANK, **(event_dict or {})})


def hand_runnable(*scheduled) -> None:
    """Let each scheduled function accept a hand-typed event as well as EventBridge's."""
    for fn in scheduled:
        fn.event_class = HandRunnableEvent
