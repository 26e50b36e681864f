"""The local stack: embedded AWS, the API and the channel sandboxes in one process, plus a pump and a scheduler.

    python -m infra.local            (what `make run` runs)

Order matters: the environment is set before anything from chalicelib or app.py is imported,
because settings and the pynamodb table names are read once, at import.

Environment (all optional):
    KAURI_API_PORT        API port (default 8000; 0 picks a free one)
    KAURI_MOTO_PORT       embedded AWS port (default: a free one)
    KAURI_LOCAL_DIR       where stack.json goes (default .local/ in the project)
    KAURI_CLOCK_SPEEDUP   run Kauri's clock this many times faster (e.g. 60: a minute per second)
    KAURI_PUMP_INTERVAL   seconds between pump ticks (default 1)
    KAURI_LOCAL_SCHEDULER 0 turns the local scheduler off
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

PROJECT_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REGION = "ap-southeast-2"
STAGE = "dev"
API_LISTEN_BACKLOG = 128  # pending connections the API server's socket holds (socketserver's default is 5)

# Not under "kauri": chalice gives that logger (app.log) its own stdout handler and level ERROR.
log = logging.getLogger("infra.local")


# ---- configuration -------------------------------------------------------------------------------

def local_dir() -> Path:
    return Path(os.environ.get("KAURI_LOCAL_DIR") or PROJECT_DIR / ".local")


def stack_file() -> Path:
    return local_dir() / "stack.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    value = int(raw) if raw else default
    return value or free_port()


def stack_environment(api_url: str, aws_endpoint_url: str) -> dict[str, str]:
    """What the app needs in os.environ to talk to this stack (also used by infra.job)."""
    return {
        "KAURI_STAGE": STAGE,
        "KAURI_SANDBOX_ENABLED": "1",
        "KAURI_LOCAL_RECEIVERS": "1",  # webhooks to http://127.0.0.1:... receivers on this machine
        "KAURI_MAIL_FROM": "Kauri <no-reply@kauri.local>",  # staff invitations go to the embedded SES
        "KAURI_PUBLIC_BASE_URL": api_url,
        "KAURI_AWS_ENDPOINT_URL": aws_endpoint_url,
        "AWS_ENDPOINT_URL": aws_endpoint_url,  # any plain boto3 client lands on the embedded AWS too
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }


def apply_environment(values: dict[str, str]) -> None:
    # Never let a developer's real AWS profile or session leak into the local stack.
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(var, None)
    os.environ.update(values)


def write_stack_file(facts: dict[str, Any]) -> Path:
    path = stack_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
    return path


# ---- schedules -----------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_DOW = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}


def _field_matches(spec: str, value: int, names: dict[str, int] | None = None) -> bool:
    """One EventBridge cron field: *, ?, n, a-b, a,b, */n, a/n, a-b/n (names like MON or JAN allowed)."""
    def num(text: str) -> int:
        text = text.upper()
        return names[text] if names and text in names else int(text)

    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            if value % step == 0 or (step == 1):
                return True
            continue
        if "-" in part:
            lo, hi = (num(p) for p in part.split("-", 1))
        else:
            lo = num(part)
            hi = lo if step == 1 else 10_000
        if lo <= value <= hi and (value - lo) % step == 0:
            return True
    return False


def cron_matches(fields: list[str], at: datetime) -> bool:
    """EventBridge cron (UTC): minutes hours day-of-month month day-of-week year. L and W are not supported."""
    minutes, hours, dom, month, dow, year = fields
    aws_dow = at.isoweekday() % 7 + 1  # EventBridge: 1 = Sunday
    return (_field_matches(minutes, at.minute) and _field_matches(hours, at.hour)
            and _field_matches(dom, at.day) and _field_matches(month, at.month, _MONTHS)
            and _field_matches(dow, aws_dow, _DOW) and _field_matches(year, at.year))


@dataclass
class Schedule:
    name: str
    expression: str
    every_seconds: int | None = None      # rate(...)
    cron_fields: list[str] | None = None  # cron(...)
    next_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.next_at is None:
            self._plan(now)
        return now >= self.next_at  # type: ignore[operator]

    def fired(self, now: datetime) -> None:
        self._plan(now)

    def _plan(self, now: datetime) -> None:
        if self.every_seconds is not None:
            self.next_at = now + timedelta(seconds=self.every_seconds)
            return
        # Next whole minute that matches the cron expression (look a year ahead at most).
        t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if cron_matches(self.cron_fields or [], t):
                self.next_at = t
                return
            t += timedelta(minutes=1)
        self.next_at = datetime.max.replace(tzinfo=timezone.utc)


def parse_schedule(name: str, expression: Any) -> Schedule:
    text = expression if isinstance(expression, str) else expression.to_string()
    text = text.strip()
    m = _RATE.match(text)
    if m:
        unit = m.group(2).rstrip("s")
        return Schedule(name, text, every_seconds=int(m.group(1)) * _UNIT_SECONDS[unit])
    m = _CRON.match(text)
    if m and len(m.group(1).split()) == 6:
        return Schedule(name, text, cron_fields=m.group(1).split())
    raise ValueError(f"unsupported schedule expression for {name}: {text!r}")


def schedules_of(chalice_app) -> list[Schedule]:
    from chalice.app import ScheduledEventConfig

    out = []
    for source in chalice_app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            out.append(parse_schedule(source.name, source.schedule_expression))
    return out


# ---- background loops ----------------------------------------------------------------------------

class _QuietErrors:
    """Log a failing step with its traceback once, then at most once a minute while it keeps failing."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, float]] = {}

    def run(self, label: str, step: Callable[[], Any]) -> Any:
        try:
            result = step()
        except Exception as exc:  # a broken step must not stop the stack
            text = f"{type(exc).__name__}: {exc}"
            seen = self._last.get(label)
            now = time.monotonic()
            if seen is None or seen[0] != text or now - seen[1] > 60:
                log.error("%s failed: %s\n%s", label, text, traceback.format_exc().rstrip())
                self._last[label] = (text, now)
            return None
        self._last.pop(label, None)
        return result


