"""The v2 XML wire format: what we write, what we accept, and what we refuse."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.channels.wechat import wire


def test_strings_go_in_cdata_and_ints_bare_and_both_parse_back():
    body = wire.to_xml({"body": "新西兰蜂蜜 <&>", "total_fee": 1250, "skipped": None})
    assert body == "<xml><body><![CDATA[新西兰蜂蜜 <&>]]></body><total_fee>1250</total_fee></xml>".encode()
    assert wire.from_xml(body) == {"body": "新西兰蜂蜜 <&>", "total_fee": "1250"}


def test_cdata_terminator_inside_a_value_survives_the_round_trip():
    assert wire.from_xml(wire.to_xml({"attach": "a]]>b"})) == {"attach": "a]]>b"}


def test_parses_cdata_bare_empty_and_escaped_values():
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <a><![CDATA[x]]></a>\n  <b>42</b>\n  <c></c>\n'
            b'  <d/>\n  <e>1 &lt; 2</e>\n</xml>')
    assert wire.from_xml(body) == {"a": "x", "b": "42", "c": "", "d": "", "e": "1 < 2"}


@pytest.mark.parametrize("body", [
    # classic XXE: external entity reading a local file
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>',
    # billion laughs
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><a>&b;</a></xml>',
    # a bare DOCTYPE is already refused
    b'<!DOCTYPE xml><xml><a>1</a></xml>',
])
def test_doctype_and_entities_are_refused(body):
    with pytest.raises(wire.WireError):
        wire.from_xml(body)


def test_oversized_body_is_refused_before_parsing():
    body = b"<xml><a>" + b"x" * wire.MAX_BODY_BYTES + b"</a></xml>"
    with pytest.raises(wire.WireError, match="larger"):
        wire.from_xml(body)


@pytest.mark.parametrize("body", [
    b"", b"   ", b"not xml", b"<xml><a>1</a>", b"<root><a>1</a></root>",
    b"<xml><a><b>1</b></a></xml>",           # nested
    b"<xml><a>1</a><a>2</a></xml>",          # duplicate
    "<xml><a>é</a></xml>".encode("latin-1"),  # not UTF-8
])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(wire.WireError):
        wire.from_xml(body)


def test_writer_refuses_values_xml_cannot_carry():
    with pytest.raises(wire.WireError):
        wire.to_xml({"a": "bell\x07"})
    with pytest.raises(wire.WireError):
        wire.to_xml({"bad name": "x"})
    with pytest.raises(wire.WireError):
        wire.to_xml({"amount": 12.5})


def test_protocol_times_are_china_standard_time():
    at = datetime(2024, 1, 1, 4, 5, 1, tzinfo=timezone.utc)
    assert wire.format_time(at) == "20240101120501"
    assert wire.parse_time("20240101120501") == at
    assert wire.china_date(datetime(2023, 12, 31, 16, 0, tzinfo=timezone.utc)) == "20240101"
    with pytest.raises(ValueError):
        wire.parse_time("2024-01-01")
