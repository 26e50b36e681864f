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
    ("chalicelib.store.qr_codes", "QrCodeModel"),
    ("chalicelib.store.qr_codes", "ThrottleModel"),
    ("chalicelib.store.sandbox", "SandboxRecord"),
    ("chalicelib.store.audit", "AuditModel"),
    ("chalicelib.store.staff", "StaffModel"),
    ("chalicelib.store.staff", "InvitationModel"),
    ("chalicelib.store.staff", "SessionModel"),
]


def models():
    return [getattr(importlib.import_module(m), name) for m, name in _MODELS]


def create_all() -> None:
    for model in models():
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)


def create_staff_directory() -> None:
    """The Cognito user pool staff sign in with (deployed stages: infra/template.yaml)."""
    from chalicelib.services import staff

    staff.create_pool()


def create_bucket() -> None:
    import boto3

    from chalicelib import settings

    s = settings.get()
    s3 = boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url)
    try:
        s3.create_bucket(Bucket=s.bucket, CreateBucketConfiguration={"LocationConstraint": s.region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
