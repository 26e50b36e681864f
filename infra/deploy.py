"""`make deploy STAGE=dev|sandbox|prod`: the stateful stack, then the functions, then what chalice cannot wire.

    python -m infra.deploy --stage prod [--dry-run] [--package-only OUT_DIR]

1. Stateful stack: infra/template.yaml as `kauri-<stage>-data`, through one CloudFormation change set made
   with boto3 (tables, bucket, alarms; every table and the bucket are Retain, so a stack mistake never
   drops data). `--leave-out AWS::Cognito::` is for an emulator that cannot create those, never for AWS.
   Then the staff directory: the stack's outputs StaffUserPoolArn / StaffUserPoolId / StaffPortalClientId
   go into the BUILD directory's copy of the stage policy (the portal's Cognito actions on exactly that
   pool) and stage environment (KAURI_STAFF_POOL_ID / KAURI_STAFF_CLIENT_ID); without them a deploy stops,
   unless Cognito was left out (then it warns and goes on).
2. Functions: a build directory (app.py, chalicelib/, .chalice/) whose vendor/ holds the runtime
   dependencies as manylinux wheels for Python 3.13, installed by pip for the Lambda platform, and
   bytecode for all of it compiled by Python 3.13 (unchecked-hash: the zip is immutable, so no
   import re-reads or hashes a source; see README "Cold start"). requirements.txt is left empty there
   (vendor/ already holds everything), and `chalice deploy --stage <stage>` runs under Python 3.13,
   so the Lambda runtime is python3.13. The per-stage IAM policy is `.chalice/policy-<stage>.json`
   where it exists (else `.chalice/policy.json`).
3. Wiring chalice cannot do: API Gateway gateway responses in our error shape (chalicelib/api/gateway.py)
   and the stage's throttling on the REST API (`--package-only` puts the gateway responses in the SAM
   template instead, `--merge-template`). The statements bucket's S3 -> SQS notification needs no step
   here: the stateful stack owns the bucket and declares it (and chalice wires SQS -> statement_landed).

Chalice's record of what it made (`<stage>.json`) is kept in `--state-dir` (.chalice/deployed) and
given back to chalice on the next deploy, which then updates in place. Every AWS call (ours and
chalice's) goes where botocore sends it: AWS_ENDPOINT_URL points them all at an emulator
(tests/integration/test_deploy_on_emulated_aws.py). Nothing here runs on import; `--dry-run` prints the
steps without running any.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
STAGES = ("dev", "sandbox", "prod")
LAMBDA_PYTHON = "3.13"
LAMBDA_PLATFORM = "manylinux2014_x86_64"


def stack_name(stage: str) -> str:
    return f"kauri-{stage}-data"


TEMPLATE_PATH = PROJECT_DIR / "infra" / "template.yaml"
# CloudFormation's limit for a template passed inline (TemplateBody); past it, it must go through S3.
TEMPLATE_BODY_LIMIT = 51_200


def template_body(leave_out: tuple[str, ...] = ()) -> str:
    """infra/template.yaml as sent to CloudFormation; with `leave_out` (resource type prefixes such as
    "AWS::Cognito::", for an emulator that cannot create them) those resources, everything that refers to
    them and the outputs that name them are removed."""
    text = TEMPLATE_PATH.read_text()
    if leave_out:
        import yaml

        template = yaml.safe_load(text)
        dropped = {lid for lid, r in template["Resources"].items() if r["Type"].startswith(leave_out)}
        if not dropped:
            raise SystemExit(f"--leave-out {' '.join(leave_out)}: the template has no such resource")
        refers = lambda node: any(d in json.dumps(node) for d in dropped)  # noqa: E731
        template["Resources"] = {lid: r for lid, r in template["Resources"].items()
                                 if lid not in dropped and not refers(r)}
        template["Outputs"] = {k: o for k, o in template.get("Outputs", {}).items() if not refers(o)}
        text = json.dumps(template)
    if len(text.encode()) > TEMPLATE_BODY_LIMIT:
        raise SystemExit(f"infra/template.yaml is {len(text.encode())} bytes: CloudFormation takes at most "
                         f"{TEMPLATE_BODY_LIMIT} inline (upload it to S3 and pass TemplateURL instead)")
    return text


STACK_SETTINGS = {"AlarmEmail": "--alarm-email", "MailIdentity": "--mail-identity"}   # parameter -> flag


def stack_parameters(stage: str, given: dict[str, str | None], exists: bool) -> list[dict]:
    """Stage, and each optional parameter: the value given, else on an update the value the stack has (a
    deploy that does not mention the alarm mailbox or the mail identity must not switch them off), else the
    template's default (empty: off)."""
    params = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    for key in STACK_SETTINGS:
        value = given.get(key)
        if value is not None:
            params.append({"ParameterKey": key, "ParameterValue": value.strip()})
        elif exists:
            params.append({"ParameterKey": key, "UsePreviousValue": True})
    return params


