"""A faithful WeChat Pay v2 server (institution mode), mounted at /sandbox/wechat in non-prod stages.

Same paths, XML, signatures and error shapes as the real thing (spec §3-§11, checklist §17), plus
test hooks under /simulate: `pay` (the shopper pays: state, notification) and `pump` (retries).
State lives in chalicelib.store.sandbox, imported inside handlers (pynamodb is slow to import).
"""
from __future__ import annotations

import ipaddress
import json
import re
import secrets
import zlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import urlsplit

from chalice import Blueprint, Response

from chalicelib import clock, egress, log, settings
from chalicelib.channels.wechat import signing, wire
from chalicelib.money import Money, bps_of, convert, rate_from_e8

blueprint = Blueprint(__name__)

# WeChat reads every API body as XML whatever the Content-Type says, and popular clients send none
# (chalice then assumes application/json) or a form/plain one: accept all of them, as WeChat does.
REQUEST_TYPES = ["text/xml", "application/xml", "application/json", "application/x-www-form-urlencoded",
             "text/plain", "application/octet-stream"]
NOTIFY_QUEUE = "wechat#notify"
REFUND_NOTIFY_QUEUE = "wechat#refund_notify"   # refund result notifications, sent once a refund is final
# Notification retry intervals after the first attempt (spec §8, current wording: 24h4m in total).
RETRY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
# The sandbox's daily rates: CNY per one unit of the pricing currency, x 10^8.
RATES_E8 = {
    "NZD": 430000000, "AUD": 470000000, "USD": 717420000, "HKD": 92000000, "GBP": 910000000,
    "EUR": 780000000, "SGD": 530000000, "CAD": 520000000, "JPY": 4800000, "KRW": 540000,
    "CNY": 100000000,
}
FEE_BPS = 200                      # the sandbox's merchant fee in the bill: 2.00%
PREPAY_TTL = timedelta(hours=2)    # prepay_id and code_url
MWEB_TTL = timedelta(minutes=5)
REFUND_SETTLE = timedelta(seconds=10)   # PROCESSING -> SUCCESS after this
REFUND_WINDOW = timedelta(days=365)
MAX_REFUNDS = 50
MAX_JSON_BYTES = 64 * 1024

