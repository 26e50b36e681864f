"""Invoking app.py's scheduled jobs the way EventBridge does, or the way ops do by hand."""
from __future__ import annotations

RULE = "arn:aws:events:ap-southeast-2:1:rule/x"


def scheduled(client, name: str) -> dict:
    """One EventBridge tick of schedule `name`; the job's summary."""
    event = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [RULE])
    return client.lambda_.invoke(name, event).payload


def by_hand(client, name: str, params: dict) -> dict:
    """Ops invoking the job's Lambda with a plain JSON event."""
    return client.lambda_.invoke(name, params).payload
