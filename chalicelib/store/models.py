"""pynamodb models: the only place that knows what our DynamoDB tables look like."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.store.base import meta


class _MerchantsByStatus(GlobalSecondaryIndex):
    """The money jobs walk active (and suspended) merchants with a Query (the IAM policy grants no Scan)."""
    class Meta:
        index_name = "by_status"
        projection = KeysOnlyProjection()

    status = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute(range_key=True)


class MerchantModel(Model):
    Meta = meta("merchants")
    merchant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    settlement_currency = UnicodeAttribute()
    fee_bps = NumberAttribute()
    channels = JSONAttribute(default=dict)
    status = UnicodeAttribute(default="active")
    fx_markup_bps = NumberAttribute(default=0)
    allow_negative_balance = BooleanAttribute(default=False)
    holding_days = NumberAttribute(default=2)
    min_payout = NumberAttribute(default=2000)
    bank_account = UnicodeAttribute(null=True)
    legal_name = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    alert_bindings = JSONAttribute(null=True)   # [[binding_id, openid, store_name], ...]; absent: not known
    by_status = _MerchantsByStatus()


class _KeysByMerchant(GlobalSecondaryIndex):
    """The portal lists a merchant's keys (hint, mode, state), never the keys themselves."""
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class ApiKeyModel(Model):
    """Merchant secret keys, stored as SHA-256 of the whole key (keys are 32 random chars: no salt needed)."""
    Meta = meta("api_keys")
    key_hash = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    livemode = BooleanAttribute()
    hint = UnicodeAttribute()                 # last 4 characters, for dashboards
    revoked = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute(null=True)   # a rolled key works until then (the grace period)
    by_merchant = _KeysByMerchant()


