"""`make deploy`: the order of the steps, the bytecode the package ships, and the statement trigger."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import boto3
import moto
import pytest

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


# ---- the portal's staff directory, wired by deploy (issue 11) -------------------------------------------

SANDBOX_POOL = {"StaffUserPoolArn": "arn:aws:cognito-idp:ap-southeast-2:123456789012:userpool/ap-southeast-2_SbxPool1",
                "StaffUserPoolId": "ap-southeast-2_SbxPool1", "StaffPortalClientId": "5portalclientsandbox0000"}


def _cognito_calls_of_the_deployed_portal() -> set[str]:
    """The IAM actions of every Cognito call chalicelib/services/staff.py makes, less create_pool (local stack
    and tests only) and the by-name lookup pool() falls back to when KAURI_STAFF_POOL_ID / _CLIENT_ID are unset."""
    import ast

    source = (deploy.PROJECT_DIR / "chalicelib" / "services" / "staff.py").read_text()
    tree = ast.parse(source)
    local_only = {"create_user_pool", "create_user_pool_client", "list_user_pools", "list_user_pool_clients"}
    calls = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            on_idp = (isinstance(target, ast.Name) and target.id == "idp") or (
                isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "_idp")
            if on_idp:
                calls.add(node.func.attr)
    assert local_only <= calls   # the exclusions name real calls (a rename would show here)
    return {"cognito-idp:" + "".join(w.title() for w in name.split("_")) for name in calls - local_only}


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_deploy_grants_the_portal_exactly_its_stages_pool_and_sets_its_ids_in_the_build_only(tmp_path):
    repo_chalice = _files(deploy.PROJECT_DIR / ".chalice")
    build = deploy.layout(tmp_path / "build")
    deploy.policy_for("sandbox", build)
    deploy.wire_staff_directory("sandbox", build, SANDBOX_POOL)
    deploy.wire_staff_directory("sandbox", build, SANDBOX_POOL)   # a second run changes nothing

    assert _files(deploy.PROJECT_DIR / ".chalice") == repo_chalice   # the repo's files are never edited
    built = _files(build / ".chalice")
    for other in ("dev", "prod"):
        assert built[f"policy-{other}.json"] == repo_chalice[f"policy-{other}.json"]
    policy = json.loads(built["policy-sandbox.json"])
    before = json.loads(repo_chalice["policy-sandbox.json"])
    cognito = [s for s in policy["Statement"] if any(a.startswith("cognito-idp:") for a in s["Action"])]
    assert cognito == [{"Sid": "StaffDirectory", "Effect": "Allow", "Action": cognito[0]["Action"],
                        "Resource": [SANDBOX_POOL["StaffUserPoolArn"]]}]
    assert sorted(cognito[0]["Action"]) == sorted(_cognito_calls_of_the_deployed_portal())
    assert [s for s in policy["Statement"] if s["Sid"] != "StaffDirectory"] == before["Statement"]

    config = json.loads(built["config.json"])
    env = config["stages"]["sandbox"]["environment_variables"]
    assert env["KAURI_STAFF_POOL_ID"] == "ap-southeast-2_SbxPool1"
    assert env["KAURI_STAFF_CLIENT_ID"] == "5portalclientsandbox0000"
    assert env["KAURI_STAGE"] == "sandbox"
    for other in ("dev", "prod"):
        assert config["stages"][other] == json.loads(repo_chalice["config.json"])["stages"][other]
    assert "KAURI_STAFF_POOL_ID" not in config.get("environment_variables", {})


def test_the_pools_grant_is_one_list_the_portals_cognito_calls_and_no_second_copy_in_the_stack():
    import yaml

    from infra import gen_template

    assert set(gen_template.STAFF_DIRECTORY_ACTIONS) == _cognito_calls_of_the_deployed_portal()
    template = yaml.safe_load(deploy.TEMPLATE_PATH.read_text())
    assert not [lid for lid, r in template["Resources"].items() if r["Type"].startswith("AWS::IAM::")]
    assert "cognito-idp:" not in deploy.TEMPLATE_PATH.read_text()
    assert template["Outputs"]["StaffUserPoolArn"] == {"Value": {"Fn::GetAtt": ["StaffUserPool", "Arn"]}}


@pytest.mark.parametrize("arn", [
    "arn:aws:cognito-idp:ap-southeast-2:123456789012:userpool/*",
    "arn:aws:cognito-idp:ap-southeast-2:123456789012:userpool/ap-southeast-2_ProdPool9",
    "arn:aws:cognito-idp:ap-southeast-2:*:userpool/ap-southeast-2_SbxPool1",
])
def test_deploy_refuses_a_pool_arn_that_is_not_exactly_the_stages_pool(tmp_path, arn):
    build = deploy.layout(tmp_path / "build")
    with pytest.raises(SystemExit, match="is not the ARN of user pool"):
        deploy.wire_staff_directory("sandbox", build, {**SANDBOX_POOL, "StaffUserPoolArn": arn})


class _BuildStarted(Exception):
    pass


def _nothing_runs(cmd, **_):
    raise _BuildStarted(cmd)


def test_deploy_wires_the_stacks_staff_outputs_into_the_build_before_anything_is_built(tmp_path, monkeypatch):
    # CloudFormation's answer stands in for a stack with a pool (moto cannot make one); main's own steps run.
    monkeypatch.setattr(deploy, "deploy_stack", lambda *a, **k: "unchanged")
    monkeypatch.setattr(deploy, "stack_outputs", lambda stage: {"FilesBucketName": "kauri-sandbox-files", **SANDBOX_POOL})
    monkeypatch.setattr(deploy, "check_python", lambda python: None)
    monkeypatch.setattr(deploy.subprocess, "run", _nothing_runs)   # stop at the first build command (pip)
    with pytest.raises(_BuildStarted):
        deploy.main(["--stage", "sandbox", "--build-dir", str(tmp_path / "build"), "--state-dir", str(tmp_path / "s")])
    chalice_dir = tmp_path / "build" / "sandbox" / ".chalice"
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["sandbox"]["environment_variables"]
    assert (env["KAURI_STAFF_POOL_ID"], env["KAURI_STAFF_CLIENT_ID"]) == ("ap-southeast-2_SbxPool1", "5portalclientsandbox0000")
    statements = json.loads((chalice_dir / "policy-sandbox.json").read_text())["Statement"]
    assert [s["Resource"] for s in statements if s.get("Sid") == "StaffDirectory"] == [[SANDBOX_POOL["StaffUserPoolArn"]]]


def test_a_real_deploy_stops_when_the_stack_has_no_staff_directory_outputs(tmp_path, monkeypatch, capsys):
    with moto.mock_aws():
        # moto's CloudFormation cannot make the pool: the stack it makes has none of the staff outputs
        assert deploy.deploy_stack("sandbox", ("AWS::Cognito::",), poll_seconds=1) == "created"
        outputs = deploy.stack_outputs("sandbox")
        assert not set(deploy.STAFF_OUTPUTS) & set(outputs)
        monkeypatch.setattr(deploy, "deploy_stack", lambda *a, **k: "unchanged")
        monkeypatch.setattr(deploy, "check_python", lambda python: None)
        monkeypatch.setattr(deploy.subprocess, "run", _nothing_runs)
        with pytest.raises(SystemExit, match="has no output StaffUserPoolArn, StaffUserPoolId, StaffPortalClientId"):
            deploy.main(["--stage", "sandbox", "--build-dir", str(tmp_path / "build"),
                         "--state-dir", str(tmp_path / "state")])
    assert not (tmp_path / "build").exists()   # stopped before building anything

    assert deploy.staff_outputs(outputs, "sandbox", ("AWS::Cognito::",)) is None   # the emulator goes on
    err = capsys.readouterr().err
    assert "WARNING" in err and "staff directory is NOT wired" in err
    with pytest.raises(SystemExit):
        deploy.staff_outputs(outputs, "sandbox", ("AWS::SNS::",))   # leaving out something else is no excuse
