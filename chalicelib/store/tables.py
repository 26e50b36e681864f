"""Every table Kauri owns, for creation by tests, the local stack and infra checks."""
from __future__ import annotations

import importlib

# Modules that define pynamodb models; each model class listed by name.
_MODELS = [
    ("chalicelib.store.models", name) for name in (
        "MerchantModel", "ApiKeyModel", "PaymentModel", "RefundModel", "IdempotencyModel",
        "PostingModel", "EntryModel", "BalanceModel", "EventModel", "WebhookEndpointModel",
        "OpsRecordModel",
        "WithdrawalModel", "WithdrawalPeriodModel", "WithdrawalBatchModel",
    )
] + [
    ("chalicelib.store.fx", "FxSnapshotModel"),
    ("chalicelib.store.jobs", "JobRunModel"),
    ("chalicelib.store.alerts", "AlertBindingModel"),
    ("chalicelib.store.alerts", "AlertModel"),
    ("chalicelib.store.alerts", "BindCodeModel"),
    ("chalicelib.store.qr_codes", "QrCodeModel"),
    ("chalicelib.store.qr_codes", "ThrottleModel"),
    ("chalicelib.store.sandbox", "SandboxRecord"),
    ("chalicelib.store.reconciliation", "StatementRunModel"),
    ("chalicelib.store.reconciliation", "StatementRecordModel"),
    ("chalicelib.store.reconciliation", "DiscrepancyModel"),
    ("chalicelib.store.reconciliation", "SuspenseModel"),
    ("chalicelib.store.audit", "AuditModel"),
    ("chalicelib.store.staff", "StaffModel"),
    ("chalicelib.store.staff", "InvitationModel"),
    ("chalicelib.store.staff", "SessionModel"),
    ("chalicelib.store.mail", "MailModel"),
]


def models():
    return [getattr(importlib.import_module(m), name) for m, name in _MODELS]


def create_all() -> None:
    for model in models():
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)


def create_keys() -> None:
    """The stage's KMS key for webhook signing secrets, under its alias (the embedded AWS; in AWS the
    stateful stack makes it)."""
    import boto3

    from chalicelib import settings

    s = settings.get()
    kms = boto3.client("kms", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    alias = s.webhook_kms_key
    if not alias.startswith("alias/"):
        return
    if any(a["AliasName"] == alias for a in kms.list_aliases()["Aliases"]):
        return
    key = kms.create_key(Description="Kauri webhook signing secrets")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key)


def create_staff_directory() -> None:
    """The Cognito user pool staff sign in with (deployed stages: infra/template.yaml)."""
    from chalicelib.services import staff

    staff.create_pool()


def create_mail_identity() -> None:
    """The embedded AWS's verified SES identity for settings.mail_from (deployed stages verify their domain
    in SES by hand: README "Merchant portal")."""
    from email.utils import parseaddr

    import boto3

    from chalicelib import settings

    s = settings.get()
    address = parseaddr(s.mail_from)[1]
    if "@" not in address:
        return
    ses = boto3.client("sesv2", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    ses.create_email_identity(EmailIdentity=address.split("@", 1)[1])


def create_bucket() -> None:
    import boto3

    from chalicelib import settings

    s = settings.get()
    s3 = boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    try:
        s3.create_bucket(Bucket=s.bucket, CreateBucketConfiguration={"LocationConstraint": s.region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    # As infra/template.yaml wires it: statements/ objects notify the statements queue.
    sqs = boto3.client("sqs", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    url = sqs.create_queue(QueueName=s.statements_queue, Attributes={"VisibilityTimeout": "960"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=s.bucket, NotificationConfiguration={"QueueConfigurations": [{
        "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "statements/"}]}}}]})
