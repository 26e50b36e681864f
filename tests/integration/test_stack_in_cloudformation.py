"""The stateful stack, created from infra/template.yaml by (moto's) CloudFormation, is what the code
needs: every pynamodb model's table with its keys, indexes and TTL; the bucket encrypted and private.
And cfn-lint passes on the template (what `make test` runs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import moto
import pytest

from chalicelib.store import tables
from infra import deploy, gen_template

REGION = "ap-southeast-2"


@pytest.fixture(scope="module")
def stack():
    with moto.mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(StackName="kauri-sandbox-data", TemplateBody=deploy.template_body(UNEMULATED_TYPES),
                         Parameters=[{"ParameterKey": "Stage", "ParameterValue": "sandbox"}])
        status = cfn.describe_stacks(StackName="kauri-sandbox-data")["Stacks"][0]["StackStatus"]
        assert status == "CREATE_COMPLETE"
        import yaml

        yield {"ddb": boto3.client("dynamodb", region_name=REGION), "s3": boto3.client("s3", region_name=REGION),
               "resources": cfn.describe_stack_resources(StackName="kauri-sandbox-data")["StackResources"],
               "template": _as_dict(cfn.get_template(StackName="kauri-sandbox-data")["TemplateBody"])}


# moto's CloudFormation cannot create the staff directory's Cognito pool (nor what refers to it): the stack
# is made as `make deploy --leave-out AWS::Cognito::` sends it; cfn-lint checks those resources instead, and
# the pool itself is checked by the portal tests against moto's cognito-idp.
UNEMULATED_TYPES = ("AWS::Cognito::",)


def _as_dict(body) -> dict:
    import yaml

    return dict(body) if isinstance(body, dict) else yaml.safe_load(body)  # boto3 parses a JSON body itself


def _table_name(model) -> str:
    # The models are named with the test prefix; the stack names them kauri-<stage>-<name>.
    return "kauri-sandbox-" + model.Meta.table_name.removeprefix("kauri-test-")


def test_every_model_gets_its_table_keys_indexes_and_ttl_from_the_stack(stack):
    ddb = stack["ddb"]
    made = {r["PhysicalResourceId"] for r in stack["resources"] if r.get("ResourceType") == "AWS::DynamoDB::Table"}
    assert made == {_table_name(m) for m in tables.models()}
    for model in tables.models():
        name = _table_name(model)
        table = ddb.describe_table(TableName=name)["Table"]
        keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
        assert keys["HASH"] == model._hash_key_attribute().attr_name, name
        range_key = model._range_key_attribute()
        assert keys.get("RANGE") == (range_key.attr_name if range_key is not None else None), name
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}

        schema = model._get_schema()  # what pynamodb itself would create
        assert {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}.items() <= \
            types.items(), name
        wanted = {}
        for index in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]:
            wanted[index["index_name"]] = ({k["KeyType"]: k["AttributeName"] for k in index["key_schema"]},
                                           index["projection"]["ProjectionType"])
        assert set(wanted) == {i.Meta.index_name for i in model._indexes.values()}, name
        found = {}
        for index in table.get("GlobalSecondaryIndexes", []) + table.get("LocalSecondaryIndexes", []):
            found[index["IndexName"]] = ({k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]},
                                         index["Projection"]["ProjectionType"])
        assert found == wanted, name

        # moto's CloudFormation does not apply TimeToLiveSpecification (it leaves TTL disabled), so the
        # TTL is checked on the stack's own copy of the table resource, which real CloudFormation applies.
        [logical] = [r["LogicalResourceId"] for r in stack["resources"] if r.get("PhysicalResourceId") == name]
        ttl = stack["template"]["Resources"][logical]["Properties"].get("TimeToLiveSpecification")
        attr = model._ttl_attribute()
        assert ttl == (None if attr is None else {"AttributeName": attr.attr_name, "Enabled": True}), name


def test_the_files_bucket_is_encrypted_and_blocks_public_access(stack):
    s3 = stack["s3"]
    [bucket] = [r["PhysicalResourceId"] for r in stack["resources"] if r.get("ResourceType") == "AWS::S3::Bucket"]
    assert bucket == "kauri-sandbox-files"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    # moto's CloudFormation applies a bucket's encryption and tags only: the public-access block and
    # versioning are checked on the stack's own copy of the bucket resource.
    [logical] = [r["LogicalResourceId"] for r in stack["resources"] if r.get("PhysicalResourceId") == bucket]
    props = stack["template"]["Resources"][logical]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_cfn_lint_passes_on_the_template():
    done = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(gen_template.TEMPLATE_PATH)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