class _ByMerchantReference(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant_reference"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    merchant_reference = UnicodeAttribute(range_key=True)


class _PendingByNextCheck(GlobalSecondaryIndex):
    """Sparse: pending payments by when the chase looks at them next. Each look that leaves a payment
    pending moves it back (backing off with age), so old unresolvable ones never hide newer ones."""
    class Meta:
        index_name = "pending_by_next_check"
        projection = KeysOnlyProjection()

    pending_shard = UnicodeAttribute(hash_key=True)
    next_check_at = NumberAttribute(range_key=True)


class _PaidByMerchant(GlobalSecondaryIndex):
    """Sparse: only paid payments carry `paid_at`. Kept to backfill `unreleased_by` on payments paid before
    that attribute existed (release_funds reads unreleased_by_merchant)."""
    class Meta:
        index_name = "paid_by_merchant"
        projection = IncludeProjection(["released"])

    merchant_id = UnicodeAttribute(hash_key=True)
    paid_at = UTCDateTimeAttribute(range_key=True)


class _UnreleasedByMerchant(GlobalSecondaryIndex):
    """Sparse: only succeeded payments whose funds are not released carry `unreleased_by` (their merchant),
    so release_funds finds every one of them, however old, without a time window."""
    class Meta:
        index_name = "unreleased_by_merchant"
        projection = KeysOnlyProjection()

    unreleased_by = UnicodeAttribute(hash_key=True)
    paid_at = UTCDateTimeAttribute(range_key=True)


class _ReconByDay(GlobalSecondaryIndex):
    """Sparse: a succeeded payment carries `recon_day` = channel#Beijing bill date, what reconciliation
    reads for one channel's day (no scans). Eventually consistent: money actions re-read the item."""
    class Meta:
        index_name = "recon_by_day"
        projection = IncludeProjection(["merchant_id", "amount", "currency", "channel_amount", "channel_currency",
                                        "status", "channel_order_id", "quote", "fee", "rate"])

    recon_day = UnicodeAttribute(hash_key=True)
    payment_id = UnicodeAttribute(range_key=True)


class PaymentModel(Model):
    Meta = meta("payments")
    payment_id = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    livemode = BooleanAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    channel = UnicodeAttribute()
    flow = UnicodeAttribute()
    status = UnicodeAttribute()
    channel_order_id = UnicodeAttribute()
    merchant_reference = UnicodeAttribute()
    description = UnicodeAttribute()
    fee = NumberAttribute()
    channel_merchant = JSONAttribute(default=dict)
    channel_amount = NumberAttribute(null=True)
    channel_currency = UnicodeAttribute(null=True)
    return_url = UnicodeAttribute(null=True)
    metadata = JSONAttribute(default=dict)
    next_action = JSONAttribute(null=True)
    channel_transaction_id = UnicodeAttribute(null=True)
    payer_amount = NumberAttribute(null=True)
    payer_currency = UnicodeAttribute(null=True)
    rate = UnicodeAttribute(null=True)          # Decimal as text
    quote = JSONAttribute(null=True)
    refunded = NumberAttribute(default=0)
    # What live refunds (reserved or succeeded, not failed) have handed back: our fee and, on payments the
    # channel charged in another currency, the channel amount. Each refund is priced against these.
    fee_returned = NumberAttribute(null=True)
    channel_returned = NumberAttribute(null=True)
    # What live refunds took from `pending` while this payment was unreleased: its release leaves it out.
    pending_drawn = NumberAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    paid_at = UTCDateTimeAttribute(null=True)
    closed_at = UTCDateTimeAttribute(null=True)
    failure_code = UnicodeAttribute(null=True)
    closed_by = UnicodeAttribute(null=True)     # merchant | clock | channel
    pending_shard = UnicodeAttribute(null=True)
    next_check_at = NumberAttribute(null=True)  # epoch s: when the chase looks at this pending payment next
    released = BooleanAttribute(null=True)
    unreleased_by = UnicodeAttribute(null=True)    # merchant id while succeeded and not released (sparse)
    documents = JSONAttribute(null=True)
    alert_bindings = JSONAttribute(null=True)   # staff alerts owed on success; absent: read the bindings
    allowed_channels = ListAttribute(of=UnicodeAttribute, null=True)
    recon_day = UnicodeAttribute(null=True)
    by_merchant_reference = _ByMerchantReference()
    pending_by_next_check = _PendingByNextCheck()
    paid_by_merchant = _PaidByMerchant()
    unreleased_by_merchant = _UnreleasedByMerchant()
    recon_by_day = _ReconByDay()


class _RefundsByPayment(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_payment"
        projection = AllProjection()

    payment_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class _RefundsProcessing(GlobalSecondaryIndex):
    """Sparse: only refunds still waiting for the channel carry `processing_shard`."""
    class Meta:
        index_name = "processing"
        projection = KeysOnlyProjection()

    processing_shard = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class _RefundsReconByDay(GlobalSecondaryIndex):
    """A refund under channel#Beijing day of its request: what reconciliation reads for that bill."""
    class Meta:
        index_name = "recon_by_day"
        projection = IncludeProjection(["merchant_id", "amount", "currency", "channel_amount", "channel_currency",
                                        "status", "payment_id", "channel_refund_id"])

    recon_day = UnicodeAttribute(hash_key=True)
    refund_id = UnicodeAttribute(range_key=True)


class RefundModel(Model):
    Meta = meta("refunds")
    refund_id = UnicodeAttribute(hash_key=True)
    payment_id = UnicodeAttribute()
    merchant_id = UnicodeAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    reason = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    channel_refund_id = UnicodeAttribute()
    channel_refund_ref = UnicodeAttribute(null=True)
    failure_code = UnicodeAttribute(null=True)
    channel_amount = NumberAttribute(null=True)
    channel_currency = UnicodeAttribute(null=True)
    draw = JSONAttribute(default=dict)          # which merchant buckets the refund was taken from
    borrowed = NumberAttribute(null=True)       # of draw["pending"]: other payments' unreleased money
    created_at = UTCDateTimeAttribute()
    processing_shard = UnicodeAttribute(null=True)
    livemode = BooleanAttribute(null=True)      # its payment's mode (absent on old items: live)
    channel = UnicodeAttribute(null=True)
    recon_day = UnicodeAttribute(null=True)
    by_payment = _RefundsByPayment()
    processing = _RefundsProcessing()
    recon_by_day = _RefundsReconByDay()


class IdempotencyModel(Model):
    Meta = meta("idempotency")
    key = UnicodeAttribute(hash_key=True)      # merchant_id#method#path#Idempotency-Key
    request_hash = UnicodeAttribute()
    status = UnicodeAttribute()                # in_progress | completed
    response_status = NumberAttribute(null=True)
    response_body = UnicodeAttribute(null=True)
    locked_until = NumberAttribute()           # epoch s: an in-progress claim older than this is abandoned
    expires = TTLAttribute()


class PostingModel(Model):
    """The journal: one immutable item per business event."""
    Meta = meta("ledger_postings")
    posting_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    ref = UnicodeAttribute()
    merchant_id = UnicodeAttribute()
    legs = JSONAttribute()                     # [[account, amount, currency], ...]
    memo = UnicodeAttribute(default="")
    created_at = UTCDateTimeAttribute()


class EntryModel(Model):
    """One leg of a posting, filed under its account (balance history, aggregation)."""
    Meta = meta("ledger_entries")
    account = UnicodeAttribute(hash_key=True)
    entry_key = UnicodeAttribute(range_key=True)   # <iso time>#<posting id>
    posting_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    ref = UnicodeAttribute()
    amount = NumberAttribute()                      # debit > 0, credit < 0
    currency = UnicodeAttribute()


class BalanceModel(Model):
    """Merchant balances, kept in step with their entries inside the same transaction."""
    Meta = meta("balances")
    account = UnicodeAttribute(hash_key=True)
    balance = NumberAttribute(default=0)       # credit-normal for merchant accounts
    # On a merchant's pending account only: what refunds of already released payments took from pending
    # (other payments' unreleased money) and no release has absorbed yet. See services.balances.
    borrowed = NumberAttribute(null=True)


class _EventsDue(GlobalSecondaryIndex):
    """Sparse: only undelivered events carry `due_shard`."""
    class Meta:
        index_name = "due"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    next_attempt_at = NumberAttribute(range_key=True)


class _EventsByMerchant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class EventModel(Model):
    """The outbox: an event is written in the same transaction as the change it reports."""
    Meta = meta("events")
    event_id = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    type = UnicodeAttribute()
    payload = UnicodeAttribute()               # the exact JSON body merchants receive
    created_at = UTCDateTimeAttribute()
    status = UnicodeAttribute()                # pending | delivered | failed
    attempts = NumberAttribute(default=0)
    next_attempt_at = NumberAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    delivered_endpoints = ListAttribute(default=list)
    last_error = UnicodeAttribute(null=True)
    livemode = BooleanAttribute(null=True)      # the mode of what it reports (absent on old items: live)
    version = VersionAttribute()
    due = _EventsDue()
    by_merchant = _EventsByMerchant()


class WebhookEndpointModel(Model):
    """A merchant's webhook endpoints (`we_...`), and one counter item per merchant (endpoint_id
    ENDPOINT_COUNTER, only `endpoint_count`) written in the same transaction as each add and delete."""
    Meta = meta("webhook_endpoints")
    merchant_id = UnicodeAttribute(hash_key=True)
    endpoint_id = UnicodeAttribute(range_key=True)
    url = UnicodeAttribute(null=True)          # (null only on the counter item)
    # The signing secret, sealed under the stage's KMS key (chalicelib.secrets.seal); opened only to sign,
    # never returned after creation. `secret`: plaintext on items written before sealing (still read;
    # sealed when the item is next written).
    secret = UnicodeAttribute(null=True)
    secret_sealed = JSONAttribute(null=True)
    enabled = BooleanAttribute(default=True)
    created_at = UTCDateTimeAttribute(null=True)
    livemode = BooleanAttribute(null=True)      # receives only events of this mode (absent on old items: live)
    endpoint_count = NumberAttribute(null=True)


ENDPOINT_COUNTER = "count"


class _OpsAwaiting(GlobalSecondaryIndex):
    """Sparse: only records a job must finish (e.g. a receipt still being returned) carry `awaiting`."""
    class Meta:
        index_name = "awaiting"
        projection = KeysOnlyProjection()

    awaiting = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class OpsRecordModel(Model):
    """Things ops must look at: late callbacks on closed payments, tampered or unknown callbacks."""
    Meta = meta("ops_records")
    record_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    channel = UnicodeAttribute()
    ref = UnicodeAttribute(null=True)
    detail = JSONAttribute(default=dict)
    status = UnicodeAttribute(default="open")
    note = UnicodeAttribute(null=True)          # the last thing done about it (e.g. "returned as ru_...")
    created_at = UTCDateTimeAttribute()
    awaiting = UnicodeAttribute(null=True)      # its kind while a job must finish it; removed when it moves on
    awaiting_index = _OpsAwaiting()


class _WithdrawalsByMerchant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_merchant"
        projection = AllProjection()

    merchant_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class _WithdrawalsByBatch(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_batch"
        projection = AllProjection()

    batch_id = UnicodeAttribute(hash_key=True)
    withdrawal_id = UnicodeAttribute(range_key=True)


class WithdrawalModel(Model):
    """A merchant payout. At most one per merchant and NZ date: WithdrawalPeriodModel guards that, not
    the id (a short derived string that is also the bank reference, and may need a second try)."""
    Meta = meta("withdrawals")
    withdrawal_id = UnicodeAttribute(hash_key=True)
    period_key = UnicodeAttribute()            # merchant_id#YYYY-MM-DD (NZ date)
    merchant_id = UnicodeAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    bank_account = UnicodeAttribute()          # 16 digits, as filed
    batch_id = UnicodeAttribute()
    period = UnicodeAttribute()
    status = UnicodeAttribute()                # filed | paid | failed
    failure_reason = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    settled_at = UTCDateTimeAttribute(null=True)
    by_merchant = _WithdrawalsByMerchant()
    by_batch = _WithdrawalsByBatch()


class WithdrawalPeriodModel(Model):
    """The natural key of a withdrawal: one item per merchant and NZ date, written (attribute_not_exists)
    in the same transaction as the withdrawal it points to."""
    Meta = meta("withdrawal_periods")
    period_key = UnicodeAttribute(hash_key=True)   # merchant_id#YYYY-MM-DD (NZ date)
    withdrawal_id = UnicodeAttribute()
    batch_id = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()


class _BatchesByStatus(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_status"
        projection = KeysOnlyProjection()

    status = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)


class WithdrawalBatchModel(Model):
    """One bank direct-credit file: the day's batch per NZ date and currency, or one hand run's.

    open:   withdrawals join it, each in the transaction that reserves its funds (joined*).
    filing: membership frozen (nothing joins), the file is being written; a run that died here is
            finished by the next one.
    filed:  the file is written; `members`, `count` and `total` are exactly what it pays.
    paid:   the bank paid it; every member was booked paid (or had failed before).
    """
    Meta = meta("withdrawal_batches")
    batch_id = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()                # open | filing | filed | paid
    joined = UnicodeSetAttribute(null=True)    # every withdrawal that reserved funds into this batch
    joined_count = NumberAttribute(null=True)
    joined_total = NumberAttribute(null=True)
    members = ListAttribute(of=UnicodeAttribute, null=True)   # the withdrawals in the file, as filed
    s3_key = UnicodeAttribute(null=True)       # None: every joined withdrawal failed before filing
    count = NumberAttribute(null=True)
    total = NumberAttribute(null=True)
    hash_total = UnicodeAttribute(null=True)
    sha256 = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    filed_at = UTCDateTimeAttribute(null=True)
    paid_at = UTCDateTimeAttribute(null=True)
    by_status = _BatchesByStatus()
