"""Invoking app.py's scheduled jobs the way EventBridge does, or the way ops do by hand."""
from __future__ import annotations

from infra.local import lambda_context

RULE = "arn:aws:events:ap-southeast-2:1:rule/x"


def invoke(client, name: str, payload) -> dict:
    """Like chalice's test `lambda_.invoke`, but with the function's configured timeout in its context
    (chalice's test client always says 3 s; the jobs plan their work by the time they have left)."""
    lam = client.lambda_
    scoped = lam._config.scope(lam._config.chalice_stage, name)
    with lam._patched_env_vars(scoped.environment_variables):
        return lam._app.handler_map[name](payload, lambda_context(name, lam._config.chalice_stage))


def scheduled(client, name: str) -> dict:
    """One EventBridge tick of schedule `name`; the job's summary."""
    event = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [RULE])
    return invoke(client, name, event)


def by_hand(client, name: str, params: dict) -> dict:
    """Ops invoking the job's Lambda with a plain JSON event."""
    return invoke(client, name, params)
