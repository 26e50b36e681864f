"""Cold-start cost of `import app`: every Lambda of this app pays it.

    python -m bench.import_time [--runs 9] [--stage prod]

Three numbers, each the median over fresh interpreters:
  warm .pyc    `import app` with the venv's compiled bytecode (a developer laptop, a second cold start)
  no .pyc      the same with no bytecode for our code and site-packages (stdlib still compiled), and
               nothing written: what Lambda does with chalice's zip, which ships no .pyc and sits on
               a read-only /var/task
  process      the whole `python -c "import app"` wall time, interpreter start included
Then `python -X importtime -c "import app"`: the modules that cost most.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

_MEASURE = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"


def stage_env(stage: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_"))}
    env.update({
        "KAURI_STAGE": stage,
        "KAURI_SANDBOX_ENABLED": "0" if stage == "prod" else "1",
        "AWS_DEFAULT_REGION": "ap-southeast-2",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONPATH": str(PROJECT_DIR),
    })
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"`python {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
    return done


def import_ms(env: dict[str, str], runs: int, pycache_prefix: str | None = None) -> dict[str, float]:
    inside, whole = [], []
    run_env = dict(env)
    args = ["-c", _MEASURE]
    if pycache_prefix:
        run_env["PYTHONPYCACHEPREFIX"] = pycache_prefix
        args = ["-B", *args]  # read that cache, never write to it
    for _ in range(runs):
        started = time.perf_counter()
        out = _run(args, run_env)
        whole.append((time.perf_counter() - started) * 1000)
        inside.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
    return {"median_ms": statistics.median(inside), "min_ms": min(inside), "max_ms": max(inside),
            "process_median_ms": statistics.median(whole)}


def lambda_like_cache(env: dict[str, str], into: str) -> str:
    """A bytecode cache with the standard library compiled (the Lambda runtime ships it so) but not our
    code or site-packages (chalice's zip ships no .pyc, and /var/task is read-only)."""
    _run(["-c", "import app"], dict(env, PYTHONPYCACHEPREFIX=into))
    shipped = {PROJECT_DIR, *(Path(p) for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})}
    for path in shipped:
        shutil.rmtree(Path(into) / path.resolve().relative_to(path.resolve().anchor), ignore_errors=True)
    return into


def importtime_offenders(env: dict[str, str], top: int = 10) -> dict:
    """Where `import app` spends its time, from -X importtime (bytecode already cached).

    Self times partition the total exactly, so summing them per top-level package says who costs what.
    """
    _run(["-c", "import app"], env)  # the .pyc exist: this shows import cost, not compile cost
    err = _run(["-X", "importtime", "-c", "import app"], env).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, cumulative_us, name = line.replace("import time:", "|", 1).split("|")
        rows.append((name.strip(), int(self_us) / 1000, int(cumulative_us) / 1000))
    total = next((cum for name, _, cum in rows if name == "app"), sum(r[1] for r in rows))
    by_package: dict[str, float] = {}
    for name, self_ms, _ in rows:
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0.0) + self_ms
    return {
        "total_ms": total,
        "packages": sorted(by_package.items(), key=lambda kv: -kv[1])[:top],
        "modules": sorted(((n, s) for n, s, _ in rows), key=lambda r: -r[1])[:top],
    }


def measure(stage: str = "prod", runs: int = 9) -> dict:
    env = stage_env(stage)
    _run(["-c", "import app"], env)  # warm the bytecode cache once
    with tempfile.TemporaryDirectory() as cache:
        no_pyc = import_ms(env, max(3, runs // 3), pycache_prefix=lambda_like_cache(env, cache))
    return {
        "stage": stage,
        "runs": runs,
        "warm": import_ms(env, runs),
        "no_pyc": no_pyc,
        "offenders": importtime_offenders(env),
    }


def report(result: dict) -> str:
    w, c = result["warm"], result["no_pyc"]
    lines = [
        f"import app  (KAURI_STAGE={result['stage']}, median of {result['runs']} fresh interpreters, {sys.version.split()[0]})",
        f"  warm .pyc : {w['median_ms']:7.1f} ms   (min {w['min_ms']:.1f}, max {w['max_ms']:.1f}; "
        f"whole process {w['process_median_ms']:.0f} ms)",
        f"  no .pyc   : {c['median_ms']:7.1f} ms   (Lambda-like: app + site-packages compile from source; "
        f"whole process {c['process_median_ms']:.0f} ms)",
    ]
    o = result["offenders"]
    lines.append(f"  -X importtime (one run, .pyc cached; total {o['total_ms']:.0f} ms), self time summed per package:")
    for name, ms in o["packages"]:
        lines.append(f"    {name:32s} {ms:7.1f} ms  {100 * ms / o['total_ms']:4.0f}%")
    lines.append("  costliest single modules (self time):")
    for name, ms in o["modules"]:
        lines.append(f"    {name:48s} {ms:7.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--stage", default="prod", choices=["dev", "sandbox", "prod"])
    args = parser.parse_args(argv)
    print(report(measure(args.stage, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
