"""AWS round trips and in-process latency per request, through the real app.py.

    python -m bench.roundtrips [--n 40]

Runs app.py in chalice's test client over moto's in-memory AWS; outbound HTTP (our WeChat client
calling the WeChat sandbox, the sandbox calling our callback) is routed back into the app, so every
layer runs for real. Each AWS API call is counted by a botocore `before-call` hook registered for
every session (so pynamodb's connection and any boto3 client are both seen) and charged to the
request that was running when it happened. Calls on the sandbox's own table are reported apart:
in production that work happens on WeChat's servers, not ours.

Latencies are in-process (no network, moto in memory): compare them with the bare Chalice route
measured in the same run, not with production.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
BASE = "http://kauri.bench"


def _set_environment() -> None:
    # Before anything imports chalicelib: settings and table names are read at import.
    for var in ("KAURI_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE", "KAURI_TABLE_PREFIX", "KAURI_BUCKET"):
        os.environ.pop(var, None)
    os.environ.update({
        "KAURI_STAGE": "dev",
        "KAURI_SANDBOX_ENABLED": "1",
        "KAURI_PUBLIC_BASE_URL": BASE,
        "KAURI_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "ap-southeast-2",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
    })


# ---- counting AWS calls --------------------------------------------------------------------------

class CallLog:
    """Every AWS API call, tagged with the request (scope) it happened in."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.calls: list[tuple[str, str, str, bool]] = []  # (scope path, service, operation, sandbox table?)
        self._lock = threading.Lock()

    def _stack(self) -> list[str]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @contextmanager
    def scope(self, name: str):
        stack = self._stack()
        stack.append(name)
        try:
            yield
        finally:
            stack.pop()

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[tuple[str, str, str, bool]]:
        return self.calls[mark:]

    def on_before_call(self, model, params, **_kwargs) -> None:
        service = model.service_model.service_id.hyphenize()
        sandbox = service == "dynamodb" and any(t.endswith("sandbox") for t in _tables(params))
        with self._lock:
            self.calls.append((">".join(self._stack()) or "-", service, model.name, sandbox))
        return None  # never answer the call: this hook only watches


def _tables(request_dict: dict) -> set[str]:
    try:
        body = json.loads(request_dict.get("body") or b"{}")
    except ValueError:
        return set()
    found = {body["TableName"]} if "TableName" in body else set()
    found.update(body.get("RequestItems", {}))
    for item in body.get("TransactItems", []):
        for op in item.values():
            if isinstance(op, dict) and "TableName" in op:
                found.add(op["TableName"])
    return found


def install_hook(log: CallLog) -> None:
    """Register the hook on every botocore session created from now on (moto does the same)."""
    from botocore import handlers

    handlers.BUILTIN_HANDLERS.append(("before-call", log.on_before_call))


def summarise(calls: list[tuple[str, str, str, bool]]) -> tuple[int, str]:
    ops = Counter(f"{svc}:{op}" if svc != "dynamodb" else op for _, svc, op, _ in calls)
    return len(calls), ", ".join(f"{op}x{n}" if n > 1 else op for op, n in sorted(ops.items()))


# ---- the adapter that routes outbound HTTP back into the app, tagging each request --------------

def counting_adapter(client, log: CallLog, timings: dict[str, list[float]]):
    from tests.support.transport import ChaliceAdapter

    class CountingAdapter(ChaliceAdapter):
        def send(self, request, **kwargs):
            path = request.path_url
            name = "sandbox" if path.startswith("/sandbox/") else "callback" if path.startswith("/callbacks/") else path
            started = time.perf_counter()
            with log.scope(name):
                resp = super().send(request, **kwargs)
            timings[name].append((time.perf_counter() - started) * 1000)
            return resp

    return CountingAdapter(client)


