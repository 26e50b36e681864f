"""`make deploy`: the order of the steps, the bytecode the package ships, and the statement trigger."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from infra import deploy


def test_deploy_puts_the_stateful_stack_first_then_functions_built_for_python_3_13(capsys):
    assert deploy.main(["--stage", "prod", "--dry-run"]) == 0
    steps = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert steps[0].startswith("+ aws cloudformation deploy") and "--stack-name kauri-prod-data" in steps[0]
    assert "Stage=prod" in steps[0] and "infra/template.yaml" in steps[0]
    pip = next(s for s in steps if " pip install " in s)
    assert "--platform manylinux2014_x86_64" in pip and "--python-version 3.13" in pip and "--only-binary=:all:" in pip
    chalice = next(s for s in steps if s.endswith("deploy --stage prod") and "chalice" in s)
    assert chalice.startswith("+ python3.13 ")
    wiring = next(s for s in steps if "gateway responses" in s)
    assert steps.index(pip) < steps.index(chalice) < steps.index(wiring)


def test_the_package_imports_from_its_shipped_bytecode_without_reading_a_source(tmp_path):
    build = deploy.layout(tmp_path / "build")
    deploy.compile_here(build)
    # The zip as chalice makes it: vendor/ is copied to the root, beside app.py and chalicelib/.
    task = tmp_path / "task"
    shutil.copytree(build / "vendor", task)
    shutil.copy2(build / "app.py", task / "app.py")
    shutil.copytree(build / "chalicelib", task / "chalicelib")
    missing = [p for p in (task / "chalicelib").rglob("*.py")
               if not any((p.parent / "__pycache__").glob(p.stem + ".*.pyc"))]
    assert missing == []
    # Unchecked-hash bytecode is used as is: with the sources emptied, the app still imports.
    for source in [task / "app.py", *(task / "chalicelib").rglob("*.py")]:
        source.write_text("raise SystemExit('source was read')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAURI_")}
    env.update(PYTHONDONTWRITEBYTECODE="1", KAURI_STAGE="prod")
    done = subprocess.run([sys.executable, "-c", "import app; print(type(app.app).__name__)"], cwd=str(task),
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Chalice"
