"""Run one of app.py's non-HTTP functions against the running local stack.

    make job name=retry_webhooks event='{}'
    python -m infra.job <function name> ['<json event>']

It reads .local/stack.json (written by `make run`), points this process at that stack's embedded AWS
and API before importing app.py, invokes the function the way Lambda would (with the function's
own environment from .chalice/config.json) and prints its result as JSON. The event goes in as typed,
like a hand invocation in AWS, so `{"dry_run": true}` reaches the job.
"""
from __future__ import annotations

import json
import socket
import sys
from urllib.parse import urlsplit

from infra.local import PROJECT_DIR, STAGE, apply_environment, invoke_configured, stack_environment, stack_file


class JobError(Exception):
    """A problem the caller can fix; the message says how."""


def load_stack() -> dict:
    path = stack_file()
    if not path.exists():
        raise JobError(f"no local stack found ({path} is missing): start one with `make run`")
    facts = json.loads(path.read_text())
    endpoint = urlsplit(facts["aws_endpoint_url"])
    try:
        socket.create_connection((endpoint.hostname, endpoint.port), timeout=1).close()
    except OSError:
        raise JobError(f"the local stack in {path} is not answering at {facts['aws_endpoint_url']}: "
                       "start one with `make run`") from None
    return facts


def parse_event(text: str) -> object:
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JobError(f"event is not valid JSON ({exc}): pass e.g. event='{{\"dry_run\": true}}'") from None


def invokable(chalice_app) -> dict[str, str]:
    """Function name -> kind, for everything that is not an HTTP route."""
    out = {f.name: "lambda_function" for f in chalice_app.pure_lambda_functions}
    for source in chalice_app.event_sources:
        out[source.name] = type(source).__name__.replace("EventConfig", "").lower() or "event"
    return out


def run(name: str, event: object) -> object:
    facts = load_stack()
    apply_environment(stack_environment(facts["api_url"], facts["aws_endpoint_url"]))
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))

    import app as app_module

    return invoke(app_module.app, name, event)


def invoke(chalice_app, name: str, event: object) -> object:
    """Invoke `name` with `event` exactly as given, as ops do with `aws lambda invoke --payload`.

    The event is never wrapped in an EventBridge envelope: every schedule reads hand-typed fields from
    the top level (chalicelib.api.jobs.HandRunnableEvent), while an envelope makes the jobs read only its
    `detail`, so `{"dry_run": true}` would be dropped and the job would run for real.
    """
    from chalice.test import Client

    functions = invokable(chalice_app)
    if name not in functions:
        known = ", ".join(sorted(functions)) or "(none defined yet)"
        raise JobError(f"unknown function {name!r}. app.py defines: {known}")
    with Client(chalice_app, stage_name=STAGE, project_dir=str(PROJECT_DIR)) as client:
        return invoke_configured(client, name, event)  # with the function's configured timeout in its context


def main(argv: list[str]) -> int:
    if not argv or not argv[0].strip():
        print("usage: make job name=<function> event='<json>'   (python -m infra.job NAME [EVENT])", file=sys.stderr)
        return 2
    try:
        event = parse_event(argv[1] if len(argv) > 1 else "")
        result = run(argv[0].strip(), event)
    except JobError as exc:
        print(f"job: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
