"""Supporting documents for a payment (tuition): presigned uploads straight to S3, never through the API."""
from __future__ import annotations

import re

from chalicelib import clock, ids, log, settings
from chalicelib.services import errors
from chalicelib.store import payments as store

MAX_BYTES = 10 * 1024 * 1024
TYPES = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
MAX_DOCUMENTS = 20
UPLOAD_SECONDS = 900
_NAME = re.compile(r"^[\w .()\-]{1,100}$")


def _s3():
    import boto3

    s = settings.get()
    return boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url)


def start_upload(payment_id: str, filename: str, content_type: str, size: int | None,
                 redirect_to: str | None = None) -> dict:
    """A presigned POST the payer's browser uploads one file with; S3 enforces type and size.

    From the pay page (`redirect_to`: S3 sends the browser back there) the size is not known yet: the
    file input is on the next page, and S3 holds it to MAX_BYTES either way.
    """
    p = store.get(payment_id)
    if p is None or p.quote is None:  # only quoted payments (tuition) take documents
        raise errors.not_found("payment", "payment_id")
    if p.status.value != "pending" or clock.now() >= p.expires_at:  # the payer's door shuts with the payment
        raise errors.conflict("payment_not_payable", "documents can be added only while the payment can be paid")
    if not isinstance(filename, str) or not _NAME.match(filename):
        raise errors.invalid("filename_invalid", "filename: 1-100 letters, digits, spaces, . ( ) - _", "filename")
    if content_type not in TYPES:
        raise errors.invalid("content_type_not_allowed", f"documents must be one of {sorted(TYPES)}",
                             "content_type")
    if (size is not None or redirect_to is None) and (type(size) is not int or not 0 < size <= MAX_BYTES):
        raise errors.invalid("file_too_large", f"a document is at most {MAX_BYTES} bytes", "size")
    if len(p.documents) >= MAX_DOCUMENTS:
        raise errors.conflict("too_many_documents", f"a payment holds at most {MAX_DOCUMENTS} documents")
    doc_id = ids.new("doc", 16)
    key = f"documents/{p.id}/{doc_id}{TYPES[content_type]}"
    fields = {"Content-Type": content_type}
    if redirect_to:
        fields["success_action_redirect"] = redirect_to
    post = _s3().generate_presigned_post(
        settings.get().bucket, key, Fields=fields,
        Conditions=[{k: v} for k, v in fields.items()] + [["content-length-range", 1, MAX_BYTES]],
        ExpiresIn=UPLOAD_SECONDS)
    doc = {"id": doc_id, "filename": filename, "content_type": content_type, "size": size, "key": key,
           "created": clock.iso(clock.now())}
    try:
        store.add_document(p.id, doc, MAX_DOCUMENTS)
    except ValueError:
        raise errors.conflict("documents_changed", "the payment's documents changed meanwhile; try again") from None
    log.info("document_upload_started", payment_id=p.id, document_id=doc_id, content_type=content_type, size=size)
    return {"document": public(doc), "upload": {"url": post["url"], "fields": post["fields"],
                                                "expires_in": UPLOAD_SECONDS}}


def public(doc: dict) -> dict:
    return {k: doc[k] for k in ("id", "filename", "content_type", "size", "created")}


def list_for(payment_id: str) -> list[dict]:
    """The payment's documents, each with whether the file has actually arrived in S3."""
    p = store.get(payment_id)
    out = []
    s3 = _s3()
    for doc in p.documents:
        try:
            head = s3.head_object(Bucket=settings.get().bucket, Key=doc["key"])
            out.append({**public(doc), "uploaded": True, "size": int(head["ContentLength"])})
        except s3.exceptions.ClientError:
            out.append({**public(doc), "uploaded": False})
    return out
