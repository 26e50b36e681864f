"""requests transports for tests: route outbound HTTP to the Chalice test client or a fake receiver.

The code under test still builds, signs and sends real HTTP requests with `requests`; only the
socket is replaced, so signing, serialisation and parsing all run for real.
"""
from __future__ import annotations

import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

_app_lock = threading.RLock()


def _response(request, status: int, headers: dict, body: bytes) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.headers = CaseInsensitiveDict(headers or {})
    r._content = body
    r._content_consumed = True   # the whole body is here: iter_content (stream=True readers) slices it
    r.url = request.url
    r.request = request
    r.encoding = None
    return r


class ChaliceAdapter(BaseAdapter):
    """Sends each request into a chalice.test.Client (our app, including the sandbox routes)."""

    def __init__(self, client):
        super().__init__()
        self.client = client
        self.calls: list[tuple[str, str]] = []

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {k: v for k, v in request.headers.items()}
        self.calls.append((request.method, path))
        # One request at a time through the app: chalice keeps current_request on the app object.
        with _app_lock:
            resp = getattr(self.client.http, request.method.lower())(path, headers=headers, body=body)
        return _response(request, resp.status_code, dict(resp.headers), resp.body)

    def close(self):
        pass


class FakeReceiver(BaseAdapter):
    """A merchant's webhook receiver (or any outside server): records requests, answers as told."""

    def __init__(self, status: int = 200, body: bytes = b"ok"):
        super().__init__()
        self.status = status
        self.body = body
        self.down = False          # True: every request times out
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def send(self, request, **kwargs):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._lock:
            self.requests.append({"url": request.url, "headers": dict(request.headers), "body": body,
                                  "answered": not self.down})
        if self.down:
            raise requests.exceptions.ConnectTimeout("receiver down (test)")
        return _response(request, self.status, {"Content-Type": "text/plain"}, self.body)

    def close(self):
        pass


class Faulty(BaseAdapter):
    """A broken network or proxy in front of another adapter, for the paths in `faults`.

    Per path (exact URL path): "reset" drops the request before it arrives; "timeout" and "garble"
    forward it (the far side acts on it) and then lose the answer or hand back garbage; "404" forwards
    it and answers an HTTP 404 page, as a misrouted proxy does; "unsigned" forwards it and hands back
    the answer without its <sign> element (anyone could have written it).
    """

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.faults: dict[str, str] = {}

    def send(self, request, **kwargs):
        fault = self.faults.get(urlsplit(request.url).path)
        if fault == "reset":
            raise requests.exceptions.ConnectionError("connection reset by peer (test)")
        resp = self.inner.send(request, **kwargs)
        if fault == "timeout":
            raise requests.exceptions.ReadTimeout("read timed out (test)")
        if fault == "garble":
            return _response(request, 200, {"Content-Type": "text/xml"}, b"<xml><return_code>SUC\x00\xff")
        if fault == "unsigned":
            import re

            return _response(request, 200, {"Content-Type": "text/xml"},
                             re.sub(rb"<sign>.*?</sign>", b"", resp.content, flags=re.S))
        if fault == "404":
            return _response(request, 404, {"Content-Type": "text/html"}, b"<html>Not Found</html>")
        return resp

    def close(self):
        pass


class _LazyBody:
    """A response body produced piece by piece as it is read (as a socket delivers it), never held whole.
    `fail_after`: raise a dropped connection once that many bytes were read."""

    def __init__(self, pieces, fail_after: int | None = None):
        self._pieces = iter(pieces)
        self._buffer = b""
        self._read = 0
        self._fail_after = fail_after

    def read(self, amt=None, **_kwargs) -> bytes:
        want = amt or 1 << 20
        while len(self._buffer) < want:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        self._read += len(out)
        if self._fail_after is not None and self._read > self._fail_after:
            raise requests.exceptions.ChunkedEncodingError("connection broken mid-body (test)")
        return out

    def close(self):
        pass


class StreamingServer(BaseAdapter):
    """An outside server whose answer body is generated as it is read: `body()` returns an iterable of
    byte pieces (any sizes). Nothing is buffered, so a test can measure what the reader holds."""

    def __init__(self, body, status: int = 200, headers: dict | None = None, fail_after: int | None = None):
        super().__init__()
        self.body, self.status, self.fail_after = body, status, fail_after
        self.headers = headers or {"Content-Type": "text/plain; charset=utf-8"}
        self.requests: list[str] = []
        self.bodies: list[_LazyBody] = []

    def bytes_read(self) -> int:
        """How much of its answers the reader took."""
        return sum(b._read for b in self.bodies)

    def send(self, request, **kwargs):
        self.requests.append(request.url)
        r = requests.Response()
        r.status_code = self.status
        r.headers = CaseInsensitiveDict(self.headers)
        r.raw = _LazyBody(self.body(), self.fail_after)
        self.bodies.append(r.raw)
        r.url = request.url
        r.request = request
        return r

    def close(self):
        pass