# ---- the scenarios -------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(n: int = 40) -> dict[str, Any]:
    _set_environment()
    log = CallLog()
    install_hook(log)
    import moto  # before any client is made

    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    from chalice import Chalice
    from chalice.test import Client

    from chalicelib import channels, clock, http
    from chalicelib.services import merchants
    from chalicelib.store import tables

    bare = Chalice(app_name="bare")

    @bare.route("/ping")
    def ping():
        return {"ok": True}

    timings: dict[str, list[float]] = defaultdict(list)
    per_request: dict[str, list[list]] = defaultdict(list)
    with moto.mock_aws():
        tables.create_all()
        tables.create_bucket()
        tables.create_keys()
        tables.create_staff_directory()  # seed_demo signs its staff up in it
        demo = merchants.seed_demo()
        import app as app_module

        auth = {"Authorization": f"Bearer {demo['api_key']}", "Content-Type": "application/json"}
        with Client(app_module.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as c, \
                Client(bare, project_dir=str(PROJECT_DIR)) as bare_client:
            channels.reset()
            http.mount(BASE, counting_adapter(c, log, timings))
            _fresh_connections(tables.models())  # the first request meets cold clients, as in a new container
            try:
                for i in range(n):
                    _one_payment(c, log, auth, i, timings, per_request)
                    clock.advance(timedelta(seconds=1))
                for _ in range(n):
                    started = time.perf_counter()
                    bare_client.http.get("/ping")
                    timings["bare"].append((time.perf_counter() - started) * 1000)
            finally:
                http.unmount_all()
                channels.reset()
                clock.reset()
    return {"n": n, "per_request": per_request, "timings": timings}


def _fresh_connections(models) -> None:
    for model in models:
        model._connection = None


def _one_payment(c, log: CallLog, auth: dict, i: int, timings, per_request) -> None:
    body = {"amount": 1250 + i, "currency": "NZD", "channel": "wechat", "flow": "native",
            "merchant_reference": f"bench-{i}", "description": "Manuka honey"}
    headers = dict(auth, **{"Idempotency-Key": f"bench-{i}"})

    mark = log.mark()
    started = time.perf_counter()
    with log.scope("create"):
        resp = c.http.post("/v1/payments", headers=headers, body=json.dumps(body).encode())
    timings["create"].append((time.perf_counter() - started) * 1000)
    if resp.status_code != 201:
        raise SystemExit(f"create payment answered {resp.status_code}: {resp.body[:300]!r}")
    payment = resp.json_body
    per_request["create"].append(log.since(mark))

    mark = log.mark()
    with log.scope("pay"):  # the shopper pays; the sandbox then calls our callback (scope "callback")
        resp = c.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                           body=json.dumps({"out_trade_no": payment["channel_order_id"]}).encode())
    if resp.status_code != 200 or not resp.json_body.get("delivered"):
        raise SystemExit(f"sandbox pay answered {resp.status_code}: {resp.body[:300]!r}")
    per_request["pay"].append(log.since(mark))

    mark = log.mark()
    started = time.perf_counter()
    with log.scope("get"):
        resp = c.http.get(f"/v1/payments/{payment['id']}", headers=auth)
    timings["get"].append((time.perf_counter() - started) * 1000)
    if resp.status_code != 200 or resp.json_body["status"] != "succeeded":
        raise SystemExit(f"GET payment answered {resp.status_code}: {resp.body[:300]!r}")
    per_request["get"].append(log.since(mark))


# ---- report --------------------------------------------------------------------------------------

def _ours(calls, scope_prefix: str):
    return [c for c in calls if c[0].endswith(scope_prefix) and not c[3]]


def rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """Per request: our AWS calls on the first (fresh connections) and a steady request, their operations,
    and the calls the channel's side (the sandbox) made."""
    out = []
    plan = [
        ("create payment", "POST /v1/payments", "create", "create", "create>sandbox"),
        ("channel callback", "POST /callbacks/wechat", "pay", "pay>callback", "pay"),
        ("get payment", "GET /v1/payments/{id}", "get", "get", None),
    ]
    for name, route, key, ours, theirs in plan:
        reqs = result["per_request"].get(key) or []
        if not reqs:
            continue
        counts = [len(_ours(r, ours)) for r in reqs]
        steady = reqs[-1]
        _, ops = summarise(_ours(steady, ours))
        side = str(len([c for c in steady if c[0] == theirs])) if theirs else ""
        out.append({"name": name, "route": route, "first": str(counts[0]),
                    "steady": str(Counter(counts).most_common(1)[0][0]), "ops": ops, "sandbox": side})
    return out


def report(result: dict[str, Any]) -> str:
    t = result["timings"]
    lines = [f"DynamoDB/S3 API calls per request (moto, chalice.test.Client, n={result['n']})",
             f"  {'request':42s} {'first/steady':>12s}  {'sandbox-side':>12s}  operations (steady)"]
    for r in rows(result):
        label = f"{r['name']:17s}{r['route']}"
        lines.append(f"  {label:42s} {r['first'] + ' / ' + r['steady']:>12s}  {r['sandbox']:>12s}  {r['ops']}")
    lines += ["", "In-process latency, ms (moto in memory; compare with the bare route, not with production)",
              f"  {'':42s} {'p50':>8s} {'p95':>8s} {'max':>8s} {'first':>8s}"]
    for label, key in [("create payment (incl. WeChat sandbox hop)", "create"),
                       ("channel callback (our handler only)", "callback"),
                       ("get payment", "get"),
                       ("bare Chalice route (baseline)", "bare")]:
        values = t.get(key) or []
        warm = values[1:] or values  # the first request builds the botocore clients
        first = f"{values[0]:8.1f}" if values else ""
        lines.append(f"  {label:42s} {percentile(warm, 0.5):8.1f} {percentile(warm, 0.95):8.1f} "
                     f"{max(warm or [0]):8.1f} {first}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args(argv)
    print(report(run(args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
