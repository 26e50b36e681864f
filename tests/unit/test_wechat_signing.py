"""WeChat v2 signatures against every vector in the spec (§12 V1-V5) and the known wrong variants."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from chalicelib.channels.wechat import notify, signing, wire

KEY = "192006250b4c09247ec02edce69f6a2d"
APPID, MCH, SUB = "wxd930ea5d5a258f4f", "10000100", "20000100"

V1 = {"appid": APPID, "mch_id": MCH, "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}
V1_STRING = "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"

V2 = {
    "appid": APPID, "mch_id": MCH, "sub_mch_id": SUB, "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    "sign_type": "MD5", "body": "新西兰蜂蜜", "attach": "", "out_trade_no": "NZ20240101000001", "fee_type": "NZD",
    "total_fee": 1250, "spbill_create_ip": "203.0.113.10", "time_expire": "20240101123000",
    "notify_url": "https://pay.example.co.nz/wechat/notify", "trade_type": "NATIVE", "product_id": "SKU123",
}
V2_STRING = ("appid=wxd930ea5d5a258f4f&body=新西兰蜂蜜&fee_type=NZD&mch_id=10000100&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
             "&notify_url=https://pay.example.co.nz/wechat/notify&out_trade_no=NZ20240101000001&product_id=SKU123"
             "&sign_type=MD5&spbill_create_ip=203.0.113.10&sub_mch_id=20000100&time_expire=20240101123000"
             "&total_fee=1250&trade_type=NATIVE&key=192006250b4c09247ec02edce69f6a2d")

V4_XML = (
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg><appid><![CDATA[wxd930ea5d5a258f4f]]></appid>"
    "<mch_id><![CDATA[10000100]]></mch_id><sub_mch_id><![CDATA[20000100]]></sub_mch_id><nonce_str><![CDATA[Qk3Zp9dR7sT1uV5w]]></nonce_str>"
    "<sign><![CDATA[4AE5347569A9B769DDE5B986A1D316DE]]></sign><result_code><![CDATA[SUCCESS]]></result_code>"
    "<openid><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></openid><is_subscribe><![CDATA[N]]></is_subscribe>"
    "<trade_type><![CDATA[NATIVE]]></trade_type><bank_type><![CDATA[OTHERS]]></bank_type><total_fee>1250</total_fee>"
    "<fee_type><![CDATA[NZD]]></fee_type><cash_fee>5375</cash_fee><cash_fee_type><![CDATA[CNY]]></cash_fee_type>"
    "<rate><![CDATA[430000000]]></rate><transaction_id><![CDATA[4200000000202401010000000001]]></transaction_id>"
    "<out_trade_no><![CDATA[NZ20240101000001]]></out_trade_no><attach><![CDATA[]]></attach>"
    "<time_end><![CDATA[20240101120501]]></time_end></xml>"
).encode("utf-8")


def test_v1_string_to_sign_is_sorted_raw_and_keyed():
    assert signing.string_to_sign(V1, KEY) == V1_STRING + "&key=" + KEY


def test_v1_md5():
    assert signing.sign(V1, KEY, signing.MD5) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_v1_hmac_sha256_covers_the_key_suffix_too():
    assert signing.sign(V1, KEY, signing.HMAC_SHA256) == \
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"


def test_v1_wrong_variants_are_not_what_we_compute():
    ours = signing.sign(V1, KEY, signing.HMAC_SHA256)
    hmac_without_suffix = hmac.new(KEY.encode(), V1_STRING.encode(), hashlib.sha256).hexdigest().upper()
    plain_sha256 = hashlib.sha256((V1_STRING + "&key=" + KEY).encode()).hexdigest().upper()
    assert hmac_without_suffix.startswith("F734F0E6") and plain_sha256.startswith("7413C0B1")
    assert ours not in (hmac_without_suffix, plain_sha256)


def test_v2_nzd_native_unified_order_md5_drops_empty_attach():
    assert signing.string_to_sign(V2, KEY) == V2_STRING
    assert signing.sign(V2, KEY, signing.MD5) == "16B1480FD2C3AEC1DB777CBFED0FD9F4"


def test_v2_with_hmac_sign_type():
    params = {**V2, "sign_type": "HMAC-SHA256"}
    assert signing.sign(params, KEY, signing.HMAC_SHA256) == \
        "DB35FC71ECE564D12E9BE1597778875E16B9DA0C2E7FAA2996EF321ACDA483B9"


@pytest.mark.parametrize("sign_type,expected", [
    ("MD5", "E1894E187DA15BF0F9F0C91F3786A77B"),
    ("HMAC-SHA256", "CEE09F6970304D142875EE7E932F2B658CC81DC0317E0429ACEEE0000DFD0649"),
])
def test_v3_jsapi_pay_sign(sign_type, expected):
    params = {"appId": APPID, "timeStamp": "1700000000", "nonceStr": "e61463f8efa94090b1f366cccfbbb444",
              "package": "prepay_id=wx201411101639507cbf6ffd8b0779950874", "signType": sign_type}
    assert signing.sign(params, KEY, sign_type) == expected


def test_v4_notification_sign_verifies_over_parsed_xml():
    fields = wire.from_xml(V4_XML)
    assert fields["attach"] == "" and fields["total_fee"] == "1250"
    assert signing.sign(fields, KEY, signing.MD5) == "4AE5347569A9B769DDE5B986A1D316DE"
    assert signing.verify(fields, KEY, signing.MD5)
    assert signing.verify(fields, KEY, default_sign_type=None)  # 32 hex chars -> MD5


def test_v4_parses_into_a_paid_notification():
    cfg = _cfg()
    note = notify.parse(V4_XML, {}, cfg)
    p = note.payment
    assert note.kind == "payment" and p.status.value == "paid"
    assert p.amount.amount == 1250 and p.amount.currency == "NZD"
    assert p.payer_amount.amount == 5375 and p.payer_amount.currency == "CNY"
    assert str(p.rate) == "4.3"
    assert p.paid_at.isoformat() == "2024-01-01T04:05:01+00:00"
    assert p.merchant_channel_id == SUB and "sign" not in p.raw


@pytest.mark.parametrize("params,expected", [
    ({"appid": APPID, "mch_id": MCH, "sub_mch_id": SUB, "fee_type": "NZD", "date": "20240101"},
     "3C365A915A9682FC048D91B22E1EA982"),
    ({"appid": APPID, "mch_id": MCH, "sub_mch_id": SUB, "nonce_str": "21df7dc9cd8616b56919f20d9f679233",
      "bill_date": "20240101", "bill_type": "ALL"}, "5E79FF206086588B53394FFA0C4BF7F5"),
    ({"appid": APPID, "mch_id": MCH, "sub_mch_id": SUB, "nonce_str": "ec2316275641faa3aacf3cc599e8730f",
      "out_trade_no": "NZ20240101000001"}, "9AC1D10699F35A54D28D896138B9C32F"),
])
def test_v5_request_signatures(params, expected):
    assert signing.sign(params, KEY, signing.MD5) == expected


def test_verify_includes_unknown_fields_and_rejects_any_change():
    fields = {**V1, "brand_new_field": "x"}
    fields["sign"] = signing.sign(fields, KEY)
    assert signing.verify(fields, KEY)
    assert not signing.verify({**fields, "brand_new_field": "y"}, KEY)
    assert not signing.verify({**fields, "extra": "added"}, KEY)
    assert not signing.verify({k: v for k, v in fields.items() if k != "brand_new_field"}, KEY)


def test_verify_rejects_missing_sign_wrong_key_and_unknown_sign_type():
    signed = {**V1, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}
    assert signing.verify(signed, KEY)
    assert not signing.verify(V1, KEY)
    assert not signing.verify({**V1, "sign": ""}, KEY)
    assert not signing.verify(signed, "0" * 32)
    assert not signing.verify(signed, "")
    assert not signing.verify({**signed, "sign_type": "SHA1"}, KEY)


def test_verify_uses_the_messages_sign_type_over_the_callers_default():
    params = {**V2, "sign_type": "HMAC-SHA256"}
    params["sign"] = signing.sign(params, KEY, signing.HMAC_SHA256)
    assert signing.verify(params, KEY, default_sign_type=signing.MD5)
    md5_signed = {**V1, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}
    assert not signing.verify(md5_signed, KEY, default_sign_type=signing.HMAC_SHA256)


def test_sign_refuses_an_empty_key_and_unknown_algorithms():
    with pytest.raises(ValueError):
        signing.sign(V1, "")
    with pytest.raises(ValueError):
        signing.sign(V1, KEY, "SHA1")


def _cfg():
    from chalicelib.settings import WeChatSettings

    return WeChatSettings(appid=APPID, mch_id=MCH, api_key=KEY, base_url="http://x", sign_type="MD5",
                          cert_path="", key_path="")


# req_info of a refund result notification. Vector made with the openssl CLI, independent of our code:
#   printf '%s' "$PLAIN" | openssl enc -aes-256-ecb -K <hex of md5hex(key)> -nosalt | base64 -w0
REQ_INFO_KEY = "192006250b4c09247ec02edce69f6a2d"
REQ_INFO_PLAIN = (b"<root><out_refund_no><![CDATA[re_0001]]></out_refund_no>"
                  b"<refund_status><![CDATA[SUCCESS]]></refund_status></root>")
REQ_INFO_VECTOR = ("WBzGpzQuNpcFxIlFjUUD9Bvm52FmMclIn5y2Vn+VZvD77zdBY9bRLJ9aLudmB1M4nnTcLS/xSYHKrfc9f+CF8BASaFCraSflIz4+"
                   "GGf+RSjxhIafwPjdps6+q3UFM+qAJ8sZLOWzhw85opoArYLyYUkNM1N4ZQpIKyd1tOZsUxE=")


def test_req_info_key_is_the_lowercase_hex_md5_of_the_api_key():
    assert signing.req_info_key(REQ_INFO_KEY) == b"d96eb16afdd491fa1e705096edbc2205"


def test_req_info_decrypts_the_openssl_vector_and_encrypts_back_to_it():
    assert signing.decrypt_req_info(REQ_INFO_VECTOR, REQ_INFO_KEY) == REQ_INFO_PLAIN
    assert signing.encrypt_req_info(REQ_INFO_PLAIN, REQ_INFO_KEY) == REQ_INFO_VECTOR


@pytest.mark.parametrize("text", ["", "not base64!", "QUJD", REQ_INFO_VECTOR[:-4] + "AAA="])
def test_req_info_that_is_not_ours_raises(text):
    with pytest.raises(signing.ReqInfoError):
        signing.decrypt_req_info(text, REQ_INFO_KEY)


def test_req_info_under_another_key_does_not_decrypt():
    with pytest.raises(signing.ReqInfoError):
        signing.decrypt_req_info(REQ_INFO_VECTOR, "0" * 32)