def _lookup(module: str, attr: str) -> Callable[[], Any] | None:
    """A function from a module that may not exist yet (it is being written while the stack runs)."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def sqs_event(queue_arn: str, messages: list[dict], region: str = REGION) -> dict[str, Any]:
    """The event SQS hands a Lambda for received messages."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region} for m in messages]}


def drain_statement_queue(chalice_app, max_messages: int = 10) -> int:
    """What Lambda's SQS event source does: receive, invoke statement_landed, delete on success.

    moto delivers the bucket's notifications to the queue (as S3 does) but invokes no Lambda, so the
    local stack's pump (and the tests) call this; the handler is the same code as in AWS.
    """
    import boto3

    from chalicelib import settings

    s = settings.get()
    sqs = boto3.client("sqs", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    url = sqs.get_queue_url(QueueName=s.statements_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    done = 0
    for _ in range(max_messages):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages") or []
        if not got:
            break
        invoke_handler(chalice_app, "statement_landed", sqs_event(arn, got, s.region))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        done += 1
    return done


class Pump(threading.Thread):
    """Every tick: deliver due merchant webhooks and let each channel sandbox send its due notifications."""

    def __init__(self, stop: threading.Event, interval: float, speedup: float, chalice_app=None) -> None:
        super().__init__(name="kauri-pump", daemon=True)
        self.app = chalice_app
        self.stop = stop
        self.interval = interval
        self.speedup = speedup
        self.errors = _QuietErrors()
        self.missing_reported: set[str] = set()

    def _steps(self) -> list[tuple[str, Callable[[], Any]]]:
        from chalicelib import channels

        wanted = [("notifications.deliver_due", "chalicelib.services.notifications", "deliver_due")]
        wanted += [(f"{n}.sandbox.pump", f"chalicelib.channels.{n}.sandbox", "pump") for n in channels.names()]
        steps = []
        for label, module, attr in wanted:
            fn = _lookup(module, attr)
            if fn is None:
                if label not in self.missing_reported:
                    log.warning("pump: %s not available yet; skipping it", label)
                    self.missing_reported.add(label)
                continue
            steps.append((label, fn))
        if self.app is not None and "statement_landed" in self.app.handler_map:
            steps.append(("statements.queue", lambda: drain_statement_queue(self.app)))
        return steps

    def tick(self) -> int:
        done = 0
        for label, fn in self._steps():
            n = self.errors.run(label, fn)
            if isinstance(n, int) and n:
                log.info("pump: %s sent %d", label, n)
                done += n
        return done

    def run(self) -> None:
        from chalicelib import clock

        last = time.monotonic()
        while not self.stop.wait(self.interval):
            if self.speedup > 1:
                now = time.monotonic()
                clock.advance(timedelta(seconds=(now - last) * (self.speedup - 1)))
                last = now
            self.tick()


def scheduled_event(name: str, at: datetime, region: str = REGION) -> dict[str, Any]:
    """The event EventBridge hands a scheduled Lambda."""
    import uuid

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/kauri-{STAGE}-{name}"],
        "detail": {},
    }


def lambda_context(name: str, stage: str = "dev"):
    """The context Lambda would hand function `name`: its configured memory and timeout (the jobs plan
    their work by the time left; chalice's local default would say 3 seconds)."""
    from chalice.config import Config
    from chalice.local import LambdaContext

    with open(PROJECT_DIR / ".chalice" / "config.json", encoding="utf-8") as f:
        scoped = Config(stage, config_from_disk=json.load(f)).scope(stage, name)
    return LambdaContext(name, memory_size=int(scoped.lambda_memory_size or 1024),
                         max_runtime_ms=int(scoped.lambda_timeout or 60) * 1000)


def invoke_configured(client, name: str, payload: Any) -> Any:
    """What chalice's test `client.lambda_.invoke(...).payload` does, but with the function's configured
    timeout in its context (chalice's always says 3 s)."""
    lam = client.lambda_
    stage = lam._config.chalice_stage
    scoped = lam._config.scope(stage, name)
    with lam._patched_env_vars(scoped.environment_variables):
        return lam._app.handler_map[name](payload, lambda_context(name, stage))


def invoke_handler(chalice_app, name: str, event: Any) -> Any:
    """Call one of app.py's non-HTTP handlers as Lambda would (no env patching: safe with threads)."""
    handler = chalice_app.handler_map[name]
    return handler(event, lambda_context(name))


class Scheduler(threading.Thread):
    """Fires app.py's @app.schedule functions at their rate or cron, in Kauri's clock time."""

    def __init__(self, chalice_app, stop: threading.Event, schedules: list[Schedule]) -> None:
        super().__init__(name="kauri-scheduler", daemon=True)
        self.app = chalice_app
        self.stop = stop
        self.schedules = schedules
        self.errors = _QuietErrors()

    def run(self) -> None:
        from chalicelib import clock

        while not self.stop.wait(1.0):
            now = clock.now()
            for sched in self.schedules:
                if not sched.due(now):
                    continue
                sched.fired(now)
                started = time.monotonic()
                result = self.errors.run(
                    f"schedule {sched.name}",
                    lambda s=sched: invoke_handler(self.app, s.name, scheduled_event(s.name, now)))
                log.info("scheduler: ran %s in %.0f ms -> %s", sched.name,
                         (time.monotonic() - started) * 1000, _short(result))


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _serialise_moto_writes() -> None:
    """The API server is threaded: give moto's DynamoDB the serialisable writes the real one has."""
    try:
        from infra import moto_atomic
    except ImportError:
        log.warning("infra.moto_atomic not found: concurrent DynamoDB transactions may interleave")
        return
    moto_atomic.install()


# ---- the stack -----------------------------------------------------------------------------------

def local_server(chalice_app, config, host: str, port: int):
    """chalice local's server, with the answers it gives for API Gateway (unknown path: 403 "Missing
    Authentication Token") in our error shape, as the gateway responses make them in AWS."""
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    from chalicelib.api import gateway

    class Handler(ChaliceRequestHandler):
        def _send_error_response(self, error) -> None:
            if error.CODE in gateway.ERRORS:
                headers = {k: v for k, v in (error.headers or {}).items() if k.lower() != "x-amzn-errortype"}
                headers["Content-Type"] = "application/json"
                self._send_http_response(error.CODE, headers, json.dumps(gateway.body(error.CODE)).encode())
                return
            super()._send_error_response(error)

    return LocalDevServer(chalice_app, config, host, port, handler_cls=Handler)


class Stack:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.moto = None
        self.server = None
        self.threads: list[threading.Thread] = []
        self.facts: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        from moto.server import ThreadedMotoServer

        _serialise_moto_writes()
        api_port = _port("KAURI_API_PORT", 8000)
        moto_port = _port("KAURI_MOTO_PORT", 0)
        self.moto = ThreadedMotoServer(ip_address=HOST, port=moto_port, verbose=False)
        self.moto.start()
        moto_host, moto_port = self.moto.get_host_and_port()
        aws_endpoint_url = f"http://{moto_host}:{moto_port}"
        api_url = f"http://{HOST}:{api_port}"
        apply_environment(stack_environment(api_url, aws_endpoint_url))

        # Only now is it safe to import our code.
        from chalice.cli.factory import CLIFactory

        from chalicelib import settings
        from chalicelib.store import tables

        settings.reset()
        tables.create_all()
        tables.create_bucket()
        tables.create_keys()
        tables.create_staff_directory()
        tables.create_mail_identity()

        if str(PROJECT_DIR) not in sys.path:
            sys.path.insert(0, str(PROJECT_DIR))
        factory = CLIFactory(str(PROJECT_DIR))
        config = factory.create_config_obj(chalice_stage_name=STAGE)
        chalice_app = config.chalice_app  # imports app.py with the stage's environment variables
        self.server = local_server(chalice_app, config, HOST, api_port)
        # socketserver listens with a backlog of 5: a burst of clients overflows it and the kernel drops
        # (or resets) their connections. Listening again on the bound socket only raises the backlog.
        self.server.server.socket.listen(API_LISTEN_BACKLOG)

        demo = self._seed()
        s = settings.get()
        self.facts = {
            "api_url": api_url,
            "aws_endpoint_url": aws_endpoint_url,
            "region": s.region,
            "stage": s.stage,
            "bucket": s.bucket,
            "table_prefix": s.table_prefix,
            "merchant_id": demo.get("merchant_id"),
            "api_key": demo.get("api_key"),
            "static_qr_url": demo.get("static_qr_url"),
            "static_qr_image_url": demo["static_qr_url"] + "/image" if demo.get("static_qr_url") else None,
            "pay_url": demo.get("pay_url"),
            "portal_url": demo.get("portal_url"),
            "portal_owner": demo.get("portal_owner"),
            "portal_cashier": demo.get("portal_cashier"),
            "pid": os.getpid(),
        }

        serve = threading.Thread(target=self.server.server.serve_forever, name="kauri-api", daemon=True)
        serve.start()
        self.threads.append(serve)
        first = self._first_rates(chalice_app)
        self.facts["fx_pull_at_start"] = first.get("outcome") if isinstance(first, dict) else "failed"

        speedup = float(os.environ.get("KAURI_CLOCK_SPEEDUP", "1") or 1)
        interval = float(os.environ.get("KAURI_PUMP_INTERVAL", "1") or 1)
        pump = Pump(self.stop, interval, speedup, chalice_app)
        pump.start()
        self.threads.append(pump)

        schedules = schedules_of(chalice_app)
        self.facts["schedules"] = {sch.name: sch.expression for sch in schedules}
        if os.environ.get("KAURI_LOCAL_SCHEDULER", "1") != "0" and schedules:
            sched = Scheduler(chalice_app, self.stop, schedules)
            sched.start()
            self.threads.append(sched)

        write_stack_file(self.facts)
        return self.facts

    def _first_rates(self, chalice_app) -> Any:
        """Pull FX rates once before anyone calls: quoted (tuition) payments need them in the first minute,
        not after the scheduler's first 30-minute tick. A failure is logged and the scheduler tries again."""
        from chalicelib import clock

        result = _QuietErrors().run(
            "fx_pull at start", lambda: invoke_handler(chalice_app, "fx_pull", scheduled_event("fx_pull", clock.now())))
        log.info("fx_pull at start -> %s", _short(result))
        return result

    def _seed(self) -> dict[str, Any]:
        seed = _lookup("chalicelib.services.merchants", "seed_demo")
        if seed is None:
            log.warning("chalicelib.services.merchants.seed_demo is not there yet: no demo merchant")
            return {}
        return dict(seed())

    def close(self) -> None:
        self.stop.set()
        if self.server is not None:
            self.server.server.shutdown()
            self.server.server.server_close()
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
        if self.moto is not None:
            self.moto.stop()
        try:
            path = stack_file()
            if path.exists() and json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()  # a stopped stack leaves no stale facts behind
        except (OSError, ValueError):
            pass


def banner(facts: dict[str, Any]) -> str:
    api, key = facts["api_url"], facts.get("api_key") or "<no demo merchant yet>"
    lines = [
        "",
        "Kauri local stack is up",
        f"  API             {api}",
        f"  embedded AWS    {facts['aws_endpoint_url']}  (region {facts['region']}, bucket {facts['bucket']})",
        f"  demo merchant   {facts.get('merchant_id')}",
        f"  secret key      {key}",
        f"  facts           {stack_file()}",
        "",
        "Create a payment:",
        f"  curl -s -X POST {api}/v1/payments \\",
        f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
        "    -H 'Idempotency-Key: order-1' \\",
        "    -d '{\"amount\": 1250, \"currency\": \"NZD\", \"channel\": \"wechat\", \"flow\": \"native\", "
        "\"merchant_reference\": \"order-1\", \"description\": \"Honey\"}'",
        "",
        "Pay it in the WeChat sandbox (channel_order_id from the payment):",
        f"  curl -s -X POST {api}/sandbox/wechat/simulate/pay -H 'Content-Type: application/json' \\",
        "    -d '{\"out_trade_no\": \"<channel_order_id>\"}'",
        f"  curl -s {api}/v1/payments/<id> -H 'Authorization: Bearer {key}'",
        "",
        "Shopper pages (open on a phone, or with a WeChat/Alipay User-Agent):",
        f"  static code     {facts.get('static_qr_url')}   (printable: {facts.get('static_qr_image_url')})",
        f"  hosted checkout {facts.get('pay_url')}",
        "",
        "Merchant portal (SpotPay at /portal/spotpay; invitation links show on the Staff page, no mail is sent):",
        f"  portal          {facts.get('portal_url')}/sign-in",
        *(f"  {who:<15} {facts[key]['email']}  password {facts[key]['password']}"
          for who, key in (("owner", "portal_owner"), ("cashier", "portal_cashier")) if facts.get(key)),
        "",
        "Run a job by hand:  make job name=retry_webhooks event='{}'",
        "Ops: make job name=onboard_merchant event='{\"request_id\": ..., ...}'  (also update_merchant, "
        "suspend_merchant, invite_owner)",
    ]
    if facts.get("schedules"):
        lines.append("Local scheduler:    " + ", ".join(f"{n} {e}" for n, e in facts["schedules"].items()))
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    for noisy in ("werkzeug", "botocore", "pynamodb"):  # moto's access log, "Found credentials" x N
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stack = Stack()
    stopping = threading.Event()

    def _on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        facts = stack.start()
        print(banner(facts), flush=True)
        while not stopping.wait(0.5):
            pass
        print("stopping...", flush=True)
        return 0
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
