"""`make run`'s stack in a subprocess on free ports, for the end-to-end tests."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 25.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(local_dir: Path, **extra: str) -> dict[str, str]:
    # The stack must not inherit the test run's settings (conftest sets KAURI_* for in-process tests).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_"))}
    env.update({
        "KAURI_LOCAL_DIR": str(local_dir),
        "KAURI_API_PORT": str(free_port()),
        "KAURI_MOTO_PORT": str(free_port()),
        "KAURI_PUMP_INTERVAL": "0.2",
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return env


class StackFailed(Exception):
    pass


@contextlib.contextmanager
def running_stack(local_dir: Path, **env: str):
    """Start `python -m infra.local`, yield its stack.json facts (plus `log` and `proc`), stop it after."""
    log_path = local_dir / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infra.local"], cwd=PROJECT_DIR,
                                env=clean_env(local_dir, **env), stdout=log, stderr=subprocess.STDOUT)
    try:
        facts_path = local_dir / "stack.json"
        deadline = time.monotonic() + START_TIMEOUT
        while not facts_path.exists():
            if proc.poll() is not None:
                raise StackFailed(f"local stack exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise StackFailed(f"local stack did not start in {START_TIMEOUT}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        facts = json.loads(facts_path.read_text())
        facts["log"] = log_path
        facts["proc"] = proc
        yield facts
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
