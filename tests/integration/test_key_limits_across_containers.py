"""Per-key limits across Lambda containers (issue 9, "Abuse"): a minute's limit per API key holds however
many containers serve the key (within the documented bound), a quiet key costs no round trip, a refused
key gets 429 `rate_limited` with Retry-After to the window's end and is let in when the window rolls
over, and a counter store that is down never takes the API down.

Each simulated container is its own chalicelib.api.ratelimit.Container (its own buckets and windows);
they share the embedded DynamoDB, as Lambda containers share the real one."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from chalicelib import clock, settings
from chalicelib.api import ratelimit
from chalicelib.store.qr_codes import ThrottleModel
from tests.integration.helpers import new_merchant
from tests.integration.test_observability import emf, lines
from tests.integration.test_round_trips import dynamodb_calls

LIST = "/v1/payments?merchant_reference=x"
START = datetime(2026, 11, 28, 9, 30, 15, tzinfo=timezone.utc)   # 15 s into a minute's window


@pytest.fixture
def limits(monkeypatch):
    """Set the per-key limits (the per-container bucket off unless asked for), one container to start."""
    def set_limits(per_minute: int, quiet: int, lease: int, per_second: int = 0, burst: int = 0) -> None:
        for name, value in (("PER_MINUTE", per_minute), ("QUIET", quiet), ("LEASE", lease),
                            ("PER_SECOND", per_second), ("BURST", burst)):
            monkeypatch.setenv(f"KAURI_RATE_LIMIT_{name}", str(value))
        settings.reset()

    ratelimit.reset()
    clock.freeze(START)
    yield set_limits
    monkeypatch.undo()
    settings.reset()
    ratelimit.reset()


def in_container(monkeypatch, container: ratelimit.Container, merchant, path: str = LIST):
    """One request served by `container` (its memory; the DynamoDB every container shares)."""
    monkeypatch.setattr(ratelimit, "_here", container)
    return merchant.get(path)


def is_rate_limited(r) -> bool:
    body = r.json_body
    return (r.status_code == 429 and set(body) == {"error"}
            and body["error"] == {"type": "rate_limit_error", "code": "rate_limited", "param": None,
                                  "message": body["error"]["message"]}
            and r.headers["Retry-After"].isdigit() and int(r.headers["Retry-After"]) >= 1)


def test_two_containers_sharing_the_counter_let_a_key_through_no_more_than_its_minute_limit(
        client, limits, monkeypatch):
    limits(per_minute=20, quiet=3, lease=4)
    merchant = new_merchant(client)
    a, b = ratelimit.Container(), ratelimit.Container()
    answers = [in_container(monkeypatch, a if i % 2 == 0 else b, merchant) for i in range(40)]
    served = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    # Both containers turned busy, so every request they served is on the counter: exactly the limit.
    assert len(served) == 20
    assert all(is_rate_limited(r) for r in refused)
    assert {r.headers["Retry-After"] for r in refused} == {"45"}                 # to the window's end
    assert int(ThrottleModel.get(f"api_key#{_digest(merchant.key)}#{_window(START)}").hits) >= 20


def test_containers_that_stay_quiet_go_over_the_limit_by_at_most_their_quiet_allowance(
        client, limits, monkeypatch):
    limits(per_minute=20, quiet=3, lease=4)
    merchant = new_merchant(client)
    busy = ratelimit.Container()
    quiet = [ratelimit.Container() for _ in range(3)]
    statuses = [in_container(monkeypatch, c, merchant).status_code for c in quiet for _ in range(3)]
    statuses += [in_container(monkeypatch, busy, merchant).status_code for _ in range(30)]
    # The three quiet containers' 9 requests were never counted (within the bound limit + C x quiet, C = 4);
    # the busy container's were, its 3 quiet ones included.
    assert statuses.count(200) == 20 + 9
    assert statuses.count(200) <= 20 + 4 * 3
    assert statuses[-1] == 429


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=36),
       quiet=st.integers(min_value=0, max_value=4), lease=st.integers(min_value=1, max_value=6))
def test_however_requests_fall_across_three_containers_the_key_stays_within_the_documented_bound(
        client, limits, monkeypatch, order, quiet, lease):
    limit = 12
    limits(per_minute=limit, quiet=quiet, lease=lease)
    clock.advance(timedelta(minutes=1))                     # a fresh window (and counter) for each example
    merchant = new_merchant(client)
    containers = [ratelimit.Container() for _ in range(3)]
    statuses = [in_container(monkeypatch, containers[i], merchant).status_code for i in order]
    served, used = statuses.count(200), len(set(order))
    assert set(statuses) <= {200, 429}
    assert served <= limit + used * quiet                   # over by at most C x quiet
    if 429 in statuses:                                     # refused only once the counter was (nearly) spent:
        assert served >= limit - used * (lease - 1)         # leases claimed and not yet used elsewhere
    else:
        assert served == len(order)


def test_a_quiet_key_makes_no_counter_round_trip_and_a_busy_key_one_per_lease(client, limits):
    limits(per_minute=1500, quiet=5, lease=4)
    merchant = new_merchant(client)
    quiet_key = new_merchant(client, name="Quiet Shop", sub_mch_id="20000300")
    for m in (merchant, quiet_key):
        m.get(LIST)                                         # the key's first request reads it (then cached)
    with dynamodb_calls() as calls:
        assert [quiet_key.get(LIST).status_code for _ in range(4)] == [200] * 4
    assert calls.count("UpdateItem") == 0 and calls == ["Query"] * 4      # quiet: nothing but the route's own
    with dynamodb_calls() as calls:
        assert [merchant.get(LIST).status_code for _ in range(4 + 8)] == [200] * 12
    # Requests 6-9 are covered by the first claim (the 5 served uncounted + a lease of 4), 10-13 by the next.
    assert calls.count("UpdateItem") == 2
    assert int(ThrottleModel.get(f"api_key#{_digest(merchant.key)}#{_window(START)}").hits) == 5 + 4 + 4


def test_a_key_over_its_minute_limit_gets_429_with_retry_after_to_the_window_end_then_gets_in_again(
        client, limits, capsys, caplog):
    caplog.set_level(logging.INFO)
    limits(per_minute=6, quiet=2, lease=2)
    merchant = new_merchant(client)
    other = new_merchant(client, name="Other", sub_mch_id="20000200")
    assert [merchant.get(LIST).status_code for _ in range(6)] == [200] * 6
    capsys.readouterr()
    r = merchant.get(LIST)
    assert is_rate_limited(r) and r.headers["Retry-After"] == "45"
    assert "per_minute" not in r.body.decode() and merchant.key not in r.body.decode()
    assert [d["Scope"] for d in emf(capsys) if d.get("RateLimited") == 1] == ["api"]
    logged = [line for line in lines(caplog) if line.get("event") == "rate_limited"]
    assert logged and logged[-1]["scope"] == "api" and logged[-1]["retry_after"] == 45
    assert logged[-1]["merchant_id"] == merchant.merchant.id
    assert other.get(LIST).status_code == 200                                  # per key
    clock.advance(timedelta(seconds=44, milliseconds=500))
    r = merchant.get(LIST)
    assert is_rate_limited(r) and r.headers["Retry-After"] == "1"              # rounded up, never 0
    clock.advance(timedelta(milliseconds=500))                                 # the next minute
    assert [merchant.get(LIST).status_code for _ in range(7)] == [200] * 6 + [429]


def test_with_the_counter_store_down_every_request_is_served_and_the_failure_logged_and_counted(
        client, limits, capsys, caplog):
    caplog.set_level(logging.INFO)
    limits(per_minute=3, quiet=1, lease=4)
    merchant = new_merchant(client)
    merchant.get(LIST)
    ThrottleModel.delete_table()                                               # DynamoDB answers: no table
    capsys.readouterr()
    with dynamodb_calls() as calls:
        assert [merchant.get(LIST).status_code for _ in range(9)] == [200] * 9  # limit 3: failed open
    assert calls.count("UpdateItem") == 3          # one failed claim per lease (requests 2, 6 and 10), not per request
    failures = [rec for rec in caplog.records if rec.name == "kauri.events"
                and json.loads(rec.getMessage())["event"] == "rate_limit_counter_failed"]
    assert len(failures) == 3 and {rec.levelname for rec in failures} == {"ERROR"}
    assert json.loads(failures[0].getMessage())["error"] == "UpdateError"
    assert sum(1 for d in emf(capsys) if d.get("RateLimitCounterErrors") == 1) == 3


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _window(at: datetime) -> int:
    epoch = int(at.timestamp())
    return epoch - epoch % 60


def test_the_stage_settings_give_each_stage_its_per_key_limits():
    for stage, (per_second, burst, per_minute) in settings.RATE_LIMITS.items():
        s = settings.load({"KAURI_STAGE": stage})
        assert (s.rate_limit_per_second, s.rate_limit_burst, s.rate_limit_per_minute) == \
            (per_second, burst, per_minute)
        assert s.rate_limit_quiet == per_minute // 50 and s.rate_limit_lease == per_minute // 150
    s = settings.load({"KAURI_STAGE": "sandbox", "KAURI_RATE_LIMIT_PER_MINUTE": "300", "KAURI_RATE_LIMIT_QUIET": "0"})
    assert (s.rate_limit_per_minute, s.rate_limit_quiet, s.rate_limit_lease) == (300, 0, 2)


def test_a_per_second_limit_with_a_burst_below_one_request_is_refused_at_load_not_429_for_ever(
        client, limits, monkeypatch):
    """A bucket whose burst is under one token never holds a whole one: every request would be 429."""
    with pytest.raises(settings.SettingsError, match="KAURI_RATE_LIMIT_BURST"):
        settings.load({"KAURI_STAGE": "dev", "KAURI_RATE_LIMIT_PER_SECOND": "5", "KAURI_RATE_LIMIT_BURST": "0"})
    assert settings.load({"KAURI_STAGE": "dev", "KAURI_RATE_LIMIT_PER_SECOND": "0",
                          "KAURI_RATE_LIMIT_BURST": "0"}).rate_limit_per_second == 0   # off: no bucket at all
    limits(per_minute=0, quiet=0, lease=1, per_second=5, burst=1)
    merchant = new_merchant(client)
    assert in_container(monkeypatch, ratelimit.Container(), merchant).status_code == 200


def test_each_stage_policy_lets_its_functions_charge_that_stage_throttle_counters_only():
    from infra import gen_template

    for stage in ("dev", "sandbox", "prod"):
        policy = json.loads(gen_template.policy_path(stage).read_text())
        updating = [st for st in policy["Statement"] if "dynamodb:UpdateItem" in st["Action"]]
        resources = {r for st in updating for r in st["Resource"]}
        assert f"arn:aws:dynamodb:*:*:table/kauri-{stage}-throttle" in resources
        assert not any("throttle" in r and f"kauri-{stage}-" not in r for r in resources)
