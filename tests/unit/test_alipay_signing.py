"""Alipay MAPI signing against every test vector in specs/alipay.md §1.4."""
from __future__ import annotations

import pytest

from chalicelib.channels.alipay import signing

KEY = "760bdzec6y9goq7ctyx96ezkz78287de"
PARTNER = "2088101122136241"

# Public test key from the Kaligo/alipay-global gem (keys/test_private_key.pem); spec §1.4 vectors use it.
KAL_TEST_PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAxF1vOOysBibP9gquwCqjCigUBIGZpPsTiAyeGvt38NRwixPI
56wZgVvCMp02pVBWH7np99Qi91Axg1/A7j1z4MAqBru6XNPgn2LLIEv8xuSvJ0mI
YeB1MXZOttD2tsaNgFdU0LQsSz+HEicSfh5/1xJ5nCwQmJg/2AIGOL1igcAkqCct
cs4umwK9GFQ1FROsqz4OXUbjzByuCxmY9C5r4ALAycmjKhsy9luE1Pp9VEzT0jeJ
xfAH0vAPkGCqNv50swxJ6n+s98/ves/XmxXL3dIxAW/6RvmriNXwANsuwyn0DMsv
u1nFMZIxeCUvfwmrwkpGb5lHFBvW9pTbOCOMIwIDAQABAoIBACjRX0hO8idJNBtp
9w9dDY0T7a1OH1kLE/FI5iinszPthQNz9mQqAxc/squAwJY2j+CCbd8lSqtsEQ7E
/b7IKWlDqLjDlyaqqFuZVq38/at+Z+Zbw6zM0q+Ybx5Ta6Vsuoc+IBROD5MIvpQI
aTCsOFjFr1/GTSDbLRJCwXZT78EWiYMDnDscmvAQ/3A7c+2uQcMUAUMsPZ1gi0WY
2IdNetD9D2bwowYwoCJ82BKlciqxx2bL9ue3KnFea01pvQFisOjO69421C1baqV2
6ghT001ghrL80SvG7SNuArEGSqm+WeUC3/BoeK1/1BEsrgiXFVZZvvrMcQwWWetk
JOkJTskCgYEA6DfE2a44tdIN2spg4Wl5O/pRAA4cnpBsKCL/RYTaIXmHj5tDyqlO
oRrJuVQBesv2WDxTwaqRDA7Wbro3jtWObKHtXiiPNKw4bb2OpODdIlJXLLvRpXkq
PhiO1+0RaBX3TGyVs+JJvNWZVAj03IeMNfzjZq18fkLwDYw1PUqgNrcCgYEA2Hmv
B9Ee/SkFbheM6KYYBGNSCU6qxb0C6aaOFKrq8Ryml/3Li4Q+nFwzDiFQHPhM0m4e
mv5y/mMGR2jnkn/KwKYa3jTICp+F/ilkAop0k8yKcXrdVkb/Fb/lQw2pkqkLbKaG
/Ao20TS+hlWjAZfpvU2aVqS215PTyO6I4L9zSfUCgYEA5djtexi7ARycogbWxcaE
PR2Stx9ArKH+q+uYB9NrpN6Jk1b3Ts0uCsBdEpdXr5faiZOMw5B0aR72mDqxaytu
AZB1RlGXDWe5osWRPxljR+mAZ8Kvy72WVkgwewEnzYKQeJCxzI8atVImpcsHspBn
87gPzT3Cj6bpvD8fIz+OPRkCgYAdMINGdY9NKavexXQtpr/UT6QvNxlV4n+zC89a
wBU//9IC6qj4nhNnOBN2U02fKmgJc+nSkn7lCGs/U8jt+ydWxM8YqVtT+2Cw/dnL
cen4R/tfA+c2jAo3X5HFceEssnik5OuMrr/ng8oxCPka7OYKrZ0jE8DH3toO3QM9
8vLTxQKBgQDTQSlorlACRywudw2KE4Li7yRM9CodwBnIJPGze8N+54f3uxxc39AZ
9jT6UeK/vaiuD9VrPxF5Ze4/ZPaHctMy5O2uD4m+zPTBQo/uUGBg4m++i8b3PWfx
e8OjaXP26YiACWG/RRan8R0ZRPy8M/zLgFJUMiNrSrxchUrVXoiM4w==
-----END RSA PRIVATE KEY-----
"""

_TRADE = dict(_input_charset="utf-8", partner=PARTNER, notify_url="https://example.com/notify",
              subject="product_name", out_trade_no="12345", total_fee="350.45", currency="USD",
              supplier="company_name")

MD5_VECTORS = [
    ("create_forex_trade", dict(_TRADE, service="create_forex_trade"), "2dd75a3023c0a3a795a83109966bbc7d"),
    ("create_forex_trade_wap", dict(_TRADE, service="create_forex_trade_wap"), "c19f42a597963f118c4f99f2fc7f716f"),
    ("single_trade_query", dict(service="single_trade_query", _input_charset="utf-8", partner=PARTNER,
                                out_trade_no="SAMPLE_TRANSACTION_ID"), "d4d3825356fd0799ee16829acffc1460"),
    ("forex_refund", dict(service="forex_refund", _input_charset="utf-8", partner=PARTNER,
                          out_return_no="SAMPLE_REFUND_ID", out_trade_no="SAMPLE_TRANSACTION_ID",
                          return_rmb_amount="200.00", reason="hello", gmt_return="20150320120000",
                          currency="USD"), "a77e894e71491f41e73ebe40319cc300"),
    ("forex_rate_file", dict(service="forex_rate_file", partner=PARTNER), "4051af1716d522b47acff927d4fb9781"),
    ("forex_compare_file", dict(service="forex_compare_file", partner=PARTNER, start_date="20120202",
                                end_date="20120205"), "3d09abe0980696bb39bb72c6137266ca"),
    ("forex_liquidation_file", dict(service="forex_liquidation_file", partner=PARTNER, start_date="20120202",
                                    end_date="20120205"), "68c26fcba73dc3134bc88bb04a8be865"),
    ("notification", dict(notify_id="13f1e773aeb299e26eb5d02bbb71219d50", notify_type="trade_status_sync",
                          trade_no="4061800001000100000574688", total_fee="0.10", out_trade_no="4028608899131221",
                          currency="HKD", notify_time="2013-09-02 10:41:43", trade_status="TRADE_FINISHED",
                          _input_charset="utf-8"), "a27572b0a6dee50d2d4a1449bfd55e92"),
]

NZD_PARAMS = dict(service="create_forex_trade", partner=PARTNER, _input_charset="utf-8",
                  notify_url="https://gw.example.co.nz/alipay/notify",
                  return_url="https://shop.example.co.nz/alipay/return",
                  subject="奇异果 Kiwifruit x2", out_trade_no="NZ20240101000001", currency="NZD",
                  total_fee="25.50", product_code="NEW_OVERSEAS_SELLER", timeout_rule="30m", body="")
NZD_PRESIGN = ("_input_charset=utf-8&currency=NZD&notify_url=https://gw.example.co.nz/alipay/notify"
               "&out_trade_no=NZ20240101000001&partner=2088101122136241&product_code=NEW_OVERSEAS_SELLER"
               "&return_url=https://shop.example.co.nz/alipay/return&service=create_forex_trade"
               "&subject=奇异果 Kiwifruit x2&timeout_rule=30m&total_fee=25.50")
NZD_REDIRECT = ("https://mapi.alipay.com/gateway.do?service=create_forex_trade&partner=2088101122136241"
                "&_input_charset=utf-8&notify_url=https%3A%2F%2Fgw.example.co.nz%2Falipay%2Fnotify"
                "&return_url=https%3A%2F%2Fshop.example.co.nz%2Falipay%2Freturn"
                "&subject=%E5%A5%87%E5%BC%82%E6%9E%9C+Kiwifruit+x2&out_trade_no=NZ20240101000001"
                "&currency=NZD&total_fee=25.50&product_code=NEW_OVERSEAS_SELLER&timeout_rule=30m"
                "&sign=3c79195acb887e8f9e03c174fc9d4181&sign_type=MD5")
NZD_NOTIFY = dict(currency="NZD", notify_id="a1b2c3d4e5f60718293a4b5c6d7e8f90ab", notify_time="2024-01-01 12:05:30",
                  notify_type="trade_status_sync", out_trade_no="NZ20240101000001", total_fee="25.50",
                  trade_no="2024010121001003920500000001", trade_status="TRADE_FINISHED")
NZD_NOTIFY_PRESIGN = ("currency=NZD&notify_id=a1b2c3d4e5f60718293a4b5c6d7e8f90ab&notify_time=2024-01-01 12:05:30"
                      "&notify_type=trade_status_sync&out_trade_no=NZ20240101000001&total_fee=25.50"
                      "&trade_no=2024010121001003920500000001&trade_status=TRADE_FINISHED")

KAL_RSA_TEXT = ("_input_charset=gbk&out_trade_no=6741334835157966&partner=2088101568338364&payment_type=1"
                "&return_url=http://www.test.com/alipay/return_url.asp&currency=USD&service=create_forex_trade"
                "&subject=a book&bodu=nice book&total_fee=100")
KAL_RSA_SIGNATURE = (
    "i6GcANd+q8dTGY5kif3ClSqQbysmvPwf+gFowbB+ukKLKdcd4dlEUAWKlirK"
    "BviHoJwydMkUwavi5XvUieU6582UdqrlZgz1UlRSgL5NHSv7DWckhnYL7IKL"
    "2sTHb5derwrhjcJD/diYSnAMA0K+sRwVZ6Rs4fvQH3NN7sY4x0rb5W54QkPe"
    "CLqI+MzTggrcfqme2Grx19jOXSigETGWAm74CoI2lztlNgEjBpuqTmXHaBz1"
    "J968XI9hVBj2mGnHU4EXj5hPSY/bFK2gVItOQ3w5RbTQCgjdpBYkM1LwTOlc"
    "u1/BlmWuUh82NGEK/qBrmne6z/W4GnG+6sqoAERA4g==")
NZD_RSA2_SIGNATURE = (
    "DJ9eJZ+kp11YeDXsC6ItzxmhJpJ9OURucFcg0S2YNsyCGbQfPKqhtL2dkF3iyEtEKsRoGrQYXfHPe48rZ9xsJ7UGXY9WrrU31+rjzHWx"
    "8POCzR1tM6fLN7RzbHIWqBKMpWZimV7+sw8VIon06jFPOTjMo/4C9LmwqjRdUvAo1F7Q/957ZOweXvQdvNCMqBLfUxc1ZBTyoKeHDL2C"
    "IpM3IxsEGl4ipTaUwzlAFTSoo5O3CyGnEbqy16LCPshK2yZmlqZ91dB3y719PqkoaMfFniTlLmE2J7MFx6wqL7QGsetguz50ka4Zrgt5"
    "GDTYsFQOh/NKRpZ9SkJHk18psM1HVw==")


@pytest.mark.parametrize("name,params,expected", MD5_VECTORS, ids=[v[0] for v in MD5_VECTORS])
def test_published_md5_vectors(name, params, expected):
    assert signing.md5_sign(params, KEY) == expected
    assert signing.verify(dict(params, sign=expected, sign_type="MD5"), "MD5", md5_key=KEY)


def test_nzd_presign_drops_empty_body_and_sorts_input_charset_first():
    assert signing.presign(NZD_PARAMS) == NZD_PRESIGN
    assert signing.presign(dict(NZD_PARAMS, sign="x", sign_type="MD5")) == NZD_PRESIGN


def test_nzd_md5_vector_and_redirect_url():
    from urllib.parse import urlencode

    assert signing.md5_sign(NZD_PARAMS, KEY) == "3c79195acb887e8f9e03c174fc9d4181"
    ordered = {k: v for k, v in NZD_PARAMS.items() if v}
    url = "https://mapi.alipay.com/gateway.do?" + urlencode(
        {**ordered, "sign": signing.md5_sign(NZD_PARAMS, KEY), "sign_type": "MD5"})
    assert url == NZD_REDIRECT


def test_nzd_notification_vector():
    assert signing.presign(NZD_NOTIFY) == NZD_NOTIFY_PRESIGN
    assert signing.md5_sign(NZD_NOTIFY, KEY) == "2ae0c47551540b941e3dbc3ad5465bf7"


def test_md5_verify_rejects_wrong_signature_and_wrong_key():
    good = dict(NZD_NOTIFY, sign="2ae0c47551540b941e3dbc3ad5465bf7", sign_type="MD5")
    assert signing.verify(good, "MD5", md5_key=KEY)
    assert not signing.verify(dict(good, total_fee="2550.00"), "MD5", md5_key=KEY)
    assert not signing.verify(good, "MD5", md5_key=KEY[:-1] + "x")
    assert not signing.verify(good, "MD5", md5_key="")
    assert not signing.verify(dict(good, sign=""), "MD5", md5_key=KEY)


def test_kal_rsa_vector_is_really_rsa2_sha256():
    assert signing.rsa_sign_text(KAL_RSA_TEXT, KAL_TEST_PRIVATE_KEY, "RSA2") == KAL_RSA_SIGNATURE
    assert signing.rsa_sign_text(KAL_RSA_TEXT, KAL_TEST_PRIVATE_KEY, "RSA") != KAL_RSA_SIGNATURE
    public = signing.public_pem_of(KAL_TEST_PRIVATE_KEY)
    assert signing.verify_text(KAL_RSA_TEXT, KAL_RSA_SIGNATURE, "RSA2", public_pem=public)
    assert not signing.verify_text(KAL_RSA_TEXT, "mike" + KAL_RSA_SIGNATURE, "RSA2", public_pem=public)


def test_nzd_rsa2_vector():
    assert signing.sign(NZD_PARAMS, "RSA2", private_pem=KAL_TEST_PRIVATE_KEY) == NZD_RSA2_SIGNATURE
    public = signing.public_pem_of(KAL_TEST_PRIVATE_KEY)
    assert signing.verify(dict(NZD_PARAMS, sign=NZD_RSA2_SIGNATURE, sign_type="RSA2"), "RSA2", public_pem=public)


def test_rsa2_verify_tolerates_plus_decoded_as_space_and_rejects_tampering():
    public = signing.public_pem_of(KAL_TEST_PRIVATE_KEY)
    spaced = NZD_RSA2_SIGNATURE.replace("+", " ")
    assert signing.verify_text(NZD_PRESIGN, spaced, "RSA2", public_pem=public)
    assert not signing.verify_text(NZD_PRESIGN.replace("25.50", "2.50"), NZD_RSA2_SIGNATURE, "RSA2", public_pem=public)
    assert not signing.verify_text(NZD_PRESIGN, "not base64!!", "RSA2", public_pem=public)
    assert not signing.verify_text(NZD_PRESIGN, NZD_RSA2_SIGNATURE, "RSA2", public_pem="")
    assert not signing.verify_text(NZD_PRESIGN, NZD_RSA2_SIGNATURE, "DSA", public_pem=public)


def test_rsa_sha1_round_trip():
    sig = signing.sign(NZD_PARAMS, "RSA", private_pem=KAL_TEST_PRIVATE_KEY)
    public = signing.public_pem_of(KAL_TEST_PRIVATE_KEY)
    assert signing.verify(dict(NZD_PARAMS, sign=sig), "RSA", public_pem=public)
    assert not signing.verify(dict(NZD_PARAMS, sign=sig), "RSA2", public_pem=public)


def test_signed_adds_sign_and_type_and_drops_empty_values():
    out = signing.signed(NZD_PARAMS, "MD5", md5_key=KEY)
    assert "body" not in out and out["sign_type"] == "MD5"
    assert out["sign"] == "3c79195acb887e8f9e03c174fc9d4181"


def test_missing_keys_are_a_signature_error_not_a_crash():
    with pytest.raises(signing.SignatureError):
        signing.sign(NZD_PARAMS, "MD5", md5_key="")
    with pytest.raises(signing.SignatureError):
        signing.sign(NZD_PARAMS, "RSA2", private_pem="")
    with pytest.raises(signing.SignatureError):
        signing.sign(NZD_PARAMS, "DSA", md5_key=KEY)


def test_sandbox_default_keys_form_working_pairs():
    from chalicelib import settings

    s = settings.load({"KAURI_STAGE": "dev"}).alipay
    sig = signing.sign(NZD_PARAMS, "RSA2", private_pem=s.private_key_pem)
    assert signing.verify(dict(NZD_PARAMS, sign=sig), "RSA2", public_pem=signing.public_pem_of(s.private_key_pem))
    assert s.md5_key == KEY
    prod = settings.load({"KAURI_STAGE": "prod"}).alipay
    assert prod.md5_key == "" and prod.private_key_pem == "" and prod.alipay_public_key_pem == ""
