"""Generate infra/template.yaml and .chalice/policy-<stage>.json from the pynamodb models, so none can drift.

    python -m infra.gen_template           write both files
    python -m infra.gen_template --check   exit 1 if the committed files differ from the models

The template holds the stateful resources only (tables, bucket); chalice packages the functions.
Each stage's IAM policy is least privilege over exactly that stage's tables, their indexes, its bucket
and its logs, by literal name (.chalice/config.json names each stage's file).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = PROJECT_DIR / "infra" / "template.yaml"
CONFIG_PATH = PROJECT_DIR / ".chalice" / "config.json"
STAGES = ["dev", "sandbox", "prod"]
SANDBOX_MODELS = {"SandboxRecord"}  # the channel simulators' own table: prod never mounts them
APP = "kauri"
BUCKET_SUFFIX = "files"  # settings default: KAURI_BUCKET = kauri-<stage>-files

# What the code does to a table: item reads and writes, queries; transactions need the same item
# actions. pynamodb 6 builds table metadata from the model, so no DescribeTable. No Scan, no admin.
# Deleting (DeleteItem, and BatchWriteItem, which can delete) only where the code deletes.
DYNAMODB_ITEM_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]
DYNAMODB_DELETE_ACTIONS = ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem"]
# Money records are corrected by reversing entries, never deleted: the generator refuses to grant it.
NEVER_DELETED = {"ledger_postings", "ledger_entries", "balances", "payments", "refunds", "withdrawals",
                 "withdrawal_periods", "withdrawal_batches", "api_keys", "merchants"}


def policy_path(stage: str) -> Path:
    return PROJECT_DIR / ".chalice" / f"policy-{stage}.json"


# ---- reading the models --------------------------------------------------------------------------

def table_specs() -> list[dict[str, Any]]:
    """One plain dict per pynamodb model: short name, keys, attribute types, indexes, TTL."""
    from chalicelib import settings
    from chalicelib.store import tables

    prefix = settings.get().table_prefix
    scanned = scanned_models()
    deleting = deleting_models([m.__name__ for m in tables.models()])
    specs = []
    for model in tables.models():
        full = model.Meta.table_name
        if not full.startswith(prefix):
            raise ValueError(f"{model.__name__}: table {full!r} does not start with the stage prefix {prefix!r}")
        schema = model._get_schema()
        ttl = model._ttl_attribute()
        specs.append({
            "model": model.__name__,
            "name": full[len(prefix):],
            "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in schema["attribute_definitions"]),
            "key_schema": [(k["AttributeName"], k["KeyType"]) for k in _hash_first(schema["key_schema"])],
            "gsis": sorted((_index_spec(i) for i in schema["global_secondary_indexes"]), key=lambda i: i["name"]),
            "lsis": sorted((_index_spec(i) for i in schema["local_secondary_indexes"]), key=lambda i: i["name"]),
            "ttl": ttl.attr_name if ttl is not None else None,
            "scanned": model.__name__ in scanned,
            "deleted": model.__name__ in deleting,
        })
    names = [s["name"] for s in specs]
    money = sorted(s["name"] for s in specs if s["deleted"] and s["name"] in NEVER_DELETED)
    if money:
        raise ValueError(f"code deletes from {money}: money records are reversed, never deleted")
    if len(set(names)) != len(names):
        raise ValueError(f"two models share a table name: {names}")
    return specs


def scanned_models() -> set[str]:
    """Models the shipped code scans (`<Model>.scan(` in chalicelib/ or app.py): only they get dynamodb:Scan."""
    sources = [PROJECT_DIR / "app.py", *sorted((PROJECT_DIR / "chalicelib").rglob("*.py"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources if p.exists())
    return set(re.findall(r"\b(\w+)\.scan\(", text))


_DELETE_CALL = re.compile(r"\.delete\(|\bbatch_write\(")


def deleting_models(model_names: list[str]) -> set[str]:
    """Models the shipped code deletes from (`.delete(`, `tx.delete(`, `batch_write(` lines in chalicelib/
    or app.py): only they get DeleteItem/BatchWriteItem. Each such line must name its model."""
    named = re.compile(r"\b(" + "|".join(map(re.escape, model_names)) + r")\b")
    found: set[str] = set()
    for path in [PROJECT_DIR / "app.py", *sorted((PROJECT_DIR / "chalicelib").rglob("*.py"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if not _DELETE_CALL.search(code):
                continue
            models = set(named.findall(code))
            if not models:
                raise ValueError(f"{path.relative_to(PROJECT_DIR)}:{n} deletes without naming its model on the "
                                 "line, so the IAM policy cannot tell which table needs DeleteItem")
            found |= models
    return found


def _hash_first(keys: list[dict]) -> list[dict]:
    return sorted(keys, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)


def _index_spec(index: dict) -> dict[str, Any]:
    projection = index["projection"]
    return {
        "name": index["index_name"],
        "key_schema": [(k["AttributeName"], k["KeyType"]) for k in _hash_first(index["key_schema"])],
        "projection": projection["ProjectionType"],
        "non_key_attributes": list(projection.get("NonKeyAttributes") or []),
    }


def logical_id(name: str, suffix: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) + suffix


def _sub(text: str) -> dict:
    return {"Fn::Sub": text}


def _keys(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"AttributeName": n, "KeyType": t} for n, t in pairs]


def _projection(index: dict) -> dict:
    out: dict[str, Any] = {"ProjectionType": index["projection"]}
    if index["non_key_attributes"]:
        out["NonKeyAttributes"] = index["non_key_attributes"]
    return out


# ---- the CloudFormation template -----------------------------------------------------------------

def _tags() -> list[dict]:
    return [{"Key": "app", "Value": APP}, {"Key": "stage", "Value": {"Ref": "Stage"}}]


def table_resource(spec: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "TableName": _sub(f"{APP}-${{Stage}}-{spec['name']}"),
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in spec["attributes"]],
        "KeySchema": _keys(spec["key_schema"]),
    }
    if spec["gsis"]:
        props["GlobalSecondaryIndexes"] = [
            {"IndexName": i["name"], "KeySchema": _keys(i["key_schema"]), "Projection": _projection(i)}
            for i in spec["gsis"]
        ]
    if spec["lsis"]:
        props["LocalSecondaryIndexes"] = [
            {"IndexName": i["name"], "KeySchema": _keys(i["key_schema"]), "Projection": _projection(i)}
            for i in spec["lsis"]
        ]
    if spec["ttl"]:
        props["TimeToLiveSpecification"] = {"AttributeName": spec["ttl"], "Enabled": True}
    props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    props["SSESpecification"] = {"SSEEnabled": True}
    props["DeletionProtectionEnabled"] = {"Fn::If": ["IsProd", True, False]}
    props["Tags"] = _tags()
    return {
        "Type": "AWS::DynamoDB::Table",
        # Money records: deleting the stack (or a replacing change) must never drop a table.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": props,
    }


def bucket_resources() -> dict[str, Any]:
    bucket_name = _sub(f"{APP}-${{Stage}}-{BUCKET_SUFFIX}")
    return {
        "FilesBucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": bucket_name,
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True},
                ]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                # A statement landing under statements/ is queued for the statement_landed function.
                "NotificationConfiguration": {"QueueConfigurations": [{
                    "Event": "s3:ObjectCreated:*",
                    "Queue": {"Fn::GetAtt": ["StatementsQueue", "Arn"]},
                    "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "statements/"}]}},
                }]},
                "LifecycleConfiguration": {"Rules": [{
                    "Id": "abort-incomplete-uploads",
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }]},
                "Tags": _tags(),
            },
        },
        "StatementsDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": _sub(f"{APP}-${{Stage}}-statements-dead"), "MessageRetentionPeriod": 1209600,
                           "SqsManagedSseEnabled": True, "Tags": _tags()},
        },
        "StatementsQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": _sub(f"{APP}-${{Stage}}-statements"),
                # Longer than the function's 900 s timeout: a file being read is never handed out twice.
                "VisibilityTimeout": 960,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["StatementsDeadLetterQueue", "Arn"]},
                                  "maxReceiveCount": 5},
                "Tags": _tags(),
            },
        },
        "StatementsQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "StatementsQueue"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "FilesBucketNotifies",
                        "Effect": "Allow",
                        "Principal": {"Service": "s3.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": ["StatementsQueue", "Arn"]},
                        "Condition": {"ArnLike": {"aws:SourceArn": _sub(f"arn:aws:s3:::{APP}-${{Stage}}-{BUCKET_SUFFIX}")}},
                    }],
                },
            },
        },
        "FilesBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "FilesBucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "DenyPlainHttp",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [
                            {"Fn::GetAtt": ["FilesBucket", "Arn"]},
                            _sub("${FilesBucket.Arn}/*"),
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }],
                },
            },
        },
    }


def key_resources() -> dict[str, Any]:
    """The KMS key that seals webhook signing secrets (chalicelib.secrets.seal), rotated yearly by KMS."""
    return {
        "WebhookSecretsKey": {
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": _sub(f"{APP}-${{Stage}} webhook signing secrets (envelope data keys)"),
                "EnableKeyRotation": True,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "AccountAdministers",
                        "Effect": "Allow",
                        "Principal": {"AWS": _sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                        "Action": "kms:*",
                        "Resource": "*",
                    }, {
                        # Only this stage's functions (chalice names their roles kauri-<stage>-...) seal
                        # and open webhook secrets; the static IAM files cannot name a key ARN made here.
                        "Sid": "StageFunctionsSealAndOpen",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                        "Resource": "*",
                        "Condition": {
                            "StringEquals": {"aws:PrincipalAccount": {"Ref": "AWS::AccountId"}},
                            "ArnLike": {"aws:PrincipalArn": _sub(
                                f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{APP}-${{Stage}}-*")},
                        },
                    }],
                },
            },
        },
        "WebhookSecretsKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {
                "AliasName": _sub(f"alias/{APP}-${{Stage}}-webhooks"),
                "TargetKeyId": {"Ref": "WebhookSecretsKey"},
            },
        },
    }


# The Cognito calls the deployed portal makes on its stage's pool (chalicelib/services/staff.py; with
# KAURI_STAFF_POOL_ID / KAURI_STAFF_CLIENT_ID set it never lists pools or clients). The functions get them
# on the pool's ARN alone: infra/deploy.py adds the statement to the stage's policy in the build directory
# once the stack has made the pool (its ARN carries a generated id, so it cannot be in the repo's policy).
STAFF_DIRECTORY_ACTIONS = [
    "cognito-idp:AdminCreateUser",
    "cognito-idp:AdminDeleteUser",
    "cognito-idp:AdminGetUser",
    "cognito-idp:AdminInitiateAuth",
    "cognito-idp:AdminSetUserPassword",
    "cognito-idp:AdminUserGlobalSignOut",
]


def staff_directory_resources() -> dict[str, Any]:
    """The Cognito user pool merchant staff sign in with (services.staff finds it by name) and the portal's
    server-side app client (no secret; ADMIN_USER_PASSWORD_AUTH only, from the portal Lambda)."""
    return {
        "StaffUserPool": {
            "Type": "AWS::Cognito::UserPool",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "UserPoolName": _sub(f"{APP}-${{Stage}}-staff"),
                "UsernameAttributes": ["email"],
                "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
                "Policies": {"PasswordPolicy": {"MinimumLength": 10, "RequireLowercase": True,
                                                "RequireNumbers": True, "RequireUppercase": False,
                                                "RequireSymbols": False}},
                "Schema": [{"Name": "merchant_id", "AttributeDataType": "String", "Mutable": False},
                           {"Name": "role", "AttributeDataType": "String", "Mutable": True}],
                "UserPoolTags": {"app": APP, "stage": {"Ref": "Stage"}},
            },
        },
        "StaffPortalClient": {
            "Type": "AWS::Cognito::UserPoolClient",
            "Properties": {
                "UserPoolId": {"Ref": "StaffUserPool"},
                "ClientName": "kauri-portal",
                "GenerateSecret": False,
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            },
        },
    }


MAIL_ACTIONS = ("ses:SendEmail",)   # services.mail sends one message per call; nothing else of SES


def mail_outputs() -> dict[str, Any]:
    """Kauri's own mail (services.mail: staff invitations) is sent from the stage's one verified SES identity,
    only when the stack is given it (mail is off without it: KAURI_MAIL_FROM empty). No managed policy: chalice
    cannot attach one to the roles it makes, so `make deploy` puts MAIL_ACTIONS on exactly this identity's
    ARN into the stage policy and sets KAURI_MAIL_FROM (infra/deploy.wire_mail)."""
    arn = _sub("arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${MailIdentity}")
    return {"MailIdentity": {"Condition": "HasMailIdentity", "Value": {"Ref": "MailIdentity"}},
            "MailIdentityArn": {"Condition": "HasMailIdentity", "Value": arn}}


# Alarms: (logical id, what it means, namespace, metric, statistic, threshold, periods, dimensions).
# Kauri's own metrics come from chalicelib/metrics.py (EMF), dimension [Stage].
ALARMS = [
    ("Api5xxRateAlarm", "More than 1% of API requests answered 5xx for 10 minutes",
     "AWS/ApiGateway", "5XXError", "Average", 0.01, 2, {"ApiName": APP, "Stage": {"Ref": "Stage"}}),
    ("JobFailuresAlarm", "A scheduled job run failed (see its job_summary log line)",
     "Kauri", "JobFailures", "Sum", 1, 1, {"Stage": {"Ref": "Stage"}}),
    ("WebhookBacklogAgeAlarm", "The oldest webhook event due for delivery has waited over an hour",
     "Kauri", "WebhookBacklogAgeSeconds", "Maximum", 3600, 2, {"Stage": {"Ref": "Stage"}}),
    ("DeadLettersAlarm", "Something was given up on for good (a webhook event after its last retry)",
     "Kauri", "DeadLetters", "Sum", 1, 1, {"Stage": {"Ref": "Stage"}}),
    ("NewDiscrepanciesAlarm", "A new ops record / discrepancy needs a person",
     "Kauri", "Discrepancies", "Sum", 1, 1, {"Stage": {"Ref": "Stage"}}),
    ("StatementDeadLettersAlarm", "A statement file notification failed 5 times and sits in the dead-letter queue",
     "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", 0, 1,
     {"QueueName": {"Fn::GetAtt": ["StatementsDeadLetterQueue", "QueueName"]}}),
]


def alarm_resources() -> dict[str, Any]:
    resources: dict[str, Any] = {
        "AlarmTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": _sub(f"{APP}-${{Stage}}-alarms"), "Tags": _tags()},
        },
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                           "Endpoint": {"Ref": "AlarmEmail"}},
        },
    }
    for lid, description, namespace, metric, statistic, threshold, periods, dims in ALARMS:
        resources[lid] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": _sub(f"{APP}-${{Stage}}-{lid.removesuffix('Alarm')}"),
                "AlarmDescription": description,
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Statistic": statistic,
                "Period": 300,
                "EvaluationPeriods": periods,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold" if statistic == "Sum"
                else "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlarmTopic"}],
                "OKActions": [{"Ref": "AlarmTopic"}],
            },
        }
    return resources


def build_template(specs: list[dict[str, Any]]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for spec in specs:
        lid = logical_id(spec["name"], "Table")
        resources[lid] = table_resource(spec)
        outputs[lid + "Name"] = {"Value": {"Ref": lid}}
    resources.update(bucket_resources())
    outputs["FilesBucketName"] = {"Value": {"Ref": "FilesBucket"}}
    resources.update(key_resources())
    resources.update(alarm_resources())
    outputs["AlarmTopicArn"] = {"Value": {"Ref": "AlarmTopic"}}
    outputs["WebhookSecretsKeyArn"] = {"Value": {"Fn::GetAtt": ["WebhookSecretsKey", "Arn"]}}
    outputs["StatementsQueueArn"] = {"Value": {"Fn::GetAtt": ["StatementsQueue", "Arn"]}}
    resources.update(staff_directory_resources())
    outputs["StaffUserPoolId"] = {"Value": {"Ref": "StaffUserPool"}}         # -> KAURI_STAFF_POOL_ID
    outputs["StaffUserPoolArn"] = {"Value": {"Fn::GetAtt": ["StaffUserPool", "Arn"]}}  # -> the stage policy
    outputs["StaffPortalClientId"] = {"Value": {"Ref": "StaffPortalClient"}}  # -> KAURI_STAFF_CLIENT_ID
    outputs.update(mail_outputs())                                            # -> wire_mail
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Kauri stateful resources: DynamoDB tables, the files bucket and its statements queue, "
                       "the webhook-secrets key, alarms. "
                       "Generated by infra/gen_template.py from chalicelib/store; do not edit by hand.",
        "Parameters": {
            "Stage": {"Type": "String", "AllowedValues": STAGES, "Default": "dev",
                      "Description": "Chalice stage; names every resource kauri-<stage>-..."},
            "AlarmEmail": {"Type": "String", "Default": "",
                           "Description": "Where alarms are mailed (empty: subscribe to the topic yourself)"},
            "MailIdentity": {"Type": "String", "Default": "",
                             "Description": "The SES identity (domain) KAURI_MAIL_FROM sends from, verified in "
                                            "SES (empty: mail is off, the portal shows invitation links)"},
        },
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
                       "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
                       "HasMailIdentity": {"Fn::Not": [{"Fn::Equals": [{"Ref": "MailIdentity"}, ""]}]}},
        "Resources": resources,
        "Outputs": outputs,
    }


# ---- the IAM policy chalice attaches to a stage's functions (.chalice/policy-<stage>.json) ---------

def build_policy(specs: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """The stage's own policy: its literal table, bucket and log group names, nothing of another stage."""
    specs = [s for s in specs if not (stage == "prod" and s["model"] in SANDBOX_MODELS)]
    arn = {s["name"]: f"arn:aws:dynamodb:*:*:table/{APP}-{stage}-{s['name']}" for s in specs}
    indexes = [f"{arn[s['name']]}/index/*" for s in specs if s["gsis"] or s["lsis"]]
    bucket = f"arn:aws:s3:::{APP}-{stage}-{BUCKET_SUFFIX}"
    deleted = [arn[s["name"]] for s in specs if s["deleted"]]
    scanned = [arn[s["name"]] for s in specs if s["scanned"]]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                # <app>-<stage>-<function>, and the API handler, which chalice names <app>-<stage> alone
                "Resource": [f"arn:aws:logs:*:*:log-group:/aws/lambda/{APP}-{stage}-*",
                             f"arn:aws:logs:*:*:log-group:/aws/lambda/{APP}-{stage}-*:*",
                             f"arn:aws:logs:*:*:log-group:/aws/lambda/{APP}-{stage}",
                             f"arn:aws:logs:*:*:log-group:/aws/lambda/{APP}-{stage}:*"],
            },
            {
                "Sid": "Tables",
                "Effect": "Allow",
                "Action": DYNAMODB_ITEM_ACTIONS,
                "Resource": list(arn.values()),
            },
            *([{
                "Sid": "DeletedTables",
                "Effect": "Allow",
                "Action": DYNAMODB_DELETE_ACTIONS,
                "Resource": deleted,
            }] if deleted else []),
            {
                "Sid": "TableIndexes",
                "Effect": "Allow",
                "Action": ["dynamodb:Query"],
                "Resource": indexes,
            },
            *([{
                "Sid": "ScannedTables",
                "Effect": "Allow",
                "Action": ["dynamodb:Scan"],
                "Resource": scanned,
            }] if scanned else []),
            {
                "Sid": "FilesObjects",
                "Effect": "Allow",
                # PutObject also covers multipart uploads (statement downloads); a failed one is aborted.
                "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                "Resource": [f"{bucket}/*"],
            },
            {
                "Sid": "FilesBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket],
            },
            {
                "Sid": "StatementsQueue",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": [f"arn:aws:sqs:*:*:{APP}-{stage}-statements"],
            },
            {
                "Sid": "ChannelSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [f"arn:aws:secretsmanager:*:*:secret:{APP}-{stage}-*"],
            },
            # The webhook-secrets key is granted to this stage's roles by its own key policy (template).
        ],
    }


# ---- a tiny YAML writer (block style; no dependency) ---------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_.:/*-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _yaml(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{_scalar(k)}:")
                lines.extend(_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{_scalar(k)}: {_inline(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = _yaml(item, indent + 1)
                first = body[0].lstrip()
                lines.append(f"{pad}- {first}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(doc: dict[str, Any]) -> str:
    header = "# Generated by `python -m infra.gen_template` from chalicelib/store. Do not edit by hand.\n"
    return header + "\n".join(_yaml(doc, 0)) + "\n"


def render() -> tuple[str, dict[str, str]]:
    """(template.yaml text, {stage: policy-<stage>.json text}) for the models as they are now."""
    specs = table_specs()
    template = to_yaml(build_template(specs))
    policies = {stage: json.dumps(build_policy(specs, stage), indent=2) + "\n" for stage in STAGES}
    return template, policies


def main(argv: list[str]) -> int:
    template, policies = render()
    targets = [(TEMPLATE_PATH, template), *((policy_path(stage), text) for stage, text in policies.items())]
    if "--check" in argv:
        stale = [str(p.relative_to(PROJECT_DIR)) for p, text in targets
                 if not p.exists() or p.read_text() != text]
        if stale:
            print("out of date: " + ", ".join(stale) + " (run: python -m infra.gen_template)", file=sys.stderr)
            return 1
        return 0
    for path, text in targets:
        path.write_text(text)
        print(f"wrote {path.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
