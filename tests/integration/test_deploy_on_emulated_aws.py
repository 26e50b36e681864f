"""`make deploy` for real, against an emulated AWS account: infra/deploy.py runs as `make deploy` runs it
(its own process, chalice under Python 3.13), with every AWS call sent to moto's server on loopback.

What runs for real against the emulator: the stateful stack's change set (less the Cognito resources,
which moto's CloudFormation cannot create: `--leave-out AWS::Cognito::`), chalice's deploy (IAM roles and
their stage policy, every Lambda function with its zip, the EventBridge rules of the schedules, the SQS
event source mapping, the REST API imported from chalice's Swagger and its stage), and our wiring (gateway
responses, a deployment, the stage's throttling). With no pool in the stack, the staff directory's wiring is
skipped with a warning (only because Cognito was left out). The emulator is moto 5.2.5 told to accept Swagger 2.0 in
ImportRestApi/PutRestApi as API Gateway does (tests/support/aws_emulator.py). The Lambda build takes its
wheels from `make deploy-env`'s download (no index, no traffic off this machine). Then it deploys again:
an upgrade changes the functions in place and makes nothing twice.

Slow (two whole deploys, ~1 min): one test, so that it runs once however the suite is split.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from chalicelib.api import gateway
from chalicelib.store import tables
from infra import deploy
from tests.support import aws_emulator

PROJECT_DIR = Path(__file__).resolve().parents[2]
STAGE = "dev"
REGION = "ap-southeast-2"
VENV = PROJECT_DIR / ".venv"

pytestmark = pytest.mark.deploy


def _deploy_env() -> tuple[str, Path]:
    python = os.environ.get("KAURI_DEPLOY_PY") or str(VENV / "lambda-py313" / "bin" / "python")
    wheels = VENV / "lambda-wheels"
    if not (Path(python).exists() and any(wheels.glob("*.whl"))):
        pytest.fail(f"no Lambda build environment ({python}, {wheels}): run `make deploy-env` (make test does)")
    return python, wheels


def _run_deploy(endpoint: str, build: Path, state: Path, python: str, wheels: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_", "PIP_"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        # Loopback only: anything not sent to the emulator goes to a closed local port and fails.
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
        "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
    })
    done = subprocess.run(
        [sys.executable, "-m", "infra.deploy", "--stage", STAGE, "--python", python, "--build-dir", str(build),
         "--state-dir", str(state), "--leave-out", "AWS::Cognito::"],
        cwd=str(PROJECT_DIR), env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def _stage_env() -> dict:
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}), **config["stages"][STAGE].get("environment_variables", {})}


def _account(endpoint: str) -> dict:
    return {name: boto3.client(name, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                               aws_secret_access_key="testing")
            for name in ("dynamodb", "s3", "sqs", "lambda", "events", "iam", "apigateway", "cloudformation")}


def _functions(aws: dict) -> dict:
    pages = aws["lambda"].get_paginator("list_functions").paginate()
    return {f["FunctionName"]: f for page in pages for f in page["Functions"]}


def _inventory(aws: dict, rest_api_id: str) -> dict:
    """Everything a deploy makes, counted, so that a second deploy can be shown to make nothing twice."""
    return {
        "functions": sorted(_functions(aws)),
        "roles": sorted(r["RoleName"] for r in aws["iam"].list_roles()["Roles"]),
        "rules": sorted(r["Name"] for r in aws["events"].list_rules()["Rules"]),
        "targets": sorted((r["Name"], t["Arn"]) for r in aws["events"].list_rules()["Rules"]
                          for t in aws["events"].list_targets_by_rule(Rule=r["Name"])["Targets"]),
        "mappings": sorted((m["EventSourceArn"], m["FunctionArn"])
                           for m in aws["lambda"].list_event_source_mappings()["EventSourceMappings"]),
        "rest_apis": sorted(a["id"] for a in aws["apigateway"].get_rest_apis()["items"]),
        "resources": sorted((r["path"], tuple(sorted(r.get("resourceMethods", {}))))
                            for r in aws["apigateway"].get_resources(restApiId=rest_api_id, limit=500)["items"]),
        "gateway_responses": sorted(g["responseType"] for g in
                                    aws["apigateway"].get_gateway_responses(restApiId=rest_api_id)["items"]),
        "stages": sorted(s["stageName"] for s in aws["apigateway"].get_stages(restApiId=rest_api_id)["item"]),
        "tables": sorted(aws["dynamodb"].list_tables()["TableNames"]),
        "buckets": sorted(b["Name"] for b in aws["s3"].list_buckets()["Buckets"]),
        "queues": sorted(aws["sqs"].list_queues().get("QueueUrls", [])),
        "stacks": sorted((s["StackName"], s["StackStatus"]) for s in aws["cloudformation"].describe_stacks()["Stacks"]),
    }


def _check_the_account(aws: dict, build: Path, state: Path) -> str:
    import app as app_module

    app = app_module.app
    # The stateful stack: every model's table, the files bucket and the statements queue.
    made_tables = set(aws["dynamodb"].list_tables()["TableNames"])
    assert {f"kauri-{STAGE}-" + m.Meta.table_name.removeprefix("kauri-test-") for m in tables.models()} <= made_tables
    assert f"kauri-{STAGE}-files" in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}
    queue_url = aws["sqs"].get_queue_url(QueueName=f"kauri-{STAGE}-statements")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    # Every function of app.py, on python3.13, with the stage's environment, its own role and the stage's
    # policy, and the zip this build made (bytecode compiled by 3.13 inside).
    functions = _functions(aws)
    names = [e.name for e in app.event_sources] + [f.name for f in app.pure_lambda_functions]
    expected = {f"kauri-{STAGE}-{n}" for n in names} | {f"kauri-{STAGE}"}          # kauri-dev: the API handler
    assert set(functions) == expected
    [package] = (build / STAGE / ".chalice" / "deployments").glob("*-python3.13.zip")
    sha = base64.b64encode(hashlib.sha256(package.read_bytes()).digest()).decode()
    policy = json.loads((PROJECT_DIR / ".chalice" / f"policy-{STAGE}.json").read_text())
    for name, fn in functions.items():
        assert fn["Runtime"] == "python3.13", name
        assert fn["Environment"]["Variables"] == _stage_env(), name
        assert fn["CodeSha256"] == sha, name
        role = fn["Role"].rsplit("/", 1)[1]
        [policy_name] = aws["iam"].list_role_policies(RoleName=role)["PolicyNames"]
        document = aws["iam"].get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        assert document == policy, name
        [logs] = [s["Resource"] for s in document["Statement"] if s.get("Sid") == "Logs"]
        group = fn["FunctionArn"].replace(":lambda:", ":logs:").split(":function:")[0] + f":log-group:/aws/lambda/{name}"
        assert any(fnmatch.fnmatchcase(group + ":log-stream:x", pattern) for pattern in logs), name   # may log
    assert functions[f"kauri-{STAGE}-chase_payments"]["Timeout"] == 240    # config.json's per-function setting
    with zipfile.ZipFile(package) as zf:
        shipped = set(zf.namelist())
    assert "app.py" in shipped and any(n.startswith("__pycache__/app.cpython-313") for n in shipped)
    assert any(n.startswith("chalicelib/__pycache__/money.cpython-313") for n in shipped)
    assert not any(n.startswith(("tests/", "infra/", "bench/", ".venv/")) for n in shipped)

    # Every schedule in app.py has its rule, aimed at its function.
    for source in app.event_sources:
        if type(source).__name__ != "ScheduledEventConfig":
            continue
        rule = aws["events"].describe_rule(Name=f"kauri-{STAGE}-{source.name}-event")
        assert rule["ScheduleExpression"] == source.schedule_expression.to_string(), source.name
        [target] = aws["events"].list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"] == functions[f"kauri-{STAGE}-{source.name}"]["FunctionArn"]

    # The statements queue feeds statement_landed, one message at a time.
    [mapping] = [m for m in aws["lambda"].list_event_source_mappings()["EventSourceMappings"]
                 if m["EventSourceArn"] == queue_arn]
    assert mapping["FunctionArn"] == functions[f"kauri-{STAGE}-statement_landed"]["FunctionArn"]
    assert mapping["BatchSize"] == 1 and mapping["State"] == "Enabled"

    # The REST API chalice recorded: our routes on the API handler, our gateway responses, the throttling.
    deployed = json.loads((state / f"{STAGE}.json").read_text())
    [rest_api_id] = [r["rest_api_id"] for r in deployed["resources"] if r["resource_type"] == "rest_api"]
    api = aws["apigateway"]
    resources = {r["path"]: r for r in api.get_resources(restApiId=rest_api_id, limit=500)["items"]}
    for route, methods in app.routes.items():
        assert set(methods) <= set(resources[route].get("resourceMethods", {})), route
    uri = api.get_integration(restApiId=rest_api_id, resourceId=resources["/v1/payments"]["id"],
                              httpMethod="POST")["uri"]
    assert functions[f"kauri-{STAGE}"]["FunctionArn"] + "/invocations" in uri
    found = {g["responseType"]: g for g in api.get_gateway_responses(restApiId=rest_api_id)["items"]}
    assert set(found) == set(gateway.GATEWAY_RESPONSES)
    for response_type, response in found.items():
        wanted = gateway.gateway_response(response_type)
        assert response["statusCode"] == wanted["statusCode"], response_type
        assert response["responseTemplates"] == wanted["responseTemplates"], response_type
    settings = api.get_stage(restApiId=rest_api_id, stageName=STAGE)["methodSettings"]["*/*"]
    rate, burst = deploy.STAGE_THROTTLE[STAGE]
    assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (rate, burst)
    return rest_api_id


def test_make_deploy_creates_the_stack_and_functions_then_upgrades_in_place_without_duplicates(tmp_path):
    python, wheels = _deploy_env()
    build, state = tmp_path / "build", tmp_path / "state"
    with aws_emulator.running(tmp_path / "emulator.log") as endpoint:
        aws = _account(endpoint)

        first = _run_deploy(endpoint, build, state, python, wheels)
        assert "stack created" in first
        assert "Creating Rest API" in first
        # no pool in the emulated stack: deploy says the staff directory is not wired, and goes on only because
        # Cognito was left out (the policy and environment rewrite itself: tests/integration/test_deploy.py)
        assert "staff directory NOT wired (no StaffUserPoolArn, StaffUserPoolId, StaffPortalClientId" in first
        rest_api_id = _check_the_account(aws, build, state)
        before = _inventory(aws, rest_api_id)

        second = _run_deploy(endpoint, build, state, python, wheels)
        assert "stack unchanged" in second
        assert "Updating rest API" in second
        assert [line for line in second.splitlines()
                if line.startswith("Creating") and line != "Creating deployment package."] == []
        assert _check_the_account(aws, build, state) == rest_api_id
        assert _inventory(aws, rest_api_id) == before
        # the upgrade sent every function's code again, in place
        assert {line.removeprefix("Updating lambda function: ") for line in second.splitlines()
                if line.startswith("Updating lambda function: ")} == set(before["functions"])
