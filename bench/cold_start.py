"""Cold start as a Lambda sees it: Kauri's first create-payment beside a bare Chalice app's one put_item.

    python -m bench.cold_start [--runs 7] [--instructions]

What each trial is, for both apps, interleaved (bare, kauri, kauri+pyc, bare, ...):
  - the package laid out like chalice's unzipped deployment.zip in /var/task: app.py, chalicelib/,
    chalice's runtime (chalice/__init__.py, chalice/app.py) and every distribution in requirements.txt,
    copied without any __pycache__; the `+pyc` variant adds bytecode compiled into the package
    (unchecked-hash: see README "Cold start");
  - a fresh interpreter with no site-packages (`-S`: only the stdlib, whose bytecode the runtime
    ships, and the package), PYTHONDONTWRITEBYTECODE=1 (/var/task is read-only);
  - it imports the app and hands it one API Gateway proxy event, as the Lambda runtime would:
    Kauri: POST /v1/payments (WeChat native, the real client talking HTTP to the WeChat sandbox of a
    local stack on 127.0.0.1), the bare app: one boto3 DynamoDB client and one put_item;
  - AWS is moto's server on 127.0.0.1 (the local stack's), for both; Kauri, as prod, reads its WeChat
    key from Secrets Manager there (one more call than the bare app, as in AWS).
Prints the median of "import + first request" per app and the ratio Kauri / bare. With `--instructions`
each trial runs under valgrind's callgrind and the ratio is of instructions executed by the process: a
figure that a busy machine does not move (wall times on the shared box swing by 30% from run to run).
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

BARE_APP = '''
from chalice import Chalice

app = Chalice(app_name="bare")
_ddb = None


@app.route("/things", methods=["POST"])
def put_thing():
    global _ddb
    if _ddb is None:
        import boto3

        _ddb = boto3.client("dynamodb")
    _ddb.put_item(TableName="bare-things", Item={"id": {"S": app.current_request.json_body["id"]}})
    return {"ok": True}
'''

RUNNER = '''
import json, os, sys, time
started = time.perf_counter()
import app as module
event = json.loads(os.environ["BENCH_EVENT"])


class Context:
    function_name = "api_handler"
    memory_limit_in_mb = 512
    aws_request_id = "bench-" + str(os.getpid())
    log_group_name = log_stream_name = "bench"
    invoked_function_arn = "arn:aws:lambda:ap-southeast-2:000000000000:function:bench"

    def get_remaining_time_in_millis(self):
        return 29000


imported = time.perf_counter()
response = module.app(event, Context())
done = time.perf_counter()
print(json.dumps({"status": response["statusCode"], "import_ms": (imported - started) * 1000,
                  "total_ms": (done - started) * 1000, "body": response.get("body", "")[:200]}))
'''


def _requirement_names() -> list[str]:
    names = []
    for line in (PROJECT_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("==")[0].split("[")[0].strip())
    return names


def _copy_distribution(name: str, into: Path) -> None:
    dist = metadata.distribution(name)
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if "__pycache__" in parts or str(f).endswith(".pyc") or parts[0].startswith("..") or parts[0] == "bin":
            continue
        src = Path(dist.locate_file(f))
        if src.is_file():
            dst = into / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def build_package(into: Path, app_source: str | None, with_pyc: bool) -> Path:
    """A /var/task look-alike. app_source None: Kauri (app.py + chalicelib/)."""
    into.mkdir(parents=True)
    for name in _requirement_names():
        _copy_distribution(name, into)
    chalice_dir = Path(metadata.distribution("chalice").locate_file("chalice"))
    (into / "chalice").mkdir()
    for runtime_file in ("__init__.py", "app.py"):
        shutil.copy2(chalice_dir / runtime_file, into / "chalice" / runtime_file)
    if app_source is None:
        shutil.copy2(PROJECT_DIR / "app.py", into / "app.py")
        shutil.copytree(PROJECT_DIR / "chalicelib", into / "chalicelib",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        (into / "app.py").write_text(app_source)
    (into / "bench_runner.py").write_text(RUNNER)
    if with_pyc:
        compile_package(into)
    return into


def compile_package(root: Path) -> None:
    """What `make package` does: bytecode beside the sources, validated by nothing (the package is
    immutable once zipped), so an import neither compiles nor hashes the source."""
    import py_compile

    ok = compileall.compile_dir(str(root), quiet=1, workers=1,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise SystemExit("compileall failed")


def proxy_event(method: str, path: str, body: dict, headers: dict) -> dict:
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": dict(headers), "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "isBase64Encoded": False,
        "body": json.dumps(body),
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": "/api" + path, "stage": "api",
                           "requestId": "bench", "identity": {"sourceIp": "127.0.0.1"}},
    }


# Instructions instead of time: valgrind's callgrind counts what the process executes, the same on a busy
# box as on a quiet one (the local stack's own work, in other processes, is not counted).
CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def _trial(package: Path, env: dict[str, str], event: dict, count_instructions: bool = False) -> dict:
    run_env = dict(env, BENCH_EVENT=json.dumps(event), PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    done = subprocess.run([*(CALLGRIND if count_instructions else []), sys.executable, "-S",
                           str(package / "bench_runner.py")], cwd=str(package),
                          env=run_env, capture_output=True, text=True)
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"trial in {package.name} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["status"] not in (200, 201):
        raise SystemExit(f"trial in {package.name} answered {out['status']}: {out['body']}\n{done.stderr[-2000:]}")
    out["process_ms"] = wall
    if count_instructions:
        collected = [line for line in done.stderr.splitlines() if "Collected :" in line]
        out["instructions"] = int(collected[-1].rsplit(":", 1)[1])
    return out


def _start_stack(workdir: Path) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_"))}
    env.update({"KAURI_API_PORT": "0", "KAURI_LOCAL_DIR": str(workdir), "KAURI_LOCAL_SCHEDULER": "0"})
    proc = subprocess.Popen([sys.executable, "-m", "infra.local"], cwd=str(PROJECT_DIR), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack = workdir / "stack.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stack.exists():
            facts = json.loads(stack.read_text())
            if facts.get("api_key"):
                return proc, facts
        if proc.poll() is not None:
            raise SystemExit("the local stack (python -m infra.local) exited before it was up")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the local stack did not come up in 120 s")


def _lambda_env(facts: dict) -> dict[str, str]:
    """A Lambda's environment: prod stage, tables of the local stack, WeChat = the stack's sandbox."""
    sandbox = facts["api_url"] + "/sandbox/wechat"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update({
        "KAURI_STAGE": "prod", "KAURI_SANDBOX_ENABLED": "0",
        "KAURI_TABLE_PREFIX": facts["table_prefix"], "KAURI_BUCKET": facts["bucket"],
        "KAURI_PUBLIC_BASE_URL": facts["api_url"],
        "KAURI_AWS_ENDPOINT_URL": facts["aws_endpoint_url"], "AWS_ENDPOINT_URL": facts["aws_endpoint_url"],
        "AWS_DEFAULT_REGION": facts["region"], "AWS_REGION": facts["region"],
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "KAURI_LOG_LEVEL": "WARNING",
    })
    # The demo key is a test-mode key: prod's test environment for WeChat is the stack's sandbox account,
    # its key in Secrets Manager (prod refuses keys in the environment), as in AWS.
    from chalicelib import settings as settings_module

    demo = settings_module.load({"KAURI_STAGE": "dev"}).wechat
    for prefix in ("KAURI_", "KAURI_TEST_"):
        env.update({prefix + "WECHAT_APPID": demo.appid, prefix + "WECHAT_MCH_ID": demo.mch_id,
                    prefix + "WECHAT_BASE_URL": sandbox, prefix + "WECHAT_SIGN_TYPE": demo.sign_type})
    return env


def run(runs: int = 7, count_instructions: bool = False) -> dict:
    import boto3

    with tempfile.TemporaryDirectory(prefix="kauri-cold-") as tmp:
        tmp_path = Path(tmp)
        proc, facts = _start_stack(tmp_path / "stack")
        try:
            ddb = boto3.client("dynamodb", endpoint_url=facts["aws_endpoint_url"], region_name=facts["region"],
                               aws_access_key_id="local", aws_secret_access_key="local")
            from chalicelib import settings as settings_module

            sm = boto3.client("secretsmanager", endpoint_url=facts["aws_endpoint_url"], region_name=facts["region"],
                              aws_access_key_id="local", aws_secret_access_key="local")
            demo_key = settings_module.load({"KAURI_STAGE": "dev"}).wechat.api_key
            for name in ("kauri-prod-wechat", "kauri-prod-wechat-test"):
                sm.create_secret(Name=name, SecretString=json.dumps({"api_key": demo_key}))
            ddb.create_table(TableName="bare-things", BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
            packages = {
                "bare": build_package(tmp_path / "bare", BARE_APP, with_pyc=False),
                "kauri": build_package(tmp_path / "kauri", None, with_pyc=False),
                "kauri+pyc": build_package(tmp_path / "kauri-pyc", None, with_pyc=True),
            }
            env = _lambda_env(facts)
            results: dict[str, list[dict]] = {name: [] for name in packages}
            for i in range(runs):
                for name, package in packages.items():
                    if name == "bare":
                        event = proxy_event("POST", "/things", {"id": f"t-{i}"}, {"Content-Type": "application/json"})
                    else:
                        event = proxy_event("POST", "/v1/payments", {
                            "amount": 1250 + i, "currency": "NZD", "channel": "wechat", "flow": "native",
                            "merchant_reference": f"cold-{name}-{i}", "description": "Manuka honey"},
                            {"Content-Type": "application/json", "Authorization": f"Bearer {facts['api_key']}",
                             "Idempotency-Key": f"cold-{name}-{i}"})
                    results[name].append(_trial(package, env, event, count_instructions))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"runs": runs, "results": results, "instructions": count_instructions}


def summary(result: dict) -> dict[str, dict[str, float]]:
    out = {}
    keys = ("import_ms", "total_ms", "process_ms") + (("instructions",) if result.get("instructions") else ())
    for name, trials in result["results"].items():
        out[name] = {key: statistics.median(t[key] for t in trials) for key in keys}
    return out


def report(result: dict) -> str:
    s = summary(result)
    lines = [f"Cold start, Lambda-like (unzipped package, no bytecode written, fresh `python -S`), "
             f"median of {result['runs']} interleaved runs, Python {sys.version.split()[0]}",
             f"  {'app':12s} {'import':>9s} {'import+1st request':>19s} {'whole process':>14s}"]
    for name, m in s.items():
        lines.append(f"  {name:12s} {m['import_ms']:7.0f} ms {m['total_ms']:16.0f} ms {m['process_ms']:11.0f} ms")
    if result.get("instructions"):   # under valgrind the times are ~50x: only the counts mean anything
        lines = [f"Cold start, Lambda-like, instructions executed (valgrind callgrind; process total), median of "
                 f"{result['runs']}, Python {sys.version.split()[0]}"]
        lines += [f"  {name:12s} {m['instructions'] / 1e9:6.3f} G" for name, m in s.items()]
        key = "instructions"
    else:
        key = "total_ms"
    bare = s["bare"][key]
    for name in ("kauri", "kauri+pyc"):
        lines.append(f"  ratio {name} / bare ({'instructions' if key != 'total_ms' else 'import + first request'}): "
                     f"{s[name][key] / bare:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind (repeatable on a busy box; ~1 min per run)")
    args = parser.parse_args(argv)
    print(report(run(args.runs, args.instructions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