_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{1,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_POSITIVE = re.compile(r"[1-9][0-9]{0,11}")
_DIGITS = re.compile(r"[0-9]{1,32}")
_NONCE = re.compile(r"[0-9A-Za-z]{1,32}")
_DESC = {"SUCCESS": "支付成功", "REFUND": "转入退款", "NOTPAY": "订单未支付", "CLOSED": "订单已关闭",
         "PAYERROR": "支付失败"}
_PAID = ("SUCCESS", "REFUND")


class _Fail(Exception):
    """Protocol-level failure: return_code FAIL, unsigned."""

    def __init__(self, msg: str):
        super().__init__(msg)
        self.msg = msg


class _Refuse(Exception):
    """Business-level failure: return_code SUCCESS, result_code FAIL with err_code, signed."""

    def __init__(self, code: str, des: str):
        super().__init__(code)
        self.code = code
        self.des = des


class _SimError(Exception):
    def __init__(self, status: int, code: str, message: str = ""):
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


# ---- plumbing --------------------------------------------------------------------------------

def _store():
    from chalicelib.store import sandbox as store

    return store


def _cfg() -> settings.WeChatSettings:
    return settings.get().sandbox_account("wechat")


def _pk(kind: str, key: str) -> str:
    return f"wechat#{kind}#{_cfg().mch_id}#{key}"


def _xml(fields: dict[str, Any]) -> Response:
    return Response(body=wire.to_xml(fields).decode("utf-8"), status_code=200,
                    headers={"Content-Type": "text/xml; charset=utf-8"})


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _alnum(n: int) -> str:
    return "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _read_request(need_nonce: bool) -> tuple[dict[str, str], str]:
    raw = blueprint.current_request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not raw.strip():
        raise _Fail("post数据为空")
    try:
        fields = wire.from_xml(raw)
    except wire.WireError:
        raise _Fail("XML格式错误") from None
    cfg = _cfg()
    for name in ("appid", "mch_id"):
        if not fields.get(name):
            raise _Fail(f"缺少参数{name}")
    if fields["appid"] != cfg.appid or fields["mch_id"] != cfg.mch_id:
        raise _Fail("appid和mch_id不匹配")
    if need_nonce and not _NONCE.fullmatch(fields.get("nonce_str", "")):
        raise _Fail("nonce_str参数格式错误")
    if not fields.get("sign"):
        raise _Fail("缺少参数sign")
    sign_type = fields.get("sign_type") or signing.MD5
    if sign_type not in signing.SIGN_TYPES:
        raise _Fail("sign_type参数格式错误")
    if not signing.verify(fields, cfg.api_key, signing.MD5):
        raise _Fail("签名失败")
    return fields, sign_type


def _answer(req: dict[str, str], sign_type: str, fields: dict[str, Any], with_nonce: bool = True) -> Response:
    cfg = _cfg()
    out: dict[str, Any] = {"return_code": "SUCCESS", "return_msg": "OK", "appid": cfg.appid, "mch_id": cfg.mch_id}
    if req.get("sub_mch_id"):
        out["sub_mch_id"] = req["sub_mch_id"]
    if with_nonce:
        out["nonce_str"] = _alnum(16)
    out.update({k: v for k, v in fields.items() if v is not None})
    out["sign"] = signing.sign(wire.signable(out), cfg.api_key, sign_type)
    return _xml(out)


def _serve(handler: Callable[[dict[str, str]], Any], need_nonce: bool = True, result: bool = True) -> Response:
    """Read, authenticate, run `handler`, answer as WeChat would. Never a 500."""
    try:
        req, sign_type = _read_request(need_nonce)
        try:
            fields = handler(req)
        except _Refuse as refusal:
            return _answer(req, sign_type, {"result_code": "FAIL", "err_code": refusal.code,
                                            "err_code_des": refusal.des})
        if isinstance(fields, Response):
            return fields
        if result:
            fields = {"result_code": "SUCCESS", **fields}
        return _answer(req, sign_type, fields, with_nonce=need_nonce)
    except _Fail as failure:
        return _xml({"return_code": "FAIL", "return_msg": failure.msg})
    except Exception as exc:  # a simulator bug must still look like WeChat, not a stack trace
        log.error("wechat_sandbox_error", error=type(exc).__name__)
        return _xml({"return_code": "FAIL", "return_msg": "系统繁忙,请稍后再试"})


def _require(req: dict[str, str], *names: str) -> None:
    for name in names:
        if not req.get(name):
            raise _Refuse("LACK_PARAMS", f"缺少参数{name}")


def _check(ok: bool, des: str, code: str = "PARAM_ERROR") -> None:
    if not ok:
        raise _Refuse(code, des)


def _state(order: dict[str, Any], now: datetime) -> str:
    """trade_state now: an unpaid order past its time_expire is closed."""
    state = order["trade_state"]
    if state in ("NOTPAY", "PAYERROR") and order.get("expire_at") and _epoch(now) >= order["expire_at"]:
        return "CLOSED"
    return state


def _load_order(req: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The order named by transaction_id (wins) or out_trade_no, for this sub_mch_id."""
    store = _store()
    out_trade_no = req.get("out_trade_no", "")
    if req.get("transaction_id"):
        link = store.get(_pk("txn", req["transaction_id"])) if _DIGITS.fullmatch(req["transaction_id"]) else None
        if link is None:
            raise _Refuse("ORDERNOTEXIST", "订单不存在")
        out_trade_no = link["out_trade_no"]
    if not out_trade_no:
        raise _Refuse("LACK_PARAMS", "缺少参数out_trade_no或transaction_id")
    pk = _pk("order", out_trade_no)
    order = store.get(pk) if _OUT_TRADE_NO.fullmatch(out_trade_no) else None
    if order is None or order["sub_mch_id"] != req.get("sub_mch_id"):
        raise _Refuse("ORDERNOTEXIST", "订单不存在")
    return pk, order


DAY_SHARDS = 16  # a day's bill index is spread over records so concurrent payments rarely touch the same one


def _day_pk(day: str, key: str) -> str:
    return _pk("day", f"{day}#{zlib.crc32(key.encode('utf-8')) % DAY_SHARDS}")


def _day_adding(kind: str, item: Any) -> Callable[[dict[str, Any] | None], dict[str, Any] | None]:
    def add(d: dict[str, Any] | None) -> dict[str, Any] | None:
        d = d or {"orders": [], "refunds": []}
        return None if item in d[kind] else {**d, kind: d[kind] + [item]}
    return add


def _add_to_day(day: str, kind: str, item: Any) -> None:
    store = _store()
    pk = _day_pk(day, item if isinstance(item, str) else item[0])
    store.create(pk, {"orders": [], "refunds": []})
    store.update(pk, _day_adding(kind, item))


def _day(day: str) -> dict[str, list]:
    shards = [_store().get(_pk("day", f"{day}#{n}")) for n in range(DAY_SHARDS)]
    return {kind: [x for d in shards if d for x in d[kind]] for kind in ("orders", "refunds")}


# ---- unified order ---------------------------------------------------------------------------

def _notify_url_ok(text: str) -> bool:
    """Absolute http(s), no query, and a receiver chalicelib.egress lets us POST to."""
    try:
        url = urlsplit(text)
    except ValueError:
        return False
    if not url.hostname or url.query or len(text) > 256:
        return False
    try:
        egress.check(text)
    except egress.Refused:
        return False
    return True


def _validate_order(req: dict[str, str], now: datetime) -> None:
    _require(req, "sub_mch_id", "body", "out_trade_no", "fee_type", "total_fee", "spbill_create_ip",
             "notify_url", "trade_type")
    _check(bool(_DIGITS.fullmatch(req["sub_mch_id"])), "sub_mch_id参数格式错误")
    _check(len(req["body"]) <= 127, "body参数长度有误")
    _check(bool(_OUT_TRADE_NO.fullmatch(req["out_trade_no"])), "商户订单号只能是数字、大小写字母_-|*且不超过32位")
    _check(bool(_POSITIVE.fullmatch(req["total_fee"])), "invalid total_fee")
    _check(req["fee_type"] in RATES_E8, "invalid fee_type")
    _check(req["trade_type"] in ("NATIVE", "JSAPI", "MWEB", "APP"), "invalid trade_type")
    _check(len(req.get("attach", "")) <= 127, "attach参数长度有误")
    _check(len(req.get("device_info", "")) <= 32, "device_info参数长度有误")
    try:
        ipaddress.ip_address(req["spbill_create_ip"])
    except ValueError:
        raise _Refuse("PARAM_ERROR", "invalid spbill_create_ip") from None
    _check(_notify_url_ok(req["notify_url"]), "invalid notify_url")
    for name in ("time_start", "time_expire"):
        if req.get(name):
            try:
                wire.parse_time(req[name])
            except ValueError:
                raise _Refuse("PARAM_ERROR", f"{name}参数格式错误") from None
    if req.get("time_expire"):
        _check(wire.parse_time(req["time_expire"]) >= now + timedelta(minutes=1), "time_expire时间过短")
    trade_type = req["trade_type"]
    if trade_type == "NATIVE":
        _check(0 < len(req.get("product_id", "")) <= 32, "trade_type=NATIVE时，product_id为必填参数")
    elif trade_type == "JSAPI":
        _check(bool(req.get("openid") or req.get("sub_openid")), "JSAPI支付必须传openid")
        _check(not req.get("sub_openid") or bool(req.get("sub_appid")), "缺少参数sub_appid")
    elif trade_type == "MWEB":
        try:
            scene = json.loads(req.get("scene_info", ""))
            ok = isinstance(scene, dict) and isinstance(scene.get("h5_info"), dict)
        except ValueError:
            ok = False
        _check(ok, "scene_info参数格式错误")


def _issue(trade_type: str, now: datetime) -> dict[str, Any]:
    """Fresh prepay_id (+ code_url / mweb_url) in WeChat's shapes, and when they stop working."""
    prepay_id = "wx" + wire.format_time(now) + secrets.token_hex(10)
    issued: dict[str, Any] = {"prepay_id": prepay_id, "prepay_expires_at": _epoch(now + PREPAY_TTL)}
    if trade_type == "NATIVE":
        issued["code_url"] = "weixin://wxpay/bizpayurl?pr=" + _alnum(7)
    elif trade_type == "MWEB":
        issued["mweb_url"] = ("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id="
                              f"{prepay_id}&package={_digits(10)}")
        issued["prepay_expires_at"] = _epoch(now + MWEB_TTL)
    return issued


def _unifiedorder(req: dict[str, str]) -> dict[str, Any]:
    store = _store()
    now = clock.now()
    _validate_order(req, now)
    params = {k: v for k, v in req.items() if k not in ("nonce_str", "sign", "sign_type")}
    issued = _issue(req["trade_type"], now)
    pk = _pk("order", req["out_trade_no"])
    order = {
        "params": params,
        "out_trade_no": req["out_trade_no"],
        "sub_mch_id": req["sub_mch_id"],
        "trade_type": req["trade_type"],
        "total_fee": int(req["total_fee"]),
        "fee_type": req["fee_type"],
        "sign_type": req.get("sign_type") or signing.MD5,
        "trade_state": "NOTPAY",
        "created_at": _epoch(now),
        "expire_at": _epoch(wire.parse_time(req["time_expire"])) if req.get("time_expire") else None,
        "refunds": [],
        **issued,
    }
    if not store.create(pk, order):
        def reenter(existing: dict[str, Any]) -> dict[str, Any]:
            state = _state(existing, now)
            if state in _PAID:
                raise _Refuse("ORDERPAID", "该订单已支付")
            if state in ("CLOSED", "REVOKED"):
                raise _Refuse("ORDERCLOSED", "该订单已关闭")
            if existing["params"] != params:
                raise _Refuse("OUT_TRADE_NO_USED", "商户订单号重复")
            return {**existing, **issued}  # identical re-entry: fresh prepay_id / url

        store.update(pk, reenter)
    answer = {"trade_type": req["trade_type"], "prepay_id": issued["prepay_id"],
              "code_url": issued.get("code_url"), "mweb_url": issued.get("mweb_url")}
    if req.get("device_info"):
        answer["device_info"] = req["device_info"]
    return answer


# ---- query / close ---------------------------------------------------------------------------

def _order_fields(order: dict[str, Any], now: datetime) -> dict[str, Any]:
    params = order["params"]
    state = _state(order, now)
    out: dict[str, Any] = {
        "device_info": params.get("device_info"),
        "trade_type": order["trade_type"],
        "trade_state": state,
        "trade_state_desc": _DESC.get(state, state),
        "total_fee": order["total_fee"],
        "fee_type": order["fee_type"],
        "out_trade_no": order["out_trade_no"],
        "attach": params.get("attach", ""),
    }
    if order.get("transaction_id"):
        out.update({
            "openid": order["openid"], "is_subscribe": "N", "sub_appid": params.get("sub_appid"),
            "sub_openid": params.get("sub_openid"), "bank_type": "OTHERS", "transaction_id": order["transaction_id"],
            "time_end": order["time_end"],
        })
    if state in _PAID:
        out.update({"cash_fee": order["cash_fee"], "cash_fee_type": "CNY", "rate": str(order["rate"])})
    return out


def _orderquery(req: dict[str, str]) -> dict[str, Any]:
    _require(req, "sub_mch_id")
    _, order = _load_order(req)
    return _order_fields(order, clock.now())


def _closeorder(req: dict[str, str]) -> dict[str, Any]:
    _require(req, "sub_mch_id", "out_trade_no")
    pk, _ = _load_order(req)
    now = clock.now()

    def close(order: dict[str, Any]) -> dict[str, Any]:
        state = _state(order, now)
        if state in _PAID:
            raise _Refuse("ORDERPAID", "该订单已支付")
        if state in ("CLOSED", "REVOKED"):
            raise _Refuse("ORDERCLOSED", "该订单已关闭")
        return {**order, "trade_state": "CLOSED", "closed_at": _epoch(now)}

    _store().update(pk, close)
    return {"result_msg": "OK"}


# ---- refunds ---------------------------------------------------------------------------------

def _refund_status(refund: dict[str, Any], now: datetime) -> str:
    if refund.get("forced_status"):
        return refund["forced_status"]
    return "SUCCESS" if _epoch(now) >= refund["success_at"] else "PROCESSING"


def _refund(req: dict[str, str]) -> dict[str, Any]:
    store = _store()
    _require(req, "sub_mch_id", "out_refund_no", "total_fee", "refund_fee")
    _check(bool(_OUT_REFUND_NO.fullmatch(req["out_refund_no"])), "out_refund_no参数格式错误")
    _check(bool(_POSITIVE.fullmatch(req["total_fee"])), "invalid total_fee")
    _check(bool(_POSITIVE.fullmatch(req["refund_fee"])), "invalid refund_fee")
    pk, order = _load_order(req)
    out_refund_no, refund_fee = req["out_refund_no"], int(req["refund_fee"])
    _check(req.get("refund_fee_type", order["fee_type"]) == order["fee_type"], "退款币种与支付币种不一致")
    _check(int(req["total_fee"]) == order["total_fee"], "订单金额不一致")
    link = store.get(_pk("refund", out_refund_no))
    if link is not None and link["out_trade_no"] != order["out_trade_no"]:
        raise _Refuse("PARAM_ERROR", "商户退款单号重复")
    now = clock.now()
    new = {"out_refund_no": out_refund_no, "refund_id": "5030" + _digits(25), "refund_fee": refund_fee,
           "created_at": _epoch(now), "success_at": _epoch(now + REFUND_SETTLE)}

    def apply(o: dict[str, Any]) -> dict[str, Any] | None:
        same = [r for r in o["refunds"] if r["out_refund_no"] == out_refund_no]
        if same:  # a retry of the same refund: same answer, if it asks for the same amount
            if same[0]["refund_fee"] != refund_fee:
                raise _Refuse("PARAM_ERROR", "订单金额或退款金额与之前请求不一致，请核实后再试")
            return None
        if _state(o, now) not in _PAID:
            raise _Refuse("ERROR", "订单状态错误，未支付的订单不能退款")
        if o.get("refuse_refunds"):  # set by /simulate/refuse_refunds: WeChat's answer when it cannot pay
            raise _Refuse(o["refuse_refunds"], "余额不足")
        if _epoch(now) - o["paid_at"] > REFUND_WINDOW.total_seconds():
            raise _Refuse("TRADE_OVERDUE", "订单已经超过退款期限")
        if len(o["refunds"]) >= MAX_REFUNDS:
            raise _Refuse("ERROR", "退款次数超过限制")
        if sum(r["refund_fee"] for r in o["refunds"]) + refund_fee > o["total_fee"]:
            raise _Refuse("ERROR", "申请退款金额超过订单可退金额")
        cash = convert(Money(refund_fee, o["fee_type"]), "CNY", rate_from_e8(o["rate"]), "HALF_UP").amount
        return {**o, "trade_state": "REFUND", "refunds": o["refunds"] + [{**new, "cash_refund_fee": cash}]}

    notify_url = req.get("notify_url") or ""
    _check(not notify_url or _notify_url_ok(notify_url), "invalid notify_url")
    order = store.update(pk, apply)
    refund = next(r for r in order["refunds"] if r["out_refund_no"] == out_refund_no)
    if refund["refund_id"] == new["refund_id"]:
        link = {"out_trade_no": order["out_trade_no"]}
        if notify_url:  # WeChat tells notify_url the result once the refund is final
            link["notify"] = {"url": notify_url, "attempts": 0, "delivered": False, "history": []}
        store.create(_pk("refund", out_refund_no), link, REFUND_NOTIFY_QUEUE if notify_url else None,
                     refund["success_at"] if notify_url else None)
        store.create(_pk("refundid", refund["refund_id"]), {"out_trade_no": order["out_trade_no"]})
        _add_to_day(wire.china_date(now), "refunds", [order["out_trade_no"], out_refund_no])
    return {
        "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
        "out_refund_no": out_refund_no, "refund_id": refund["refund_id"], "refund_channel": "ORIGINAL",
        "refund_fee": refund["refund_fee"], "refund_fee_type": order["fee_type"],
        "total_fee": order["total_fee"], "fee_type": order["fee_type"],
        "cash_fee": order["cash_fee"], "cash_fee_type": "CNY",
        "cash_refund_fee": refund["cash_refund_fee"], "cash_refund_fee_type": "CNY", "rate": str(order["rate"]),
    }


def _refundquery(req: dict[str, str]) -> dict[str, Any]:
    store = _store()
    _require(req, "sub_mch_id")
    wanted: set[str] | None = None
    lookup = dict(req)
    for kind, name in (("refundid", "refund_id"), ("refund", "out_refund_no")):
        if req.get(name) and not (req.get("transaction_id") or req.get("out_trade_no")):
            link = store.get(_pk(kind, req[name])) if len(req[name]) <= 64 else None
            if link is None:
                raise _Refuse("REFUNDNOTEXIST", "退款订单查询失败")
            lookup["out_trade_no"] = link["out_trade_no"]
            break
    if req.get("out_refund_no"):
        wanted = {req["out_refund_no"]}
    try:
        _, order = _load_order(lookup)
    except _Refuse:
        raise _Refuse("REFUNDNOTEXIST", "退款订单查询失败") from None
    refunds = [r for r in order["refunds"]
               if (wanted is None or r["out_refund_no"] in wanted)
               and (not req.get("refund_id") or r["refund_id"] == req["refund_id"])]
    if not refunds:
        raise _Refuse("REFUNDNOTEXIST", "退款订单查询失败")
    now = clock.now()
    out: dict[str, Any] = {
        "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
        "total_fee": order["total_fee"], "fee_type": order["fee_type"], "cash_fee": order["cash_fee"],
        "cash_fee_type": "CNY", "rate": str(order["rate"]), "refund_fee_type": order["fee_type"],
        "refund_fee": sum(r["refund_fee"] for r in refunds), "refund_count": len(refunds),
    }
    for n, r in enumerate(refunds):
        status = _refund_status(r, now)
        out.update({
            f"out_refund_no_{n}": r["out_refund_no"], f"refund_id_{n}": r["refund_id"],
            f"refund_channel_{n}": "ORIGINAL", f"refund_fee_{n}": r["refund_fee"],
            f"cash_refund_fee_{n}": r["cash_refund_fee"], f"refund_status_{n}": status,
            f"refund_recv_accout_{n}": "支付用户零钱",
        })
        if status == "SUCCESS":
            out[f"refund_success_time_{n}"] = datetime.fromtimestamp(r["success_at"], wire.CHINA_TZ).strftime(
                "%Y-%m-%d %H:%M:%S")
    return out


# ---- exchange rate and bills -----------------------------------------------------------------

def _valid_day(text: str) -> bool:
    try:
        return len(text) == 8 and text.isdigit() and bool(datetime.strptime(text, wire.DATE_FORMAT))
    except ValueError:
        return False


def _queryexchagerate(req: dict[str, str]) -> dict[str, Any]:
    if req.get("fee_type") not in RATES_E8 or req.get("fee_type") == "CNY":
        raise _Fail("fee_type参数错误")
    if not _valid_day(req.get("date", "")) or req["date"] > wire.china_date(clock.now()):
        raise _Fail("date参数错误")
    return {"fee_type": req["fee_type"], "rate_time": req["date"], "rate": str(RATES_E8[req["fee_type"]])}


_BILL_HEADER = ("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                "货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,"
                "退款状态,商品名称,商户数据包,手续费,费率")
_SUMMARY_HEADER = "总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额"


def _cell(value: Any) -> str:
    return "`" + " ".join(str(value).replace("`", "'").split())


def _bill_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, wire.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _downloadbill(req: dict[str, str]) -> Response:
    store = _store()
    cfg = _cfg()
    bill_type = req.get("bill_type") or "ALL"
    if not _valid_day(req.get("bill_date", "")):
        raise _Fail("invalid bill_date")
    if bill_type not in ("ALL", "SUCCESS", "REFUND", "REVOKED"):
        raise _Fail("invalid bill_type")
    if req.get("tar_type", "GZIP") != "GZIP":
        raise _Fail("invalid tar_type")
    day = _day(req["bill_date"])
    rows: list[list[Any]] = []
    total = refunded = fees = Decimal(0)
    now = clock.now()
    orders: dict[str, dict[str, Any]] = {}

    def order_of(no: str) -> dict[str, Any] | None:
        if no not in orders:
            orders[no] = store.get(_pk("order", no))
        o = orders[no]
        return o if o and (not req.get("sub_mch_id") or o["sub_mch_id"] == req["sub_mch_id"]) else None

    if bill_type in ("ALL", "SUCCESS"):
        for no in day["orders"]:
            o = order_of(no)
            if o is None:
                continue
            amount = Money(o["total_fee"], o["fee_type"])
            fee = bps_of(amount, FEE_BPS)
            total += Decimal(amount.to_major_str())
            fees += Decimal(fee.to_major_str())
            rows.append([_bill_time(o["paid_at"]), cfg.appid, cfg.mch_id, o["sub_mch_id"],
                         o["params"].get("device_info", ""), o["transaction_id"], no, o["openid"], o["trade_type"],
                         "SUCCESS", "OTHERS", o["fee_type"], amount.to_major_str(), "0.00", "0", "0", "0.00", "0.00",
                         "", "", o["params"]["body"], o["params"].get("attach", ""), fee.to_major_str(), "2.00%"])
    if bill_type in ("ALL", "REFUND"):
        for no, out_refund_no in day["refunds"]:
            o = order_of(no)
            refund = next((r for r in (o or {}).get("refunds", []) if r["out_refund_no"] == out_refund_no), None)
            if o is None or refund is None:
                continue
            amount = Money(refund["refund_fee"], o["fee_type"])
            fee = -bps_of(amount, FEE_BPS)
            refunded += Decimal(amount.to_major_str())
            fees += Decimal(fee.to_major_str())
            rows.append([_bill_time(refund["created_at"]), cfg.appid, cfg.mch_id, o["sub_mch_id"],
                         o["params"].get("device_info", ""), o["transaction_id"], no, o["openid"], o["trade_type"],
                         "REFUND", "OTHERS", o["fee_type"], Money(o["total_fee"], o["fee_type"]).to_major_str(), "0.00",
                         refund["refund_id"], out_refund_no, amount.to_major_str(), "0.00", "ORIGINAL",
                         _refund_status(refund, now), o["params"]["body"], o["params"].get("attach", ""),
                         fee.to_major_str(), "2.00%"])
    if not rows:
        return _xml({"return_code": "FAIL", "return_msg": "No Bill Exist", "error_code": "20002"})
    lines = [_BILL_HEADER]
    lines += [",".join(_cell(v) for v in row) for row in rows]
    lines.append(_SUMMARY_HEADER)
    lines.append(",".join(_cell(v) for v in (len(rows), f"{total:.2f}", f"{refunded:.2f}", "0.00", f"{fees:.2f}")))
    text = "\n".join(lines) + "\n"
    if req.get("tar_type") == "GZIP":  # the same bill, compressed (spec §9: tar_type=GZIP)
        import gzip

        # application/gzip: one of the app's binary types (API Gateway passes the bytes through base64);
        # application/octet-stream is not (routes accepting it as a request body would mix binary and text).
        return Response(body=gzip.compress(text.encode("utf-8"), mtime=0), status_code=200,
                        headers={"Content-Type": "application/gzip"})
    return Response(body=text, status_code=200, headers={"Content-Type": "text/plain; charset=utf-8"})


# ---- settlement ------------------------------------------------------------------------------
# What WeChat paid the institution: one batch per UTC+8 trade day and pricing currency, converted and
# paid out the next day (spec §0: T+1), net of refunds and of the fee the bill lists.

SETTLE_AFTER_DAYS = 1
MAX_SETTLEMENT_RANGE_DAYS = 92
_SETTLED_REFUNDS = ("SUCCESS", "PROCESSING")


def _settlement_batches(settled_on: datetime) -> list[dict[str, Any]]:
    store = _store()
    trade_day = settled_on - timedelta(days=SETTLE_AFTER_DAYS)
    day = _day(trade_day.strftime(wire.DATE_FORMAT))
    now = clock.now()
    sums: dict[str, list[int]] = {}          # currency -> [paid, refunded, fee]
    for no in day["orders"]:
        o = _store().get(_pk("order", no))
        if o is None or o["trade_state"] not in _PAID:
            continue
        amount = Money(o["total_fee"], o["fee_type"])
        t = sums.setdefault(o["fee_type"], [0, 0, 0])
        t[0] += amount.amount
        t[2] += bps_of(amount, FEE_BPS).amount
    for no, out_refund_no in day["refunds"]:
        o = store.get(_pk("order", no))
        refund = next((r for r in (o or {}).get("refunds", []) if r["out_refund_no"] == out_refund_no), None)
        if o is None or refund is None or _refund_status(refund, now) not in _SETTLED_REFUNDS:
            continue
        amount = Money(refund["refund_fee"], o["fee_type"])
        t = sums.setdefault(o["fee_type"], [0, 0, 0])
        t[1] += amount.amount
        t[2] -= bps_of(amount, FEE_BPS).amount     # the bill gives a refund's fee back
    short = (store.get(_pk("settle_short", settled_on.strftime(wire.DATE_FORMAT))) or {}).get("short", 0)
    out = []
    for n, (currency, (paid, refunded, fee)) in enumerate(sorted(sums.items())):
        out.append({"fbatchno": f"{settled_on:%Y%m%d}{trade_day:%m%d}{n + 1:02d}",
                    "date_settlement": settled_on.strftime(wire.DATE_FORMAT),
                    "date_start": trade_day.strftime(wire.DATE_FORMAT), "date_end": trade_day.strftime(wire.DATE_FORMAT),
                    "settlement_fee": paid - refunded - fee - short, "unsettlement_fee": 0,
                    "settlementfee_type": currency, "pay_fee": paid, "refund_fee": refunded,
                    "pay_net_fee": paid - refunded, "poundage_fee": fee})
    return out


def _settlementquery(req: dict[str, str]) -> dict[str, Any]:
    _require(req, "usetag", "offset", "limit")
    _check(req["usetag"] in ("1", "2"), "usetag参数错误")
    _check(_DIGITS.fullmatch(req["offset"]) is not None and len(req["offset"]) <= 6, "offset参数错误")
    _check(_DIGITS.fullmatch(req["limit"]) is not None and 1 <= int(req["limit"]) <= 50, "limit参数错误")
    today = datetime.strptime(wire.china_date(clock.now()), wire.DATE_FORMAT)
    if req["usetag"] == "1":
        _require(req, "date_start", "date_end")
        _check(_valid_day(req["date_start"]) and _valid_day(req["date_end"]), "date_start/date_end参数错误")
        first = datetime.strptime(req["date_start"], wire.DATE_FORMAT)
        last = min(datetime.strptime(req["date_end"], wire.DATE_FORMAT), today)
        _check(req["date_start"] <= req["date_end"], "date_start不能晚于date_end")
        _check((datetime.strptime(req["date_end"], wire.DATE_FORMAT) - first).days < MAX_SETTLEMENT_RANGE_DAYS,
               "查询区间不能超过92天")
    else:  # not settled yet: today's trades, paid out tomorrow
        first = last = today + timedelta(days=SETTLE_AFTER_DAYS)
    batches: list[dict[str, Any]] = []
    day = first
    while day <= last:
        batches.extend(_settlement_batches(day))
        day += timedelta(days=1)
    offset, limit = int(req["offset"]), int(req["limit"])
    page = batches[offset:offset + limit]
    out: dict[str, Any] = {"record_num": len(page)}
    for n, batch in enumerate(page):
        out[f"setteinfo_{n}"] = batch
    return out


# ---- routes ----------------------------------------------------------------------------------

# path -> (handler, request carries nonce_str, answer carries result_code)
_API: dict[str, tuple[Callable[[dict[str, str]], Any], bool, bool]] = {
    "/pay/unifiedorder": (_unifiedorder, True, True),
    "/pay/orderquery": (_orderquery, True, True),
    "/pay/closeorder": (_closeorder, True, True),
    "/secapi/pay/refund": (_refund, True, True),
    "/pay/refundquery": (_refundquery, True, True),
    "/pay/queryexchagerate": (_queryexchagerate, False, False),  # documented without nonce_str/result_code
    "/pay/downloadbill": (_downloadbill, True, True),
    "/pay/settlementquery": (_settlementquery, True, True),
}


def _view(handler: Callable[[dict[str, str]], Any], need_nonce: bool, result: bool) -> Callable[[], Response]:
    return lambda: _serve(handler, need_nonce, result)


for _path, (_handler, _nonce, _result) in _API.items():
    blueprint.route(_path, methods=["POST"], content_types=REQUEST_TYPES, name=_handler.__name__.lstrip("_"))(
        _view(_handler, _nonce, _result))


# ---- test hooks: the shopper pays, notifications are retried --------------------------------

def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def _notification(order: dict[str, Any], success: bool) -> dict[str, Any]:
    """The signed notification (spec V4 shape, with `rate`), signed like the order request was."""
    cfg = _cfg()
    params = order["params"]
    fields: dict[str, Any] = {
        "return_code": "SUCCESS", "return_msg": "OK", "appid": cfg.appid, "mch_id": cfg.mch_id,
        "sub_appid": params.get("sub_appid"), "sub_mch_id": order["sub_mch_id"], "device_info": params.get("device_info"),
        "nonce_str": _alnum(16), "result_code": "SUCCESS" if success else "FAIL",
    }
    if not success:
        fields.update({"err_code": "NOTENOUGH", "err_code_des": "余额不足"})
    fields.update({
        "openid": order["openid"], "is_subscribe": "N", "sub_openid": params.get("sub_openid"),
        "trade_type": order["trade_type"], "bank_type": "OTHERS", "total_fee": order["total_fee"],
        "fee_type": order["fee_type"],
    })
    if success:
        fields.update({"cash_fee": order["cash_fee"], "cash_fee_type": "CNY", "rate": str(order["rate"]),
                       "transaction_id": order["transaction_id"]})
    fields.update({"out_trade_no": order["out_trade_no"], "attach": params.get("attach", ""),
                   "time_end": order.get("time_end") or wire.format_time(clock.now())})
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["sign"] = signing.sign(fields, cfg.api_key, order["sign_type"])
    return fields


def _pay(out_trade_no: str, success: bool, now: datetime, notify: bool = True) -> dict[str, Any]:
    store = _store()
    pk = _pk("order", out_trade_no)
    transaction_id = "4200" + _digits(24)

    def pay(o: dict[str, Any] | None) -> dict[str, Any]:
        if o is None:
            raise _SimError(404, "ORDERNOTEXIST", "no such out_trade_no")
        state = _state(o, now)
        if state in _PAID:
            raise _SimError(409, "ORDERPAID", "order already paid")
        if state not in ("NOTPAY", "PAYERROR"):
            raise _SimError(409, "ORDERCLOSED", "order is closed or expired")
        if _epoch(now) >= o["prepay_expires_at"]:
            raise _SimError(409, "PREPAY_EXPIRED", "prepay_id / code_url expired; call unifiedorder again")
        o = dict(o)
        o["openid"] = o["params"].get("openid") or ("oUpF8" + _alnum(23))
        if success:
            rate = RATES_E8[o["fee_type"]]
            o.update({
                "trade_state": "SUCCESS", "rate": rate, "paid_at": _epoch(now), "time_end": wire.format_time(now),
                "transaction_id": transaction_id,
                "cash_fee": convert(Money(o["total_fee"], o["fee_type"]), "CNY", rate_from_e8(rate), "HALF_UP").amount,
            })
        else:
            o["trade_state"] = "PAYERROR"
        o["notify"] = {"url": o["params"]["notify_url"], "fields": _notification(o, success), "attempts": 0,
                       "delivered": False, "history": [], "given_up": not notify}
        return o

    # One transaction: the order paid, its notification due, its transaction id and bill entry - or none.
    changes = {pk: pay}
    if success:
        changes[_pk("txn", transaction_id)] = lambda d: {"out_trade_no": out_trade_no} if d is None else None
        changes[_day_pk(wire.china_date(now), out_trade_no)] = _day_adding("orders", out_trade_no)
    queues = {pk: (NOTIFY_QUEUE, _epoch(now))} if notify else {}
    return store.change_together(changes, queues=queues)[pk]


def _acknowledged(body: bytes) -> bool:
    try:
        return wire.from_xml(body).get("return_code") == "SUCCESS"
    except wire.WireError:
        return False


def _post(url: str, fields: dict[str, Any]) -> tuple[bool, str]:
    """One notification POST as WeChat makes it; (acknowledged, what happened)."""
    try:  # the notify URL was the caller's choice: egress checks where it really goes
        answer = egress.post(url, wire.to_xml(fields), {"Content-Type": "text/xml"},
                             timeout=min(5, settings.get().http_timeout_seconds), max_bytes=wire.MAX_BODY_BYTES)
    except egress.Failed as exc:  # the merchant's server being down is the normal case here
        return False, str(exc)[:80]
    return answer.status == 200 and _acknowledged(answer.body), str(answer.status)


def _record_attempt(pk: str, queue: str, note: dict[str, Any], ok: bool, status: str, now: datetime) -> int:
    """Write down one delivery attempt on the item's `notify` and reschedule on WeChat's timetable."""
    store = _store()
    attempts = note["attempts"] + 1
    given_up = not ok and attempts > len(RETRY_SCHEDULE)
    next_due = None if ok or given_up else _epoch(now) + RETRY_SCHEDULE[attempts - 1]

    def record(o: dict[str, Any]) -> dict[str, Any]:
        n = dict(o["notify"])
        n.update({"attempts": attempts, "delivered": ok, "given_up": given_up,
                  "history": n["history"] + [[_epoch(now), status, ok]]})
        return {**o, "notify": n}

    store.update(pk, record)
    store.schedule(pk, queue if next_due else None, next_due)
    return attempts


def _deliver(pk: str, now: datetime) -> bool:
    """One delivery attempt of the order's notification; reschedules on WeChat's timetable."""
    store = _store()
    order = store.get(pk)
    note = (order or {}).get("notify")
    if not note or note["delivered"] or note.get("given_up"):
        if order is not None:
            store.schedule(pk, None, None)
        return False
    ok, status = _post(note["url"], note["fields"])
    attempts = _record_attempt(pk, NOTIFY_QUEUE, note, ok, status, now)
    log.info("wechat_sandbox_notify", out_trade_no=order["out_trade_no"], attempt=attempts, ok=ok, status=status)
    return True


def _refund_notification(order: dict[str, Any], refund: dict[str, Any], status: str) -> dict[str, Any]:
    """The refund result notification: no sign; the result AES-encrypted in req_info under our key."""
    cfg = _cfg()
    inner: dict[str, Any] = {
        "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
        "refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
        "total_fee": order["total_fee"], "refund_fee": refund["refund_fee"],
        "settlement_refund_fee": refund["refund_fee"] if status == "SUCCESS" else 0,
        "refund_status": status, "refund_recv_accout": "支付用户零钱",
        "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS", "refund_request_source": "API",
    }
    if status == "SUCCESS":
        inner["success_time"] = datetime.fromtimestamp(refund["success_at"], wire.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return {"return_code": "SUCCESS", "appid": cfg.appid, "mch_id": cfg.mch_id, "sub_mch_id": order["sub_mch_id"],
            "nonce_str": _alnum(16),
            "req_info": signing.encrypt_req_info(wire.to_xml(inner, root_tag="root"), cfg.api_key)}


def _deliver_refund(pk: str, now: datetime) -> bool:
    """One delivery attempt of a refund's result notification, once the refund is final."""
    store = _store()
    link = store.get(pk)
    note = (link or {}).get("notify")
    order = store.get(_pk("order", link["out_trade_no"])) if link else None
    refund = next((r for r in (order or {}).get("refunds", []) if _pk("refund", r["out_refund_no"]) == pk), None)
    if not note or note["delivered"] or note.get("given_up") or refund is None:
        if link is not None:
            store.schedule(pk, None, None)
        return False
    status = _refund_status(refund, now)
    if status == "PROCESSING":
        store.schedule(pk, REFUND_NOTIFY_QUEUE, refund["success_at"])
        return False
    ok, answer = _post(note["url"], _refund_notification(order, refund, status))
    attempts = _record_attempt(pk, REFUND_NOTIFY_QUEUE, note, ok, answer, now)
    log.info("wechat_sandbox_refund_notify", out_refund_no=refund["out_refund_no"], attempt=attempts, ok=ok,
             status=answer)
    return True


def pump(now: datetime | None = None) -> int:
    """Deliver every notification that is due; returns how many deliveries were tried."""
    store = _store()
    now = now or clock.now()
    tried = 0
    for queue, deliver in ((NOTIFY_QUEUE, _deliver), (REFUND_NOTIFY_QUEUE, _deliver_refund)):
        seen: set[str] = set()
        while True:
            batch = [pk for pk, _ in store.due(queue, _epoch(now)) if pk not in seen]
            if not batch:
                break
            for pk in batch:
                seen.add(pk)
                if deliver(pk, now):
                    tried += 1
    return tried


@blueprint.route("/simulate/pay", methods=["POST"], content_types=["application/json"])
def simulate_pay():
    # Read everything from the request first: delivering the notification may re-enter the app.
    raw = blueprint.current_request.raw_body or b""
    try:
        if len(raw) > MAX_JSON_BYTES:
            raise _SimError(413, "TOO_LARGE", "body too large")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _SimError(400, "BAD_JSON", "body must be JSON") from None
        if not isinstance(body, dict):
            raise _SimError(400, "BAD_JSON", "body must be a JSON object")
        out_trade_no = body.get("out_trade_no")
        outcome = body.get("outcome", "success")
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.fullmatch(out_trade_no):
            raise _SimError(400, "BAD_OUT_TRADE_NO", "out_trade_no must be 1-32 of [0-9A-Za-z_-|*]")
        if outcome not in ("success", "fail"):
            raise _SimError(400, "BAD_OUTCOME", "outcome must be success or fail")
        notify = body.get("notify", True)
        if not isinstance(notify, bool):
            raise _SimError(400, "BAD_NOTIFY", "notify must be true or false (false: the notification is lost)")
        now = clock.now()
        order = _pay(out_trade_no, outcome == "success", now, notify)
        _deliver(_pk("order", out_trade_no), now)
        note = _store().get(_pk("order", out_trade_no))["notify"]
        return _json(200, {"out_trade_no": out_trade_no, "trade_state": order["trade_state"],
                           "notification": note["fields"], "delivered": note["delivered"],
                           "attempts": note["attempts"]})
    except _SimError as err:
        return _json(err.status, {"error": err.code, "message": err.message})
    except Exception as exc:
        log.error("wechat_sandbox_error", error=type(exc).__name__)
        return _json(503, {"error": "SYSTEMERROR", "message": "sandbox error"})


@blueprint.route("/simulate/refund", methods=["POST"], content_types=["application/json"])
def simulate_refund():
    """WeChat closes a processing refund (REFUNDCLOSE, e.g. the payer's account is gone): its query
    answers REFUNDCLOSE and its result notification goes out now. Body: {"out_refund_no": ...}."""
    raw = blueprint.current_request.raw_body or b""
    try:
        try:
            body = json.loads(raw) if len(raw) <= MAX_JSON_BYTES else None
        except ValueError:
            body = None
        out_refund_no = body.get("out_refund_no") if isinstance(body, dict) else None
        if not isinstance(out_refund_no, str) or not _OUT_REFUND_NO.fullmatch(out_refund_no):
            raise _SimError(400, "BAD_OUT_REFUND_NO", "body must be {\"out_refund_no\": ...}")
        store, now = _store(), clock.now()
        link_pk = _pk("refund", out_refund_no)
        link = store.get(link_pk)
        if link is None:
            raise _SimError(404, "REFUNDNOTEXIST", "no such out_refund_no")

        def close(o: dict[str, Any]) -> dict[str, Any]:
            refunds = []
            for r in o["refunds"]:
                if r["out_refund_no"] == out_refund_no:
                    if _refund_status(r, now) != "PROCESSING":
                        raise _SimError(409, "REFUND_FINAL", "the refund is no longer processing")
                    r = {**r, "forced_status": "REFUNDCLOSE"}
                refunds.append(r)
            return {**o, "refunds": refunds}

        store.update(_pk("order", link["out_trade_no"]), close)
        if link.get("notify"):
            store.schedule(link_pk, REFUND_NOTIFY_QUEUE, _epoch(now))
            _deliver_refund(link_pk, now)
        return _json(200, {"out_refund_no": out_refund_no, "refund_status": "REFUNDCLOSE",
                           "notify": (store.get(link_pk) or {}).get("notify")})
    except _SimError as err:
        return _json(err.status, {"error": err.code, "message": err.message})


@blueprint.route("/simulate/refuse_refunds", methods=["POST"], content_types=["application/json"])
def simulate_refuse_refunds():
    """{"out_trade_no": ..., "refuse": true|false}: WeChat refuses (NOTENOUGH) new refunds of the order."""
    try:
        body = json.loads(blueprint.current_request.raw_body or b"{}")
    except ValueError:
        return _json(400, {"error": "BAD_JSON", "message": "body must be JSON"})
    out_trade_no = body.get("out_trade_no") if isinstance(body, dict) else None
    if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.fullmatch(out_trade_no):
        return _json(400, {"error": "BAD_OUT_TRADE_NO", "message": "out_trade_no must be 1-32 of [0-9A-Za-z_-|*]"})
    pk = _pk("order", out_trade_no)
    if _store().get(pk) is None:
        return _json(404, {"error": "ORDERNOTEXIST", "message": "no such order"})
    refuse = "NOTENOUGH" if body.get("refuse", True) else None
    _store().update(pk, lambda o: {**o, "refuse_refunds": refuse})
    return _json(200, {"out_trade_no": out_trade_no, "refuse_refunds": bool(refuse)})


@blueprint.route("/simulate/settlement_short", methods=["POST"], content_types=["application/json"])
def simulate_settlement_short():
    """{"date_settlement": "yyyyMMdd", "short": n}: every batch settled that day pays n minor units less
    than its own pay_net_fee - poundage_fee says (0 puts it right again)."""
    try:
        body = json.loads(blueprint.current_request.raw_body or b"{}")
    except ValueError:
        return _json(400, {"error": "BAD_JSON", "message": "body must be JSON"})
    day = body.get("date_settlement") if isinstance(body, dict) else None
    short = body.get("short") if isinstance(body, dict) else None
    if not isinstance(day, str) or not _valid_day(day):
        return _json(400, {"error": "BAD_DATE", "message": "date_settlement must be yyyyMMdd"})
    if isinstance(short, bool) or not isinstance(short, int) or not 0 <= short <= 10**9:
        return _json(400, {"error": "BAD_SHORT", "message": "short must be a whole number of minor units >= 0"})
    pk = _pk("settle_short", day)
    _store().create(pk, {"short": 0})
    _store().update(pk, lambda d: {**(d or {}), "short": short})
    return _json(200, {"date_settlement": day, "short": short})


@blueprint.route("/simulate/pump", methods=["POST"])
def simulate_pump():
    return _json(200, {"tried": pump()})
