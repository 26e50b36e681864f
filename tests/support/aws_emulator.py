"""An emulated AWS account on loopback for the deploy test: moto's server in its own process.

    python -m tests.support.aws_emulator PORT

moto (5.2.5) is told to accept two things real API Gateway accepts and chalice sends, and nothing else
is changed: ImportRestApi/PutRestApi of a Swagger 2.0 document (moto refuses any document that is not
OpenAPI 3, though it reads the paths, methods and integrations of both alike), and an `info` without a
`description`. Everything else answers as moto does.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _accept_swagger_2() -> None:
    from moto.apigateway.models import APIGatewayBackend

    import_rest_api, put_rest_api = APIGatewayBackend.import_rest_api, APIGatewayBackend.put_rest_api

    def as_openapi_3(api_doc: dict) -> dict:
        if "swagger" not in api_doc:
            return api_doc
        doc = {k: v for k, v in api_doc.items() if k != "swagger"}
        doc["openapi"] = "3.0.1"
        return doc

    def import_swagger(self, api_doc, fail_on_warnings):
        info = {"description": "", **api_doc.get("info", {})}
        return import_rest_api(self, {**as_openapi_3(api_doc), "info": info}, fail_on_warnings)

    def put_swagger(self, function_id, api_doc, fail_on_warnings, mode="merge"):
        return put_rest_api(self, function_id, as_openapi_3(api_doc), fail_on_warnings, mode)

    APIGatewayBackend.import_rest_api = import_swagger
    APIGatewayBackend.put_rest_api = put_swagger


def serve(port: int) -> None:
    _accept_swagger_2()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(log: Path):
    """The emulator in a child process; yields its endpoint URL and stops it afterwards."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.aws_emulator", str(port)], cwd=str(PROJECT_DIR),
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the AWS emulator did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-southeast-2")
    serve(int(sys.argv[1]))
