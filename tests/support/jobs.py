"""Invoking app.py's scheduled jobs the way EventBridge does, or the way ops do by hand (each with the
function's configured timeout in its Lambda context, as Lambda would give it)."""
from __future__ import annotations

from infra.local import invoke_configured

RULE = "arn:aws:events:ap-southeast-2:1:rule/x"


def scheduled(client, name: str) -> dict:
    """One EventBridge tick of schedule `name`; the job's summary."""
    event = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [RULE])
    return invoke_configured(client, name, event)


def by_hand(client, name: str, params: dict) -> dict:
    """Ops invoking the job's Lambda with a plain JSON event."""
    return invoke_configured(client, name, params)