def _create_change_set(cfn, name: str, change_set: str, kind: str, leave_out: tuple[str, ...], params: list[dict],
                       stage: str) -> None:
    cfn.create_change_set(
        StackName=name, ChangeSetName=change_set, ChangeSetType=kind, TemplateBody=template_body(leave_out),
        Parameters=params,
        # No IAM resource in the template today (the staff directory's grant is in the stage policy, see
        # wire_staff_directory); acknowledged anyway, so a named one added later does not fail the deploy.
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": "app", "Value": "kauri"}, {"Key": "stage", "Value": stage}])


def deploy_stack(stage: str, leave_out: tuple[str, ...] = (), poll_seconds: int = 5,
                 settings: dict[str, str | None] | None = None) -> str:
    """Create or update the stateful stack through a change set (what `aws cloudformation deploy` does,
    without needing the AWS CLI). Returns "created", "updated" or "unchanged"."""
    import boto3
    from botocore.exceptions import ClientError, WaiterError

    cfn = boto3.client("cloudformation")
    name = stack_name(stage)
    try:
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" not in str(e):
            raise
        status = None
    if status == "ROLLBACK_COMPLETE":   # a first create that failed leaves a stack that can only be deleted
        raise SystemExit(f"stack {name} is ROLLBACK_COMPLETE (its first create failed): read its events, "
                         f"delete it (its tables and bucket are Retain) and deploy again")
    kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    change_set = f"{name}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    try:
        _create_change_set(cfn, name, change_set, kind, leave_out, stack_parameters(stage, settings or {},
                                                                                    exists=kind == "UPDATE"), stage)
    except ClientError as e:   # some answer "nothing to change" at once instead of in the change set's status
        if "No updates are to be performed" in str(e):
            return "unchanged"
        raise
    wait = {"Delay": poll_seconds, "MaxAttempts": 720 // poll_seconds}
    try:
        cfn.get_waiter("change_set_create_complete").wait(StackName=name, ChangeSetName=change_set,
                                                          WaiterConfig=wait)
    except WaiterError:
        described = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            cfn.delete_change_set(StackName=name, ChangeSetName=change_set)
            return "unchanged"
        raise SystemExit(f"change set {change_set} failed: {reason}")
    cfn.execute_change_set(StackName=name, ChangeSetName=change_set)
    done = "stack_create_complete" if kind == "CREATE" else "stack_update_complete"
    cfn.get_waiter(done).wait(StackName=name, WaiterConfig=wait)
    return "created" if kind == "CREATE" else "updated"


def stack_outputs(stage: str) -> dict[str, str]:
    """The stateful stack's outputs, by key."""
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name(stage))["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# Stack output -> what it becomes in the build (the pool ARN: the stage policy's Cognito statement).
STAFF_OUTPUTS = {"StaffUserPoolArn": None, "StaffUserPoolId": "KAURI_STAFF_POOL_ID",
                 "StaffPortalClientId": "KAURI_STAFF_CLIENT_ID"}
STAFF_SID = "StaffDirectory"
COGNITO = "AWS::Cognito::UserPool"


def staff_outputs(outputs: dict[str, str], stage: str, leave_out: tuple[str, ...]) -> dict[str, str] | None:
    """The staff directory's outputs of the stack; None (said loudly) when the stack has none because
    `--leave-out AWS::Cognito::` left the pool out (an emulator); a real deploy without them stops."""
    found = {k: outputs[k] for k in STAFF_OUTPUTS if outputs.get(k)}
    if len(found) == len(STAFF_OUTPUTS):
        return found
    missing = ", ".join(k for k in STAFF_OUTPUTS if k not in found)
    if any(COGNITO.startswith(prefix) for prefix in leave_out):
        print(f"!! WARNING: stack {stack_name(stage)} has no {missing} (--leave-out {' '.join(leave_out)}): the "
              f"staff directory is NOT wired, portal sign-in will be refused on this deploy", file=sys.stderr,
              flush=True)
        print(f"  staff directory NOT wired (no {missing}: Cognito left out)", flush=True)
        return None
    raise SystemExit(f"stack {stack_name(stage)} has no output {missing}: the portal's staff directory cannot be "
                     f"wired (no Cognito grant, no KAURI_STAFF_POOL_ID / KAURI_STAFF_CLIENT_ID); is "
                     f"infra/template.yaml current (python -m infra.gen_template) and did the stack update?")


def grant_in_build(stage: str, build: Path, sid: str, actions: list[str], arn: str, env: dict[str, str],
                   keep_env: tuple[str, ...] = ()) -> None:
    """In the build directory only: statement `sid` (actions on exactly `arn`) in the stage's policy, in place
    of any earlier one, and `env` in the stage's environment (a name in `keep_env` the stage's config already
    sets is left as it is). Running it again changes nothing."""
    config_path = build / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    stage_config = config["stages"][stage]
    policy_path = build / ".chalice" / stage_config.get("iam_policy_file", "policy.json")
    policy = json.loads(policy_path.read_text())
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid] + [
        {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": [arn]}]
    policy_path.write_text(json.dumps(policy, indent=2) + "\n")
    stage_env = stage_config.setdefault("environment_variables", {})
    stage_env.update({k: v for k, v in env.items() if not (k in keep_env and stage_env.get(k))})
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def wire_staff_directory(stage: str, build: Path, outputs: dict[str, str]) -> None:
    """The stage's policy gets the portal's Cognito actions on exactly this stage's pool, and the stage's
    environment the pool and client ids (in the build only)."""
    from infra.gen_template import STAFF_DIRECTORY_ACTIONS

    arn = outputs["StaffUserPoolArn"]
    pool_id = outputs["StaffUserPoolId"]
    if not re.fullmatch(r"[\w-]+_\w+", pool_id) or not re.fullmatch(
            rf"arn:aws[a-z-]*:cognito-idp:[a-z0-9-]+:\d{{12}}:userpool/{re.escape(pool_id)}", arn):
        raise SystemExit(f"stack output StaffUserPoolArn {arn!r} is not the ARN of user pool {pool_id}")
    grant_in_build(stage, build, STAFF_SID, list(STAFF_DIRECTORY_ACTIONS), arn,
                   {name: outputs[key] for key, name in STAFF_OUTPUTS.items() if name})


MAIL_SID = "MailSend"


def wire_mail(stage: str, build: Path, outputs: dict[str, str]) -> bool:
    """When the stack was given a mail identity, the stage's policy may send mail from exactly that identity
    (gen_template.MAIL_ACTIONS) and KAURI_MAIL_FROM names it, unless the stage's config already sets a sender
    (in the build only). Without one, mail stays off (the portal shows invitation links)."""
    from infra.gen_template import MAIL_ACTIONS

    identity, arn = outputs.get("MailIdentity"), outputs.get("MailIdentityArn")
    if not (identity and arn):
        return False
    if not re.fullmatch(r"([A-Za-z0-9._+-]+@)?[A-Za-z0-9.-]+", identity) or not re.fullmatch(
            rf"arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{{12}}:identity/{re.escape(identity)}", arn):
        raise SystemExit(f"stack output MailIdentityArn {arn!r} is not the ARN of SES identity {identity!r}")
    sender = identity if "@" in identity else f"Kauri <no-reply@{identity}>"
    grant_in_build(stage, build, MAIL_SID, list(MAIL_ACTIONS), arn, {"KAURI_MAIL_FROM": sender},
                   keep_env=("KAURI_MAIL_FROM",))
    return True


def vendor_command(python: str, build: Path) -> list[str]:
    """Runtime dependencies as the Lambda platform's wheels (never this machine's)."""
    return [python, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(build / "vendor"),
            "--platform", LAMBDA_PLATFORM, "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
            "--only-binary=:all:", "-r", str(PROJECT_DIR / "requirements.txt")]


def layout(build: Path) -> Path:
    """The chalice project chalice deploys: our code and config, an empty requirements.txt."""
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / "app.py", build / "app.py")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "deployments", "deployed")
    shutil.copytree(PROJECT_DIR / "chalicelib", build / "chalicelib", ignore=ignore)
    shutil.copytree(PROJECT_DIR / ".chalice", build / ".chalice", ignore=ignore)
    (build / "requirements.txt").write_text("# everything is in vendor/ (see infra/deploy.py)\n")
    (build / "vendor").mkdir()
    return build


def compile_bytecode(build: Path, python: str) -> None:
    """Bytecode for chalicelib/, vendor/ and app.py, by the runtime's Python, validated by nothing.

    app.py's bytecode goes to vendor/__pycache__/, which chalice copies to the zip's root beside app.py."""
    script = (
        "import compileall, py_compile, sys\n"
        "mode = py_compile.PycInvalidationMode.UNCHECKED_HASH\n"
        "ok = all(compileall.compile_dir(d, quiet=1, invalidation_mode=mode) for d in sys.argv[1:3])\n"
        "import importlib.util, os\n"
        "target = os.path.join(sys.argv[2], importlib.util.cache_from_source('app.py'))\n"
        "py_compile.compile(sys.argv[3], cfile=target, dfile='app.py', doraise=True, invalidation_mode=mode)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    subprocess.run([python, "-c", script, str(build / "chalicelib"), str(build / "vendor"), str(build / "app.py")],
                   check=True)


def compile_here(build: Path) -> None:
    """The same with this interpreter (for tests and the cold-start bench)."""
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    for d in ("chalicelib", "vendor"):
        if not compileall.compile_dir(str(build / d), quiet=1, invalidation_mode=mode):
            raise RuntimeError(f"compileall failed in {d}")
    import importlib.util

    target = build / "vendor" / importlib.util.cache_from_source("app.py")
    py_compile.compile(str(build / "app.py"), cfile=str(target), dfile="app.py", doraise=True, invalidation_mode=mode)


def policy_for(stage: str, build: Path) -> None:
    """Point the stage at its own IAM policy file when the repo has one."""
    config_path = build / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    if (build / ".chalice" / f"policy-{stage}.json").exists():
        config["stages"][stage]["iam_policy_file"] = f"policy-{stage}.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def chalice_command(python: str, stage: str, package_dir: str | None) -> list[str]:
    cli = [python, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]
    if package_dir:
        return [*cli, "package", "--stage", stage, "--merge-template", "gateway-responses.json", package_dir]
    return [*cli, "deploy", "--stage", stage]


# API Gateway's stage throttling (all keys together; per key: chalicelib.api.ratelimit), per stage.
STAGE_THROTTLE = {"dev": (50, 100), "sandbox": (100, 200), "prod": (1000, 2000)}   # (rate/s, burst)


def gateway_merge_template() -> dict:
    """For `chalice package --merge-template`: our gateway responses on chalice's RestAPI."""
    from chalicelib.api import gateway

    resources = {}
    for response_type in gateway.GATEWAY_RESPONSES:
        spec = gateway.gateway_response(response_type)
        lid = "GatewayResponse" + "".join(w.title() for w in response_type.split("_"))
        resources[lid] = {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": {
            "RestApiId": {"Ref": "RestAPI"}, "ResponseType": spec["responseType"],
            "StatusCode": spec["statusCode"], "ResponseParameters": spec["responseParameters"],
            "ResponseTemplates": spec["responseTemplates"]}}
    return {"Resources": resources}


