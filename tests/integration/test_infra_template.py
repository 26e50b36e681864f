"""The committed CloudFormation template and IAM policy are exactly what the pynamodb models imply."""
from __future__ import annotations

import json

import pytest

from chalicelib.store import tables
from infra import gen_template


@pytest.fixture(scope="module")
def specs():
    return gen_template.table_specs()


def test_committed_template_matches_the_models():
    template, _ = gen_template.render()
    assert gen_template.TEMPLATE_PATH.read_text() == template, (
        "infra/template.yaml is stale: run `python -m infra.gen_template` and commit the result")


def test_committed_policy_matches_the_models():
    _, policy = gen_template.render()
    assert gen_template.POLICY_PATH.read_text() == policy, (
        ".chalice/policy.json is stale: run `python -m infra.gen_template` and commit the result")


def test_every_model_has_a_table_with_its_keys_indexes_and_ttl(specs):
    resources = gen_template.build_template(specs)["Resources"]
    for model in tables.models():
        spec = next(s for s in specs if s["model"] == model.__name__)
        table = resources[gen_template.logical_id(spec["name"], "Table")]["Properties"]
        assert table["TableName"] == {"Fn::Sub": f"kauri-${{Stage}}-{spec['name']}"}
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["SSESpecification"] == {"SSEEnabled": True}

        hash_key = model._hash_key_attribute().attr_name
        assert table["KeySchema"][0] == {"AttributeName": hash_key, "KeyType": "HASH"}
        range_key = model._range_key_attribute()
        if range_key is not None:
            assert table["KeySchema"][1] == {"AttributeName": range_key.attr_name, "KeyType": "RANGE"}

        index_names = {i.Meta.index_name for i in model._indexes.values()}
        assert {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])} | \
            {i["IndexName"] for i in table.get("LocalSecondaryIndexes", [])} == index_names
        defined = {a["AttributeName"] for a in table["AttributeDefinitions"]}
        for index in table.get("GlobalSecondaryIndexes", []):
            assert {k["AttributeName"] for k in index["KeySchema"]} <= defined

        ttl = model._ttl_attribute()
        if ttl is None:
            assert "TimeToLiveSpecification" not in table
        else:
            assert table["TimeToLiveSpecification"] == {"AttributeName": ttl.attr_name, "Enabled": True}


def test_files_bucket_is_private_versioned_and_encrypted(specs):
    bucket = gen_template.build_template(specs)["Resources"]["FilesBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]


def test_policy_grants_exactly_our_tables_and_bucket(specs):
    policy = json.loads(gen_template.POLICY_PATH.read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["Tables"]["Resource"] == [f"arn:aws:dynamodb:*:*:table/kauri-*-{s['name']}" for s in specs]
    assert not any(a in ("dynamodb:*", "dynamodb:Scan", "dynamodb:DeleteTable") for a in by_sid["Tables"]["Action"])
    scanned = [f"arn:aws:dynamodb:*:*:table/kauri-*-{s['name']}" for s in specs if s["scanned"]]
    assert by_sid.get("ScannedTables", {}).get("Resource", []) == scanned
    for statement in policy["Statement"]:
        assert "*" not in statement["Resource"]
        assert all(not a.endswith(":*") for a in statement["Action"])


def test_template_is_valid_yaml_that_reads_back_as_the_generated_document(specs):
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(gen_template.TEMPLATE_PATH.read_text())
    assert parsed == json.loads(json.dumps(gen_template.build_template(specs)))
