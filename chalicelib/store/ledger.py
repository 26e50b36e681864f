"""Reading the journal back as domain postings."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain.ledger import Leg, Posting
from chalicelib.store.models import PostingModel


def get(posting_id: str) -> Posting | None:
    try:
        item = PostingModel.get(posting_id, consistent_read=True)
    except DoesNotExist:
        return None
    return Posting(item.posting_id, item.kind, tuple(Leg(a, int(n), c) for a, n, c in item.legs),
                   item.ref, item.merchant_id, item.memo or "")
