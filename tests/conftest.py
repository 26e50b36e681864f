"""Test set-up: environment first, then moto, then the app (order matters, see platform spec §3)."""
from __future__ import annotations

import os

os.environ.update({
    "KAURI_STAGE": "test",
    "KAURI_SANDBOX_ENABLED": "1",
    "KAURI_LOCAL_RECEIVERS": "1",
    "KAURI_PUBLIC_BASE_URL": "http://kauri.test",
    "KAURI_TABLE_PREFIX": "kauri-test-",
    "KAURI_BUCKET": "kauri-test-files",
    "AWS_DEFAULT_REGION": "ap-southeast-2",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    # Per-key limits off: tests drive one key hard (and freeze the clock); test_abuse and
    # test_key_limits_across_containers turn them on.
    "KAURI_RATE_LIMIT_PER_SECOND": "0",
    "KAURI_RATE_LIMIT_PER_MINUTE": "0",
    # One KMS alias whatever stage a test's settings load under (the test client runs requests as dev).
    "KAURI_WEBHOOK_KMS_KEY": "alias/kauri-test-webhooks",
    # Staff invitations are mailed through the embedded SES, from this verified identity.
    "KAURI_MAIL_FROM": "Kauri <no-reply@kauri.test>",
})
os.environ.pop("KAURI_AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

import moto  # noqa: E402  (must precede any boto3/pynamodb client)
import pytest  # noqa: E402

from infra import moto_atomic  # noqa: E402

moto_atomic.install()

from chalicelib import channels, clock, egress, http  # noqa: E402
from chalicelib import secrets  # noqa: E402
from chalicelib.services import merchants  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "http://kauri.test"


def _test_names(host: str, port: int) -> list[str]:
    """Test host names (*.test, localhost) resolve to loopback; nothing else resolves. No DNS query leaves."""
    if host == "localhost" or host.endswith(".test"):
        return ["127.0.0.1"]
    raise OSError(f"{host} is not a test host name")


@pytest.fixture(autouse=True)
def test_resolver():
    egress.use_resolver(_test_names)
    yield
    egress.use_resolver(None)


@pytest.fixture
def aws():
    """A fresh, empty embedded AWS with every table and the bucket created."""
    with moto.mock_aws():
        from chalicelib.store import tables

        tables.create_all()
        tables.create_bucket()
        tables.create_keys()
        tables.create_staff_directory()
        tables.create_mail_identity()
        yield
    clock.reset()
    merchants.forget_keys()  # a key cached against this test's (now discarded) tables
    secrets.reset()


@pytest.fixture
def client(aws):
    """Chalice's test client over app.py; outbound HTTP to http://kauri.test goes back into the app."""
    from chalice.test import Client

    from tests.support.transport import ChaliceAdapter
    import app as app_module

    with Client(app_module.app, stage_name="dev", project_dir=PROJECT_DIR) as c:
        http.mount(BASE, ChaliceAdapter(c))
        channels.reset()
        yield c
        http.unmount_all()
        channels.reset()


def pytest_configure(config):
    config.addinivalue_line("markers", "deploy: a whole `make deploy` against the emulated AWS (slow, ~1 min)")
