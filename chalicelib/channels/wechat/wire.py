"""The v2 wire format: flat `<xml>` documents <-> dict[str, str], and UTC+8 protocol times."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

MAX_BODY_BYTES = 64 * 1024
CHINA_TZ = timezone(timedelta(hours=8))  # every protocol time is China Standard Time (spec §0)
TIME_FORMAT = "%Y%m%d%H%M%S"
DATE_FORMAT = "%Y%m%d"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Characters XML 1.0 cannot carry at all (so they cannot be sent or signed faithfully).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class WireError(ValueError):
    """A body that is not a well-formed, flat, UTF-8 WeChat XML document within the size bound."""


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside one CDATA section: split it across two.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(params: Mapping[str, Any], root_tag: str = "xml") -> bytes:
    """`<xml><k><![CDATA[v]]></k>...</xml>` as UTF-8; ints are written bare, strings in CDATA."""
    parts = [f"<{root_tag}>"]
    for name, value in params.items():
        if isinstance(value, dict):  # one level of records (settlementquery's <setteinfo_N>)
            _check_name(name)
            parts.append(f"<{name}>")
            parts.extend(_element(k, v) for k, v in value.items() if v is not None)
            parts.append(f"</{name}>")
        elif value is not None:
            parts.append(_element(name, value))
    parts.append(f"</{root_tag}>")
    return "".join(parts).encode("utf-8")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WireError(f"bad element name {name!r}")


def _element(name: str, value: Any) -> str:
    _check_name(name)
    if isinstance(value, bool):
        raise WireError(f"{name}: booleans are not wire values")
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    if isinstance(value, str):
        if _NOT_XML.search(value):
            raise WireError(f"{name}: contains characters XML cannot carry")
        return f"<{name}>{_cdata(value)}</{name}>"
    raise WireError(f"{name}: unsupported value type {type(value).__name__}")


def signable(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a signature covers: every top-level element's text content. A record element's text content
    is its children's texts run together in document order (the DOM textContent that WeChat's own v2 SDK
    (WXPayUtil.xmlToMap) reads for a nested element); a flat element is itself."""
    return {k: "".join(str(x) for x in v.values() if x is not None) if isinstance(v, dict) else v
            for k, v in params.items()}


def from_xml(body: bytes | str, max_bytes: int = MAX_BODY_BYTES, root_tag: str = "xml") -> dict[str, str]:
    """Parse a flat `<xml>` document (`<root>` inside a refund notification's req_info).
    Raises WireError on anything else (DTDs/entities included)."""
    return _parse(body, max_bytes, root_tag, None)[0]


_RECORD = re.compile(r"(?P<prefix>[A-Za-z_]+_)(?P<n>0|[1-9][0-9]{0,3})")


def from_xml_records(body: bytes | str, prefix: str, max_bytes: int = MAX_BODY_BYTES,
                     max_records: int = 100) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A `<xml>` document whose `<{prefix}N>` elements (N = 0, 1, ...) each hold one flat record.
    Returns (fields to verify the signature over, with each record as its text content; the records in
    order). Records must be numbered 0..n-1 without gaps; anything nested deeper is refused."""
    fields, records = _parse(body, max_bytes, "xml", prefix)
    if len(records) > max_records:
        raise WireError(f"more than {max_records} records")
    if sorted(records) != list(range(len(records))):
        raise WireError(f"<{prefix}N> records are not numbered 0..{len(records) - 1}")
    return fields, [records[n] for n in range(len(records))]


def _parse(body: bytes | str, max_bytes: int, root_tag: str,
           prefix: str | None) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray)):
        raise WireError("body must be bytes")
    if not body.strip():
        raise WireError("empty body")
    if len(body) > max_bytes:
        raise WireError(f"body larger than {max_bytes} bytes")
    try:
        bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("body is not UTF-8") from None

    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import DefusedXMLParser

    # encoding= overrides whatever the document declares: the protocol is UTF-8 only.
    parser = DefusedXMLParser(encoding="utf-8", forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(bytes(body))
        root = parser.close()
    except DefusedXmlException as exc:
        raise WireError(f"forbidden XML construct: {type(exc).__name__}") from None
    except (ParseError, ValueError) as exc:
        raise WireError(f"malformed XML: {exc}") from None
    if root.tag != root_tag:
        raise WireError(f"root element must be <{root_tag}>")
    fields: dict[str, str] = {}
    records: dict[int, dict[str, str]] = {}
    for child in root:
        if not isinstance(child.tag, str):
            raise WireError("unexpected XML node")
        if child.tag in fields:
            raise WireError(f"duplicate element <{child.tag}>")
        record = _RECORD.fullmatch(child.tag) if prefix is not None and len(child) else None
        if len(child) and (record is None or record["prefix"] != prefix):
            raise WireError(f"nested element inside <{child.tag}>")
        if record is not None:
            inner: dict[str, str] = {}
            for leaf in child:
                if not isinstance(leaf.tag, str) or len(leaf):
                    raise WireError(f"nested element inside <{child.tag}><{leaf.tag}>")
                if leaf.tag in inner:
                    raise WireError(f"duplicate element <{child.tag}><{leaf.tag}>")
                inner[leaf.tag] = leaf.text or ""
            records[int(record["n"])] = inner
            fields[child.tag] = "".join(child.itertext())
        else:
            fields[child.tag] = child.text or ""
    return fields, records


def format_time(dt: datetime) -> str:
    """yyyyMMddHHmmss in UTC+8 from an aware datetime."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(CHINA_TZ).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """yyyyMMddHHmmss (UTC+8) -> aware UTC datetime. ValueError if malformed."""
    if not isinstance(text, str) or len(text) != 14 or not text.isdigit():
        raise ValueError(f"not a yyyyMMddHHmmss time: {text!r}")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA_TZ).astimezone(timezone.utc)


def china_date(dt: datetime) -> str:
    """yyyyMMdd of the UTC+8 day containing `dt`."""
    return dt.astimezone(CHINA_TZ).strftime(DATE_FORMAT)
