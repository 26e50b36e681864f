"""Channel statements streamed into S3 by download_statements: a bill far larger than what the process
holds is stored byte-identical with its sha256; WeChat's error answers are told from the first bytes;
a body that breaks or grows past its bound stores nothing; GZIP bills are inflated as they flow."""
from __future__ import annotations

import gzip
import hashlib
import io
import tracemalloc
from datetime import date, datetime, timezone
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from chalicelib import channels, clock, http, settings
from chalicelib.services import statements
from tests.conftest import BASE
from tests.integration.helpers import new_merchant, paid_payment
from tests.support.transport import ChaliceAdapter, StreamingServer

DAY = date(2026, 11, 19)
NEXT_MORNING = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)     # 11:00 Beijing: the bill is out
DOWNLOADBILL = BASE + "/sandbox/wechat/pay/downloadbill"
KEY = "statements/wechat/2026-11-19/downloadbill_ALL.txt"
MIB = 1024 * 1024


def bill_pieces(total_bytes: int):
    """A WeChat-shaped bill of about `total_bytes`, generated as ~64 KiB pieces (never whole)."""
    yield "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号\n".encode()
    made, n = 0, 0
    while made < total_bytes:
        rows = "".join(f"`2026-11-19 12:{n % 60:02d}:00,`wx2421b1c4370ec43b,`10000100,`20000100,`,"
                       f"`4200{n + i:024d},`pay_{n + i:020d}\n" for i in range(400))
        n += 400
        piece = rows.encode()
        made += len(piece)
        yield piece
    yield f"总交易单数,总交易额\n`{n},`0.00\n".encode()


def digest_of(pieces) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    for p in pieces:
        h.update(p)
        size += len(p)
    return h.hexdigest(), size


def serve(body, **kwargs) -> StreamingServer:
    server = StreamingServer(body, **kwargs)
    http.mount(DOWNLOADBILL, server)      # the longest prefix wins: only downloadbill goes to it
    channels.reset()
    return server


