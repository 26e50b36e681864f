"""What AWS Lambda Powertools' Logger + Metrics would add to a cold start, beside chalicelib.log/metrics.

    pip install --no-deps --no-compile --target /tmp/powertools aws-lambda-powertools==3.37.0
    python -m bench.powertools_cost --powertools-dir /tmp/powertools [--runs 9]

Lambda-like: sources copied without bytecode, PYTHONDONTWRITEBYTECODE=1, a fresh interpreter per run;
the median import-and-construct time of each. Powertools is not a dependency of Kauri (README
"Observability" says why); this only measures it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CASES = [
    ("chalicelib.log + chalicelib.metrics", "import chalicelib.log, chalicelib.metrics"),
    ("powertools Logger() + Metrics()", "from aws_lambda_powertools import Logger, Metrics; Logger(); Metrics()"),
    ("ours, then powertools on top", "import chalicelib.log, chalicelib.metrics; "
                                     "from aws_lambda_powertools import Logger, Metrics; Logger(); Metrics()"),
]


def measure(code: str, path: str, runs: int) -> float:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=path, KAURI_STAGE="prod",
               POWERTOOLS_SERVICE_NAME="kauri", POWERTOOLS_METRICS_NAMESPACE="Kauri")
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; "
                               "print((time.perf_counter() - t) * 1000)"],
                              env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        if done.returncode != 0:
            raise SystemExit(done.stderr[-1500:])
        times.append(float(done.stdout.split()[-1]))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--powertools-dir", required=True, help="a --target dir holding aws_lambda_powertools")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        no_pyc = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(Path(args.powertools_dir) / "aws_lambda_powertools", Path(tmp) / "aws_lambda_powertools",
                        ignore=no_pyc)
        shutil.copytree(PROJECT_DIR / "chalicelib", Path(tmp) / "chalicelib", ignore=no_pyc)
        results = [(label, measure(code, tmp, args.runs)) for label, code in CASES]
    for label, ms in results:
        print(f"  {label:40s} {ms:7.1f} ms")
    print(f"  powertools' extra cost on top of ours     {results[2][1] - results[0][1]:7.1f} ms (median of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
