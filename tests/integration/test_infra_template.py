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


def test_committed_policies_match_the_models():
    _, policies = gen_template.render()
    assert set(policies) == {"dev", "sandbox", "prod"}
    for stage, policy in policies.items():
        assert gen_template.policy_path(stage).read_text() == policy, (
            f".chalice/policy-{stage}.json is stale: run `python -m infra.gen_template` and commit the result")


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


def _policy(stage: str) -> dict[str, dict]:
    policy = json.loads(gen_template.policy_path(stage).read_text())
    return {s["Sid"]: s for s in policy["Statement"]}


def _table_arn(stage: str, name: str) -> str:
    return f"arn:aws:dynamodb:*:*:table/kauri-{stage}-{name}"


@pytest.mark.parametrize("stage", ["dev", "sandbox", "prod"])
def test_each_stage_policy_names_only_its_own_tables_bucket_and_logs(specs, stage):
    by_sid = _policy(stage)
    expected = [s for s in specs if not (stage == "prod" and s["model"] == "SandboxRecord")]
    assert by_sid["Tables"]["Resource"] == [_table_arn(stage, s["name"]) for s in expected]
    assert not any(a in ("dynamodb:*", "dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:DeleteItem",
                         "dynamodb:BatchWriteItem") for a in by_sid["Tables"]["Action"])
    assert by_sid.get("ScannedTables", {}).get("Resource", []) == [_table_arn(stage, s["name"]) for s in expected
                                                                  if s["scanned"]]
    assert by_sid["FilesBucket"]["Resource"] == [f"arn:aws:s3:::kauri-{stage}-files"]
    others = [o for o in ("dev", "sandbox", "prod", "test") if o != stage]
    for statement in by_sid.values():
        assert "*" not in statement["Resource"]
        assert all(not a.endswith(":*") for a in statement["Action"])
        for resource in statement["Resource"]:
            api_handler_logs = resource.removesuffix(":*").endswith(f"log-group:/aws/lambda/kauri-{stage}")
            assert f"kauri-{stage}-" in resource or api_handler_logs, resource
            assert "kauri-*" not in resource, resource
            assert not any(f"kauri-{o}-" in resource for o in others), resource


@pytest.mark.parametrize("stage", ["dev", "sandbox", "prod"])
def test_every_function_may_write_its_own_log_group_the_api_handler_too(stage):
    """chalice names a function kauri-<stage>-<name>, but the API handler kauri-<stage> alone."""
    import fnmatch

    import app

    logs = _policy(stage)["Logs"]["Resource"]
    names = [f"kauri-{stage}"] + [f"kauri-{stage}-{f.name}" for f in app.app.pure_lambda_functions] + \
        [f"kauri-{stage}-{e.name}" for e in app.app.event_sources]
    for name in names:
        group = f"arn:aws:logs:ap-southeast-2:123456789012:log-group:/aws/lambda/{name}"
        assert any(fnmatch.fnmatchcase(group, pattern) for pattern in logs), name
        assert any(fnmatch.fnmatchcase(group + ":log-stream:2026/11/28/x", pattern) for pattern in logs), name


@pytest.mark.parametrize("stage", ["dev", "sandbox", "prod"])
def test_only_tables_the_code_deletes_from_may_be_deleted_from(specs, stage):
    by_sid = _policy(stage)
    deletes = [s for s in by_sid.values() if {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"} & set(s["Action"])]
    assert [s["Sid"] for s in deletes] == ["DeletedTables"]
    granted = set(deletes[0]["Resource"])
    assert granted == {_table_arn(stage, s["name"]) for s in specs if s["deleted"]}
    assert {_table_arn(stage, n) for n in ("idempotency", "alert_bindings")} <= granted  # today's deleters
    money = ("ledger_postings", "ledger_entries", "balances", "payments", "withdrawals", "withdrawal_batches",
             "withdrawal_periods", "refunds", "api_keys", "merchants")
    assert not any(r.endswith(f"kauri-{stage}-{m}") for r in granted for m in money)
    assert set(money) <= gen_template.NEVER_DELETED


def test_prod_policy_has_no_sandbox_table():
    assert not any("sandbox" in r.split("table/")[-1] for s in _policy("prod").values() for r in s["Resource"]
                   if ":table/" in r)


def test_every_stage_deploys_with_its_own_policy_file():
    config = json.loads(gen_template.CONFIG_PATH.read_text())
    assert "iam_policy_file" not in config
    assert {st: c["iam_policy_file"] for st, c in config["stages"].items()} == {
        st: f"policy-{st}.json" for st in ("dev", "sandbox", "prod")}
    assert config["autogen_policy"] is False
    from chalice.config import Config

    for stage in ("dev", "sandbox", "prod"):  # as chalice itself resolves it, for the API and every lambda
        for function in ("api_handler", "retry_webhooks", "withdrawal_batch_paid"):
            resolved = Config(chalice_stage=stage, function_name=function, config_from_disk=config)
            assert resolved.iam_policy_file == f"policy-{stage}.json" and resolved.autogen_policy is False


def test_a_delete_that_does_not_name_its_model_stops_the_generator(tmp_path, monkeypatch):
    (tmp_path / "chalicelib").mkdir()
    (tmp_path / "app.py").write_text("")
    (tmp_path / "chalicelib" / "x.py").write_text("def gone(rec):\n    rec.delete()\n")
    monkeypatch.setattr(gen_template, "PROJECT_DIR", tmp_path)
    with pytest.raises(ValueError, match="x.py:2"):
        gen_template.deleting_models(["PaymentModel"])
    (tmp_path / "chalicelib" / "x.py").write_text("PaymentModel('p').delete()  # named\n")
    assert gen_template.deleting_models(["PaymentModel", "LedgerModel"]) == {"PaymentModel"}


def test_the_generator_refuses_to_let_code_delete_money_records(monkeypatch):
    monkeypatch.setattr(gen_template, "deleting_models", lambda names: {"PaymentModel", "IdempotencyModel"})
    with pytest.raises(ValueError, match="payments"):
        gen_template.table_specs()


def test_template_is_valid_yaml_that_reads_back_as_the_generated_document(specs):
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(gen_template.TEMPLATE_PATH.read_text())
    assert parsed == json.loads(json.dumps(gen_template.build_template(specs)))