def wire_api(stage: str, rest_api_id: str) -> list[str]:
    """After chalice deploy: our gateway responses on the REST API and a deployment so they take effect,
    then the stage's throttling. Running it again changes nothing."""
    import boto3

    from chalicelib.api import gateway

    api = boto3.client("apigateway")
    done = []
    for response_type in gateway.GATEWAY_RESPONSES:
        api.put_gateway_response(restApiId=rest_api_id, **gateway.gateway_response(response_type))
        done.append(response_type)
    # The deployment first: gateway responses take effect with a deployment, stage settings at once (and an
    # emulator that rebuilds the stage on create_deployment would otherwise drop the throttling).
    api.create_deployment(restApiId=rest_api_id, stageName=stage, description="kauri gateway responses")
    rate, burst = STAGE_THROTTLE[stage]
    api.update_stage(restApiId=rest_api_id, stageName=stage, patchOperations=[
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(rate)},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(burst)}])
    return done


def rest_api_id_of(build: Path, stage: str) -> str | None:
    deployed = build / ".chalice" / "deployed" / f"{stage}.json"
    if not deployed.exists():
        return None
    for resource in json.loads(deployed.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api":
            return resource.get("rest_api_id")
    return None


def check_python(python: str) -> None:
    done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True)
    if done.returncode != 0 or done.stdout.strip() != LAMBDA_PYTHON:
        raise SystemExit(f"{python} is not Python {LAMBDA_PYTHON}: chalice takes the Lambda runtime from the "
                         f"interpreter it runs under (set DEPLOY_PY to a {LAMBDA_PYTHON} that has chalice)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--python", default=os.environ.get("DEPLOY_PY", "python3.13"),
                        help="a Python 3.13 with chalice installed (the Lambda runtime follows it)")
    parser.add_argument("--build-dir", default=str(PROJECT_DIR / ".build"))
    parser.add_argument("--state-dir", default=str(PROJECT_DIR / ".chalice" / "deployed"),
                        help="where chalice's record of what it made (<stage>.json) is kept between deploys")
    parser.add_argument("--package-only", metavar="OUT_DIR", help="`chalice package` into OUT_DIR, deploy nothing")
    parser.add_argument("--leave-out", action="append", default=[], metavar="TYPE_PREFIX",
                        help="leave resources of this type (e.g. AWS::Cognito::) and what refers to them out of "
                             "the stack: only for an emulator that cannot create them, never for AWS")
    parser.add_argument("--alarm-email", default=None,
                        help="mailbox the alarms topic mails (stack parameter AlarmEmail; '' = none; "
                             "not given: kept as the stack has it)")
    parser.add_argument("--mail-identity", default=None,
                        help="the SES identity (verified domain or address) staff invitations are sent from "
                             "(stack parameter MailIdentity; '' = mail off; not given: kept as the stack has it)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if os.sep in args.python:   # a path (make's default is relative): chalice runs in the build directory
        args.python = os.path.abspath(args.python)   # not resolved: a venv's python is a symlink out of it
    build = Path(args.build_dir) / args.stage
    state = Path(args.state_dir)

    def run(cmd: list[str], cwd: Path | None = None) -> None:
        print("+", shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, cwd=str(cwd) if cwd else None, check=True)

    if not args.dry_run:
        check_python(args.python)
    staff: dict[str, str] | None = None
    outputs: dict[str, str] = {}
    if args.package_only:
        print("+ (package only: no stack read, so the staff directory is not wired into the package)", flush=True)
    else:
        left_out = f", leaving out {' '.join(args.leave_out)}" if args.leave_out else ""
        print(f"+ (stateful stack {stack_name(args.stage)}: a CloudFormation change set of infra/template.yaml, "
              f"Stage={args.stage}{left_out})", flush=True)
        if not args.dry_run:
            given = {"AlarmEmail": args.alarm_email, "MailIdentity": args.mail_identity}
            print(f"  stack {deploy_stack(args.stage, tuple(args.leave_out), settings=given)}", flush=True)
        print(f"+ (staff directory: the stack's {', '.join(STAFF_OUTPUTS)} into the build's stage policy and "
              f"environment)", flush=True)
        outputs = {} if args.dry_run else stack_outputs(args.stage)
        staff = None if args.dry_run else staff_outputs(outputs, args.stage, tuple(args.leave_out))
    print(f"+ (build {build})", flush=True)
    if not args.dry_run:
        layout(build)
        policy_for(args.stage, build)
        if staff:
            wire_staff_directory(args.stage, build, staff)
        print("  mail: " + ("sent from " + outputs["MailIdentity"] if wire_mail(args.stage, build, outputs)
                            else "off (no MailIdentity on the stack: invitation links are shown instead)"),
              flush=True)
        (build / "gateway-responses.json").write_text(json.dumps(gateway_merge_template(), indent=2) + "\n")
        if not args.package_only and (state / f"{args.stage}.json").exists():
            # what the last deploy made, so chalice updates it in place instead of making it again
            (build / ".chalice" / "deployed").mkdir()
            shutil.copy2(state / f"{args.stage}.json", build / ".chalice" / "deployed" / f"{args.stage}.json")
    run(vendor_command(args.python, build))
    if not args.dry_run:
        compile_bytecode(build, args.python)
    run(chalice_command(args.python, args.stage, args.package_only), cwd=build)
    if not args.package_only:
        print("+ (gateway responses and stage throttling on the REST API)", flush=True)
        if not args.dry_run:
            state.mkdir(parents=True, exist_ok=True)
            shutil.copy2(build / ".chalice" / "deployed" / f"{args.stage}.json", state / f"{args.stage}.json")
            rest_api_id = rest_api_id_of(build, args.stage)
            if not rest_api_id:
                raise SystemExit(f"chalice deploy recorded no REST API in {state / (args.stage + '.json')}")
            wire_api(args.stage, rest_api_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
