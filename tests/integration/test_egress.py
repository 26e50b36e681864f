"""Nothing POSTs into our network: webhooks (and simulators, see their tests) go through chalicelib.egress."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib import egress, http, settings
from chalicelib.services import notifications
from chalicelib.store.models import EventModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.transport import FakeReceiver

PUBLIC_IP = "93.184.216.34"  # only ever handed to the check: every test keeps the socket on loopback


@pytest.fixture
def deployed(monkeypatch):
    """A deployed (non-local) stage: https only, public addresses only."""
    monkeypatch.setenv("KAURI_LOCAL_RECEIVERS", "0")
    settings.reset()
    yield
    monkeypatch.setenv("KAURI_LOCAL_RECEIVERS", "1")
    settings.reset()


class Names:
    """A DNS we control: host -> list of answers, the last one repeated."""

    def __init__(self, **answers):
        self.answers = {k.replace("_", "."): list(v) for k, v in answers.items()}
        self.asked: list[str] = []

    def __call__(self, host, port):
        self.asked.append(host)
        seq = self.answers.get(host)
        if not seq:
            raise OSError("NXDOMAIN")
        return [seq.pop(0)] if len(seq) > 1 else [seq[0]]


@pytest.fixture
def merchant(client):
    return new_merchant(client)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
    "https://10.0.0.5/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:10.0.0.5]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://224.0.0.1/hook",
    "https://240.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://100.64.0.1/hook",
    "https://localhost/hook",
    "https://internal.test/hook",       # resolves to loopback here
    "http://hooks.example.com/hook",    # http outside the local stages
])
def test_webhook_endpoints_aimed_inside_the_network_are_refused(merchant, deployed, url):
    egress.use_resolver(Names(hooks_example_com=[PUBLIC_IP], localhost=["127.0.0.1"], internal_test=["127.0.0.1"]))
    r = merchant.post("/v1/webhook_endpoints", {"url": url})
    assert r.status_code == 400, r.body
    assert r.json_body["error"]["code"] == "url_not_allowed" and r.json_body["error"]["param"] == "url"
    assert merchant.get("/v1/webhook_endpoints").json_body["data"] == []


def test_a_public_https_receiver_is_accepted_outside_the_local_stages(merchant, deployed):
    egress.use_resolver(Names(hooks_example_com=[PUBLIC_IP]))
    r = merchant.post("/v1/webhook_endpoints", {"url": "https://hooks.example.com/kauri"})
    assert r.status_code == 201, r.body


def test_link_local_metadata_address_is_refused_even_in_the_local_stages(merchant):
    r = merchant.post("/v1/webhook_endpoints", {"url": "http://169.254.169.254/latest/meta-data/"})
    assert r.status_code == 400 and r.json_body["error"]["code"] == "url_not_allowed"


def test_delivery_checks_the_address_again_when_dns_changed_after_registration(client, merchant, deployed):
    names = Names(hooks_example_com=[PUBLIC_IP])
    egress.use_resolver(names)
    receiver = FakeReceiver()
    http.mount("https://hooks.example.com", receiver)
    assert merchant.post("/v1/webhook_endpoints", {"url": "https://hooks.example.com/kauri"}).status_code == 201
    names.answers["hooks.example.com"] = ["10.0.0.5"]                # rebinding after the check
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    assert notifications.deliver_due() == 1
    assert receiver.requests == []                                   # nothing went to the private address
    ev = next(iter(EventModel.scan()))
    assert ev.status == "pending" and "refused" in ev.last_error and "private" in ev.last_error


# ---- real sockets on loopback: the address actually connected to ----------------------------------

@contextmanager
def loopback_receiver(status=200, body=b"ok", headers=None):
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"path": self.path, "body": self.rfile.read(length)})
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def get_request(self):
            conn = super().get_request()
            seen.append({"connection": conn[1][0]})
            return conn

    server = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_dns_rebinding_between_check_and_connect_never_reaches_the_private_address(deployed):
    with loopback_receiver() as (port, seen):
        # first answer (the check) public, every later one (the connection's own lookup) loopback
        names = Names(hooks_example_com=[PUBLIC_IP, "127.0.0.1"])
        egress.use_resolver(names)
        with pytest.raises(egress.Failed, match="refused"):
            egress.post(f"https://hooks.example.com:{port}/kauri", b"{}", {}, timeout=2)
    assert seen == []  # not even a TCP connection was accepted
    assert names.asked.count("hooks.example.com") >= 2  # checked, then looked up again by the connection


def test_a_local_stage_delivers_to_a_loopback_receiver_over_a_real_socket():
    with loopback_receiver() as (port, seen):
        answer = egress.post(f"http://127.0.0.1:{port}/hook", b'{"a":1}', {"Content-Type": "application/json"},
                             timeout=2)
    assert answer.status == 200 and answer.body == b"ok"
    assert seen == [{"connection": "127.0.0.1"}, {"path": "/hook", "body": b'{"a":1}'}]


def test_redirects_are_not_followed():
    with loopback_receiver(status=302, headers={"Location": "/elsewhere"}) as (port, seen):
        answer = egress.post(f"http://127.0.0.1:{port}/hook", b"{}", {}, timeout=2)
    assert answer.status == 302 and [s["path"] for s in seen if "path" in s] == ["/hook"]


def test_the_answer_read_is_bounded():
    with loopback_receiver(body=b"x" * (egress.MAX_ANSWER_BYTES + 1)) as (port, _):
        with pytest.raises(egress.Failed, match="answer over"):
            egress.post(f"http://127.0.0.1:{port}/hook", b"{}", {}, timeout=2)


def test_webhook_to_a_redirecting_receiver_counts_as_failed(client, merchant):
    with loopback_receiver(status=307, headers={"Location": "http://169.254.169.254/"}) as (port, seen):
        assert merchant.post("/v1/webhook_endpoints", {"url": f"http://127.0.0.1:{port}/k"}).status_code == 201
        shopper_pays(client, merchant.create_payment().json_body)
        assert notifications.deliver_due() == 1
    ev = next(iter(EventModel.scan()))
    assert ev.status == "pending" and ev.last_error.endswith("HTTP 307")
    assert [s["path"] for s in seen if "path" in s] == ["/k"]


@pytest.mark.parametrize("address, local, allowed", [
    ("127.0.0.1", True, True), ("127.0.0.1", False, False), ("::1", False, False),
    ("::ffff:127.0.0.1", False, False), ("::ffff:93.184.216.34", False, True),
    ("2002:7f00:1::", False, False), ("64:ff9b::a00:5", False, False), ("2001:0:4136:e378:8000:63bf:f5ff:fffe",
                                                                        False, False),
    ("169.254.169.254", True, False), ("192.168.1.1", True, False), ("ff02::1", False, False),
    ("2606:4700:4700::1111", False, True), ("8.8.8.8", False, True),
])
def test_address_rule(address, local, allowed):
    assert (egress.address_problem(address, local) is None) is allowed


def test_the_stacks_own_base_url_is_always_allowed(deployed, monkeypatch):
    monkeypatch.setenv("KAURI_PUBLIC_BASE_URL", "http://10.1.2.3:8000")
    settings.reset()
    egress.check("http://10.1.2.3:8000/callbacks/wechat")
    with pytest.raises(egress.Refused):
        egress.check("http://10.1.2.3:8001/callbacks/wechat")


def test_notifications_send_goes_through_egress(client, merchant, deployed):
    # the metadata address cannot be registered, and a stored one (from before this rule) is not sent to
    from chalicelib.store import merchants as merchant_store

    merchant_store.new_endpoint(merchant.merchant.id, "we_legacy", "http://169.254.169.254/latest/", "whsec_x", True).save()
    grabber = FakeReceiver()
    http.mount("http://169.254.169.254", grabber)
    shopper_pays(client, merchant.create_payment().json_body)
    assert notifications.deliver_due() == 1
    assert grabber.requests == []
    assert "refused" in next(iter(EventModel.scan())).last_error