def stored(key=KEY):
    s3 = boto3.client("s3", region_name=settings.get().region)
    try:
        obj = s3.get_object(Bucket=settings.get().bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    return obj


class _Raw(io.BytesIO):
    def stream(self, **_kwargs):
        data = self.read()
        if data:
            yield data


class CountingS3:
    """S3 as the far side of botocore: every request is built, signed and sent by boto3's real upload
    code and answered here, its parts hashed as they arrive, in order. (botocore also shows each request
    to moto's stub, which would keep the object whole in memory: the test points the upload at a bucket
    moto does not have, so moto only answers NoSuchBucket, which botocore ignores for ours.)"""

    BUCKET = "kauri-counting-sink"

    def __init__(self):
        from botocore.config import Config

        self.client = boto3.client("s3", region_name=settings.get().region,
                                   config=Config(request_checksum_calculation="when_required",
                                                 response_checksum_validation="when_required"))
        self.client.meta.events.register_first("before-send.s3", self.answer)
        self.digest = hashlib.sha256()
        self.parts: list[int] = []
        self.metadata: dict[str, str] = {}
        self.completed = False

    def answer(self, request, **_kwargs):
        from botocore.awsrequest import AWSResponse

        query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
        body = b""
        if "uploads" in query:
            self.metadata = {k.lower(): v.decode() if isinstance(v, bytes) else v
                             for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-")}
            body = (b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>b</Bucket>'
                    b"<Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>")
        elif "partNumber" in query:
            assert int(query["partNumber"][0]) == len(self.parts) + 1
            src, size = request.body, 0
            src = io.BytesIO(src) if isinstance(src, bytes) else src
            while chunk := src.read(64 * 1024):
                self.digest.update(chunk)
                size += len(chunk)
            self.parts.append(size)
        elif "uploadId" in query:
            self.completed = True
            body = (b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Location>x</Location>'
                    b"<Bucket>b</Bucket><Key>k</Key><ETag>\"e-1\"</ETag></CompleteMultipartUploadResult>")
        else:
            raise AssertionError(f"unexpected S3 call {request.method} {request.url}")
        return AWSResponse(request.url, 200, {"ETag": '"p"'}, _Raw(body))


def test_a_large_bill_is_stored_byte_identical_with_its_sha256_while_memory_stays_small(client, monkeypatch):
    size_wanted = 64 * MIB
    expected, size = digest_of(bill_pieces(size_wanted))
    serve(lambda: bill_pieces(size_wanted))
    sink = CountingS3()
    monkeypatch.setattr(statements, "_s3", lambda: sink.client)
    import dataclasses
    moved = dataclasses.replace(settings.get(), bucket=CountingS3.BUCKET)
    monkeypatch.setattr(settings, "get", lambda: moved)
    clock.freeze(NEXT_MORNING)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        [result] = [r for r in statements.download("wechat", DAY) if r["file"] == "downloadbill_ALL.txt"]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert result["status"] == "done" and result["bytes"] == size > size_wanted
    assert result["sha256"] == expected == sink.digest.hexdigest()          # what S3 got, in order, is the bill
    assert sink.completed and sink.metadata == {"x-amz-meta-sha256": expected}
    assert sink.parts[:-1] == [statements.PART_BYTES] * (len(sink.parts) - 1) and sum(sink.parts) == size
    # Peak Python memory of the whole download: one S3 part (8 MiB) and change, not the 64 MiB bill.
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a {size / MIB:.0f} MiB bill"


def test_a_bill_over_the_multipart_threshold_lands_in_s3_unchanged(client):
    expected, size = digest_of(bill_pieces(12 * MIB))
    serve(lambda: bill_pieces(12 * MIB))
    clock.freeze(NEXT_MORNING)
    got = client.lambda_.invoke("download_statements", {"channel": "wechat", "bill_date": "2026-11-19"}).payload
    [bill, _settlement] = got["results"]["wechat/2026-11-19"]
    assert (bill["status"], bill["sha256"], bill["bytes"]) == ("done", expected, size)
    obj = stored()
    assert obj["Metadata"] == {"sha256": expected} and obj["ETag"].strip('"').endswith("-2")   # two parts
    assert hashlib.sha256(obj["Body"].read()).hexdigest() == expected


def _xml_dribbled(xml: bytes):
    return lambda: [bytes([b]) for b in b"\r\n" + b" " * 100 + xml]   # one byte at a time, after blank space


@pytest.mark.parametrize("xml, status", [
    (b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg>"
     b"<error_code><![CDATA[20002]]></error_code></xml>", "no_bill"),
    (b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[\xe7\xb3\xbb\xe7\xbb\x9f\xe7\xb9\x81"
     b"\xe5\xbf\x99,\xe8\xaf\xb7\xe7\xa8\x8d\xe5\x90\x8e\xe5\x86\x8d\xe8\xaf\x95]]></return_msg></xml>", "not_ready"),
])
def test_an_error_answer_instead_of_the_bill_is_told_from_its_first_bytes_and_nothing_is_stored(client, xml, status):
    serve(_xml_dribbled(xml))
    clock.freeze(NEXT_MORNING)
    [bill, _] = statements.download("wechat", DAY)
    assert bill["status"] == status and stored() is None


def test_a_bill_that_breaks_half_way_stores_nothing_and_is_fetched_whole_next_time(client):
    serve(lambda: bill_pieces(3 * MIB), fail_after=2 * MIB)
    clock.freeze(NEXT_MORNING)
    [bill, _] = statements.download("wechat", DAY)
    assert (bill["status"], bill["code"]) == ("not_ready", "NETWORK") and stored() is None
    expected, _size = digest_of(bill_pieces(3 * MIB))
    serve(lambda: bill_pieces(3 * MIB))
    [bill, _] = statements.download("wechat", DAY)
    assert bill["status"] == "done" and stored()["Metadata"] == {"sha256": expected}


def test_a_bill_past_its_bound_is_refused_without_reading_on(client, monkeypatch):
    from chalicelib.channels.wechat import client as wechat_client

    monkeypatch.setattr(wechat_client, "MAX_BILL_BYTES", 1 * MIB)
    server = serve(lambda: bill_pieces(8 * MIB))
    clock.freeze(NEXT_MORNING)
    [bill, _] = statements.download("wechat", DAY)
    assert (bill["status"], bill["code"]) == ("not_ready", "BAD_RESPONSE") and stored() is None
    assert len(server.requests) == 1 and server.bytes_read() <= 1 * MIB + 64 * 1024   # the bound and one chunk


def test_a_gzip_bill_is_inflated_as_it_flows_and_a_gzip_bomb_is_stopped(client, monkeypatch):
    clock.freeze(datetime(2026, 11, 19, 5, 0, tzinfo=timezone.utc))
    shop = new_merchant(client)
    paid_payment(client, shop, 10000)
    paid_payment(client, shop, 2500)
    clock.freeze(NEXT_MORNING)
    seen = []

    class Recording(ChaliceAdapter):
        def send(self, request, **kwargs):
            resp = super().send(request, **kwargs)
            seen.append(resp.content[:2])
            return resp

    http.mount(BASE, Recording(client))
    channels.reset()
    wechat = channels.get("wechat")
    plain = b"".join(wechat.bill_chunks(DAY))
    inflated = b"".join(wechat.bill_chunks(DAY, gzip=True))
    assert seen[-1] == b"\x1f\x8b" and inflated == plain and plain.count(b"\n`") == 3   # 2 rows + the totals

    from chalicelib.channels.base import ChannelError
    from chalicelib.channels.wechat import client as wechat_client

    monkeypatch.setattr(wechat_client, "MAX_BILL_BYTES", 1 * MIB)
    bomb = gzip.compress(b"`" * (64 * MIB))                   # 64 MiB of text in ~64 KiB
    serve(lambda: [bomb], headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(ChannelError) as refused:
        b"".join(channels.get("wechat").bill_chunks(DAY, gzip=True))
    assert refused.value.code == "BAD_RESPONSE" and "inflated" in refused.value.message


def test_a_body_of_blank_space_only_is_no_bill_and_the_look_ahead_ends(client):
    serve(lambda: [b" \r\n" * 300])                           # longer than the first look, nothing in it
    clock.freeze(NEXT_MORNING)
    [bill, _] = statements.download("wechat", DAY)
    assert bill["status"] == "no_bill" and stored() is None


def test_an_upload_that_fails_on_a_later_part_leaves_no_object_and_no_open_multipart_upload(client, monkeypatch):
    """S3 refuses the second 8 MiB part: the multipart upload is aborted (nothing half-stored, no parts
    left to pay for), the run is not marked done, and the next run stores the bill whole."""
    import botocore.exceptions

    real_s3 = statements._s3

    def s3_failing_part_2():
        s3 = real_s3()

        def refuse(params, **_kwargs):
            if params.get("PartNumber") == 2:
                raise botocore.exceptions.EndpointConnectionError(endpoint_url="s3 (part 2)")
        s3.meta.events.register("before-parameter-build.s3.UploadPart", refuse)
        return s3

    monkeypatch.setattr(statements, "_s3", s3_failing_part_2)
    serve(lambda: bill_pieces(12 * MIB))
    clock.freeze(NEXT_MORNING)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        statements.download("wechat", DAY)
    s3 = boto3.client("s3", region_name=settings.get().region)
    assert stored() is None
    assert s3.list_multipart_uploads(Bucket=settings.get().bucket).get("Uploads", []) == []
    from chalicelib.store import reconciliation as store
    assert store.get_run("download#wechat#2026-11-19#downloadbill_ALL.txt") is None
    monkeypatch.setattr(statements, "_s3", real_s3)
    expected, _size = digest_of(bill_pieces(12 * MIB))
    [bill, _] = statements.download("wechat", DAY)
    assert bill["status"] == "done" and stored()["Metadata"] == {"sha256": expected}
