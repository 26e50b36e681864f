"""Run every benchmark and print one summary table (what `make bench` runs). Prints; never asserts.

    python -m bench.run_all [--runs 9] [--n 40] [--statement-rows 100000]   (statements and reconciliation)
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

from bench import cold_start, import_time, reconcile, roundtrips, statements


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=import_time.PROJECT_DIR,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=import_time.PROJECT_DIR,
                               capture_output=True, text=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per import measurement")
    parser.add_argument("--n", type=int, default=40, help="payments driven through the app")
    parser.add_argument("--statement-rows", type=int, default=100_000,
                        help="rows per synthetic statement file (python -m bench.statements defaults to 1,000,000)")
    args = parser.parse_args(argv)

    print(f"Kauri benchmarks  {datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z  commit {_commit()}  "
          f"Python {platform.python_version()}  {os.cpu_count()} CPU  {platform.machine()}")
    print()

    imports = {stage: import_time.measure(stage, args.runs) for stage in ("prod", "dev")}
    print(import_time.report(imports["prod"]))
    print()
    cold = cold_start.run(max(3, args.runs // 2))
    print(cold_start.report(cold))
    print()
    parses = statements.run(args.statement_rows)
    print(statements.report(parses))
    print()
    recons = reconcile.run(args.statement_rows, sample=min(reconcile.DEFAULT_STORE_SAMPLE, args.statement_rows))
    print(reconcile.report(recons))
    print()
    # Last: it sets this process's environment and imports app.py under moto.
    trips = roundtrips.run(args.n)
    print(roundtrips.report(trips))
    print()

    summary: list[tuple[str, str]] = []
    for stage, r in imports.items():
        summary.append((f"import app, KAURI_STAGE={stage}, warm .pyc (median)", f"{r['warm']['median_ms']:.0f} ms"))
        summary.append((f"import app, KAURI_STAGE={stage}, no .pyc (Lambda-like)", f"{r['no_pyc']['median_ms']:.0f} ms"))
    cold_ms = cold_start.summary(cold)
    for name in ("kauri", "kauri+pyc"):
        summary.append((f"cold start {name} / bare Chalice put_item (Lambda-like)",
                        f"{cold_ms[name]['total_ms'] / cold_ms['bare']['total_ms']:.2f}x"))
    for r in roundtrips.rows(trips):
        summary.append((f"AWS calls per request, first/steady: {r['name']}", f"{r['first']} / {r['steady']}"
                        + (f"  (+{r['sandbox']} sandbox-side)" if r["sandbox"] not in ("", "0") else "")))
    summary.extend(statements.summary_rows(parses))
    summary.extend(reconcile.summary_rows(recons))
    t = trips["timings"]
    for label, key in [("create", "create"), ("callback", "callback"), ("get", "get"), ("bare route", "bare")]:
        warm = (t.get(key) or [])[1:]
        if warm:
            summary.append((f"in-process p50 / p95: {label}",
                            f"{roundtrips.percentile(warm, 0.5):.1f} / {roundtrips.percentile(warm, 0.95):.1f} ms"))
    width = max(len(k) for k, _ in summary)
    print("Summary")
    print(f"  {'metric':{width}s}  value")
    print(f"  {'-' * width}  {'-' * 24}")
    for k, v in summary:
        print(f"  {k:{width}s}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
