"""`make deploy`: the order of the steps, the bytecode the package ships, and the statement trigger."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import boto3
import moto

from infra import deploy


def test_deploy_puts_the_stateful_stack_first_then_functions_built_for_python_3_13(capsys):
    assert deploy.main(["--stage", "prod", "--dry-run"]) == 0
    steps = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert steps[0].startswith("+ (stateful stack kauri-prod-data: a CloudFormation change set")
    assert "Stage=prod" in steps[0] and "infra/template.yaml" in steps[0] and "leaving out" not in steps[0]
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


def test_make_deploys_relative_python_is_made_absolute_since_chalice_runs_in_the_build_directory(capsys):
    assert deploy.main(["--stage", "dev", "--dry-run", "--python", ".venv/lambda-py313/bin/python"]) == 0
    chalice = next(s for s in capsys.readouterr().out.splitlines() if s.endswith("deploy --stage dev"))
    assert chalice.startswith(f"+ {os.path.abspath('.venv/lambda-py313/bin/python')} -c ")


def test_every_route_passes_the_content_type_check_chalice_deploy_makes():
    """`chalice deploy` refuses a route whose content types mix binary and text ones (chalice's own check,
    run before anything is created); the test client and `chalice local` never run it."""
    from chalice.deploy.validate import validate_route_content_types

    import app

    validate_route_content_types(app.app.routes, app.app.api.binary_types)


def test_the_stack_goes_through_one_change_set_that_acknowledges_its_named_iam_policy_and_is_idempotent():
    sent = []
    with moto.mock_aws():
        events = boto3._get_default_session().events
        events.register("provide-client-params.cloudformation.CreateChangeSet", lambda params, **_: sent.append(dict(params)),
                        unique_id="kauri-test-change-set")
        try:
            assert deploy.deploy_stack("sandbox", ("AWS::Cognito::",), poll_seconds=1) == "created"
            assert deploy.deploy_stack("sandbox", ("AWS::Cognito::",), poll_seconds=1) == "unchanged"
        finally:
            events.unregister("provide-client-params.cloudformation.CreateChangeSet", unique_id="kauri-test-change-set")
        stack = boto3.client("cloudformation").describe_stacks(StackName="kauri-sandbox-data")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert [p["ChangeSetType"] for p in sent] == ["CREATE", "UPDATE"]
    # Without CAPABILITY_NAMED_IAM, CloudFormation refuses a template with a named IAM policy (moto does not).
    assert all(p["Capabilities"] == ["CAPABILITY_NAMED_IAM"] for p in sent)
    assert all({"ParameterKey": "Stage", "ParameterValue": "sandbox"} in p["Parameters"] for p in sent)


def test_the_whole_template_is_sent_inline_and_only_an_emulator_leaves_anything_out():
    import yaml

    whole = deploy.template_body()
    assert whole == deploy.TEMPLATE_PATH.read_text() and len(whole.encode()) <= deploy.TEMPLATE_BODY_LIMIT
    assert any(r["Type"].startswith("AWS::Cognito::") for r in yaml.safe_load(whole)["Resources"].values())
    reduced = json.loads(deploy.template_body(("AWS::Cognito::",)))
    assert not any(r["Type"].startswith("AWS::Cognito::") for r in reduced["Resources"].values())
    assert "StaffUserPool" not in json.dumps(reduced)   # nothing left that refers to what was left out
