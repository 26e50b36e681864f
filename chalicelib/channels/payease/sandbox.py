"""A faithful simulator of the PayEase gateway (same wire format), mounted at /sandbox/payease.

- POST /prs/user_payment.checkit (and /customer/gb/pay_bank.jsp): the browser form; checks
  v_md5info and serves a bank-selection page.
- POST /simulate/pay {out_trade_no (= v_oid), outcome success|fail, v_pmode}: the payer finished
  at the bank. Marks the order, sends the signed server notify (batched with `|_|`, at most 4
  orders, when several are due to the same URL), then: a form post (the browser) is redirected to
  v_url with the signed return parameters; JSON gets them back as `return_url`.
- POST /simulate/pump: resend due notifications (also `pump()`), until the answer is `sent`.
- POST /merchant/config {v_mid, notify_url, v_mac}: the "merchant console" notify URL; v_mac is the
  HMAC-MD5 of v_mid + notify_url with the merchant's key (nobody else may re-point its notifications).
- Query / refund / refund-list endpoints under /merchant/..., answering XML.

Notify URL precedence: the order's `kauri_sandbox_notify_url` form field, then the console config
for the merchant, then public_base_url + /callbacks/payease.

Sandbox liberties (documented, not PayEase facts): no RSA `v_sign`; the return query string is
percent-encoded as UTF-8 (MACs are still over GBK bytes); the retry ladder below is ours (PayEase
publishes none); XML replies are UTF-8; messagehead status 0 ok / 1 not found / 2 MAC / 3 request.
"""
from __future__ import annotations

import functools
import html
import json
from typing import Any, Callable
from urllib.parse import urlencode

from chalice import Blueprint, Response

from chalicelib import clock, egress, log, settings
from chalicelib.channels.base import InvalidNotification
from chalicelib.channels.payease import notify, signing
from chalicelib.money import Money, MoneyError

blueprint = Blueprint(__name__)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
QUEUE = "payease#notify"
RETRY_DELAYS = (15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)  # seconds after each failure
# Sandbox bank ids (PayEase's real v_pmode numbers vary by contract).
BANKS = {"1": "招商银行", "2": "中国工商银行", "3": "中国建设银行", "4": "中国农业银行", "5": "中国银行"}
DEFAULT_BANK = "1"
PAY_REQUIRED = ("v_mid", "v_oid", "v_rcvname", "v_rcvaddr", "v_rcvtel", "v_rcvpost", "v_amount",
                "v_ymd", "v_orderstatus", "v_ordername", "v_moneytype", "v_url", "v_md5info")
MAX_URL = 512
CONSOLE_FIELDS = ("v_mid", "notify_url")  # v_mac of the simulated merchant console's notify URL change


class _Refused(Exception):
    """Bad input, answered in PayEase's style by the handler's wrapper."""

    def __init__(self, code: str, text: str, status: int = 200):
        super().__init__(code)
        self.code = code
        self.text = text
        self.status = status


def _order_pk(oid: str) -> str:
    return f"payease#order#{oid}"


def _merchant_pk(mid: str) -> str:
    return f"payease#merchant#{mid}"


def _conf():
    return settings.get().sandbox_account("payease")


# ---- responses in PayEase's style -----------------------------------------------------------

def _html(body: str, status: int = 200) -> Response:
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>首信易支付</title></head>"
            f"<body>{body}</body></html>")
    return Response(body=page, status_code=status, headers={"Content-Type": "text/html; charset=utf-8"})


def _error_page(text: str) -> Response:
    # The cashier shows errors as a page (HTTP 200), not as an HTTP status.
    return _html(f"<h2>交易失败</h2><p class=\"error\">{html.escape(text)}</p>")


def _tags(values: dict[str, str]) -> str:
    return "".join(f"<{k}>{html.escape(v)}</{k}>" for k, v in values.items())


def _xml(root: str, head: dict[str, str], body: str = "", in_messagehead: bool = False) -> Response:
    """Refund replies put status fields under the root; the order query under <messagehead>."""
    parts = f"<messagehead>{_tags(head)}</messagehead>" if in_messagehead else _tags(head)
    doc = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}>{parts}{body}</{root}>"
    return Response(body=doc, status_code=200, headers={"Content-Type": "text/xml; charset=UTF-8"})


def _json(data: dict, status: int = 200) -> Response:
    return Response(body=data, status_code=status, headers={"Content-Type": JSON})


def _guard(style: str) -> Callable:
    """Every refusal and every surprise becomes an answer in the endpoint's style, never a 500."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except _Refused as exc:
                return _refusal(style, exc)
            except Exception as exc:  # the simulator must never answer 500
                log.error("payease.sandbox_error", handler=fn.__name__, error=type(exc).__name__)
                return _refusal(style, _Refused("SYSTEM", "系统繁忙，请稍后再试", 503))
        return handler
    return wrap


def _refusal(style: str, exc: _Refused) -> Response:
    if style == "html":
        return _error_page(exc.text)
    if style == "xml":
        head = {"status": exc.code if exc.code.isdigit() else "3", "statusdesc": exc.text}
        # Both shapes at once: refund callers read the root, query callers read <messagehead>.
        return _xml("message", head, f"<messagehead>{_tags(head)}</messagehead>")
    return _json({"error": exc.code, "message": exc.text}, exc.status if exc.status != 200 else 400)


# ---- request reading --------------------------------------------------------------------------

def _read_params(allow_json: bool) -> tuple[dict[str, str], bool]:
    """The current request's parameters (form, JSON or query string), read in full, and is_form."""
    req = blueprint.current_request
    ctype = notify.header(req.headers, "content-type").lower()
    raw = req.raw_body or b""
    if req.method == "GET":
        params = {k: v for k, v in (req.query_params or {}).items()}
        return {k: v for k, v in params.items() if isinstance(v, str)}, False
    if len(raw) > settings.get().max_body_bytes:
        raise _Refused("3", "请求过大", 413)
    if allow_json and ctype.startswith(JSON):
        try:
            data = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            raise _Refused("BAD_JSON", "body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused("BAD_JSON", "body must be an object")
        return {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int))}, False
    try:
        form = notify.parse_form(raw, settings.get().max_body_bytes)
    except InvalidNotification as exc:
        raise _Refused("3", f"参数格式错误: {exc.reason}") from None
    charset = notify.charset_of(ctype)
    return {k: notify.decode_text(v, charset) for k, v in form.items()}, True


def _check_mid(mid: str) -> None:
    if mid != _conf().mid:
        raise _Refused("3", "商户编号不存在")


def _check_url(url: str, what: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) > MAX_URL or any(c in url for c in "\r\n <>\""):
        raise _Refused("3", f"{what} 地址错误")
    return url


def _check_notify_url(url: str) -> str:
    """A notify URL is POSTed to: only a receiver chalicelib.egress allows (never our own network)."""
    _check_url(url, "通知")
    try:
        egress.check(url)
    except egress.Refused:
        raise _Refused("3", "通知 地址错误") from None
    return url


# ---- the cashier ------------------------------------------------------------------------------

@blueprint.route("/prs/user_payment.checkit", methods=["POST"], content_types=[FORM])
@_guard("html")
def cashier():
    return _accept_order(direct=False)


@blueprint.route("/customer/gb/pay_bank.jsp", methods=["POST"], content_types=[FORM])
@_guard("html")
def direct_bank():
    return _accept_order(direct=True)


def _accept_order(direct: bool) -> Response:
    from chalicelib.store import sandbox as store

    f, _ = _read_params(allow_json=False)
    missing = [name for name in PAY_REQUIRED if not f.get(name)]
    if missing:
        raise _Refused("3", "缺少参数: " + ",".join(missing))
    conf = _conf()
    _check_mid(f["v_mid"])
    m = notify.OID_RE.match(f["v_oid"])
    if not m or m.group(1) != f["v_ymd"] or m.group(2) != f["v_mid"]:
        raise _Refused("3", "订单编号格式错误 (yyyymmdd-商户编号-流水号)")
    if f["v_moneytype"] not in notify.MONEYTYPE_CURRENCY:
        raise _Refused("3", "币种错误")
    if not notify.AMOUNT_RE.match(f["v_amount"]):
        raise _Refused("3", "金额格式错误")
    try:
        amount = Money.from_major(f["v_amount"], notify.MONEYTYPE_CURRENCY[f["v_moneytype"]])
    except MoneyError:
        raise _Refused("3", "金额格式错误") from None
    if amount.amount <= 0:
        raise _Refused("3", "金额格式错误")
    _check_url(f["v_url"], "返回")
    if not signing.verify(conf.md5_key, f, signing.REQUEST_FIELDS, f["v_md5info"]):
        raise _Refused("2", "数字签名错误 (v_md5info)")
    override = f.get("kauri_sandbox_notify_url", "")
    if override:
        _check_notify_url(override)
    pmode = f.get("v_pmode", "")
    if direct and pmode not in BANKS:
        raise _Refused("3", "银行编号错误 (v_pmode)")
    order = {
        "v_oid": f["v_oid"], "v_mid": f["v_mid"], "v_amount": amount.to_major_str(),
        "v_moneytype": f["v_moneytype"], "v_ymd": f["v_ymd"], "v_url": f["v_url"],
        "notify_override": override, "status": "pending", "created_at": clock.epoch(),
        "attempts": 0, "notify_state": "none", "refunds": [],
    }
    if not store.create(_order_pk(order["v_oid"]), order):
        existing = store.get(_order_pk(order["v_oid"])) or {}
        if any(existing.get(k) != order[k] for k in ("v_amount", "v_moneytype", "v_url")):
            raise _Refused("3", "订单编号重复")
        if existing.get("status") != "pending":
            raise _Refused("3", "订单已支付或已失败")
    return _html(_bank_page(order, pmode if direct else ""))


def _bank_page(order: dict[str, Any], chosen: str) -> str:
    action = html.escape(_conf().gateway_url + "/simulate/pay")
    banks = "".join(
        f"<label><input type=\"radio\" name=\"v_pmode\" value=\"{bid}\"{' checked' if bid == (chosen or DEFAULT_BANK) else ''}>"
        f"{html.escape(name)}</label><br>" for bid, name in BANKS.items())
    return (
        "<h2>首信易支付 · 选择银行 (sandbox)</h2>"
        f"<p>订单编号 <b class=\"oid\">{html.escape(order['v_oid'])}</b></p>"
        f"<p>金额 <b class=\"amount\">¥{html.escape(order['v_amount'])}</b></p>"
        f"<form method=\"post\" action=\"{action}\">"
        f"<input type=\"hidden\" name=\"out_trade_no\" value=\"{html.escape(order['v_oid'])}\">"
        f"{banks}"
        "<select name=\"outcome\"><option value=\"success\">支付成功</option>"
        "<option value=\"fail\">支付失败</option></select>"
        "<button type=\"submit\" id=\"pay\">确认支付</button></form>")


# ---- the payer finishes at the bank -------------------------------------------------------

@blueprint.route("/simulate/pay", methods=["POST"], content_types=[JSON, FORM])
@_guard("json")
def simulate_pay():
    from chalicelib.store import sandbox as store

    params, is_form = _read_params(allow_json=True)  # read everything before any outbound call
    oid = params.get("out_trade_no") or params.get("v_oid") or ""
    outcome = params.get("outcome") or "success"
    if outcome not in ("success", "fail"):
        raise _Refused("BAD_OUTCOME", "outcome must be success or fail")
    bank = BANKS.get(params.get("v_pmode") or DEFAULT_BANK)
    if bank is None:
        raise _Refused("BAD_BANK", "unknown v_pmode")
    if not notify.OID_RE.match(oid):
        raise _Refused("ORDER_NOT_FOUND", "no such order", 404)
    existing = store.get(_order_pk(oid))
    if existing is None:
        raise _Refused("ORDER_NOT_FOUND", "no such order", 404)
    url = _notify_url(existing)
    now_epoch = clock.epoch()
    target = "paid" if outcome == "success" else "failed"
    changed = []

    def mark(d: dict) -> dict | None:
        changed.clear()  # a lost race runs this again
        if d["status"] != "pending":
            return None
        changed.append(True)
        d.update(status=target, pmode=bank, pstring="支付成功" if target == "paid" else "支付失败",
                 finished_at=now_epoch, notify_url=url, notify_state="pending", attempts=0)
        return d

    # The order finished and its notification due: one write, so it cannot be paid without being owed.
    order = store.change_together({_order_pk(oid): mark}, queues={_order_pk(oid): (QUEUE, now_epoch)})[_order_pk(oid)]
    if not changed and order["status"] != target:
        raise _Refused("ALREADY_FINISHED", f"order is already {order['status']}", 409)
    if changed:
        _flush(now_epoch, only_url=url)  # first attempt inline; the rest by pump()
        order = store.get(_order_pk(oid))
    return_url = _return_url(order)
    if is_form:
        return Response(body="", status_code=302, headers={"Location": return_url})
    return _json({"v_oid": oid, "status": order["status"], "notify_state": order.get("notify_state"),
                  "attempts": order.get("attempts", 0), "return_url": return_url})


def _notify_url(order: dict) -> str:
    from chalicelib.store import sandbox as store

    if order.get("notify_override"):
        return order["notify_override"]
    console = store.get(_merchant_pk(order["v_mid"])) or {}
    return console.get("notify_url") or settings.get().public_base_url + "/callbacks/payease"


def _return_url(order: dict) -> str:
    key = _conf().md5_key
    params = {
        "v_oid": order["v_oid"],
        "v_pstatus": {"paid": "20", "failed": "30"}.get(order["status"], "1"),
        "v_pstring": order.get("pstring", "已提交"),
        "v_pmode": order.get("pmode", ""),
        "v_amount": order["v_amount"],
        "v_moneytype": order["v_moneytype"],
    }
    params["v_md5info"] = signing.return_md5info(key, params)
    params["v_md5money"] = signing.md5money(key, params)
    sep = "&" if "?" in order["v_url"] else "?"
    return order["v_url"] + sep + urlencode(params)


# ---- server notify: batching and retries --------------------------------------------------

def notification_body(orders: list[dict], key: str) -> bytes:
    """The form PayEase posts: each field the orders' values joined by |_|, GBK percent-encoded."""
    join = signing.BATCH_SEPARATOR.join
    fields = {
        "v_oid": join(o["v_oid"] for o in orders),
        "v_pmode": join(o["pmode"] for o in orders),
        "v_pstatus": join("1" if o["status"] == "paid" else "3" for o in orders),
        "v_pstring": join(o["pstring"] for o in orders),
        "v_amount": join(o["v_amount"] for o in orders),
        "v_moneytype": join(o["v_moneytype"] for o in orders),
        "v_count": str(len(orders)),
    }
    fields["v_mac"] = signing.notify_mac(key, fields)
    fields["v_md5money"] = signing.md5money(key, fields)
    return urlencode(fields, encoding="gbk").encode("ascii")


def _flush(now_epoch: int, only_url: str | None = None) -> int:
    """Send every due notification (grouped per URL, <= 4 per request). Returns orders attempted."""
    from chalicelib.store import sandbox as store

    groups: dict[str, list[tuple[str, dict]]] = {}
    for pk, data in store.due(QUEUE, now_epoch):
        url = data.get("notify_url") or ""
        if only_url is not None and url != only_url:
            continue
        groups.setdefault(url, []).append((pk, data))
    attempted = 0
    for url, items in groups.items():
        for start in range(0, len(items), notify.MAX_BATCH):
            chunk = items[start:start + notify.MAX_BATCH]
            _deliver(url, chunk, now_epoch)
            attempted += len(chunk)
    return attempted


def _deliver(url: str, chunk: list[tuple[str, dict]], now_epoch: int) -> bool:
    from chalicelib.store import sandbox as store

    body = notification_body([data for _, data in chunk], _conf().md5_key)
    ok = False
    try:
        answer = egress.post(url, body, {"Content-Type": FORM},
                             timeout=settings.get().http_timeout_seconds, max_bytes=1024)
        ok = answer.status == 200 and answer.body[:64].strip().lower() == b"sent"
    except egress.Failed as exc:  # the merchant being down is the normal case for retries
        log.info("payease.sandbox_notify_unreachable", error=str(exc)[:80])
    for pk, _ in chunk:
        state: dict[str, Any] = {}

        def record(d: dict) -> dict:
            d["attempts"] = int(d.get("attempts", 0)) + 1
            d["last_attempt_at"] = now_epoch
            if ok:
                d["notify_state"] = "sent"
            elif d["attempts"] > len(RETRY_DELAYS):
                d["notify_state"] = "abandoned"
            else:
                d["notify_state"] = "retrying"
            state.update(d)
            return d

        store.update(pk, record)
        if state["notify_state"] == "retrying":
            store.schedule(pk, QUEUE, now_epoch + RETRY_DELAYS[state["attempts"] - 1])
        else:
            store.schedule(pk, None, None)
    log.info("payease.sandbox_notify", orders=len(chunk), answered_sent=ok)
    return ok


def pump(now=None) -> int:
    """Resend every notification due by `now` (default: the clock). Returns orders attempted."""
    return _flush(int((now or clock.now()).timestamp()))


@blueprint.route("/simulate/pump", methods=["POST"], content_types=[JSON, FORM])
@_guard("json")
def simulate_pump():
    return _json({"attempted": pump()})


@blueprint.route("/merchant/config", methods=["POST"], content_types=[JSON, FORM])
@_guard("json")
def merchant_config():
    """The merchant console: where PayEase sends server notifications for this merchant."""
    from chalicelib.store import sandbox as store

    params, _ = _read_params(allow_json=True)
    mid = params.get("v_mid") or _conf().mid
    _check_mid(mid)
    # Only the merchant may re-point its console: v_mac over (v_mid, notify_url) with its MD5 key.
    if not signing.verify(_conf().md5_key, {**params, "v_mid": mid}, CONSOLE_FIELDS, params.get("v_mac", "")):
        raise _Refused("2", "数字签名错误 (v_mac)", status=403)
    url = _check_notify_url(params.get("notify_url", ""))
    if not store.create(_merchant_pk(mid), {"notify_url": url}):
        store.update(_merchant_pk(mid), lambda d: {**d, "notify_url": url})
    return _json({"v_mid": mid, "notify_url": url})


# ---- query and refunds ------------------------------------------------------------------------

def _api_params(required: tuple[str, ...], order: tuple[str, ...]) -> dict[str, str]:
    params, _ = _read_params(allow_json=False)
    missing = [name for name in required if not params.get(name)]
    if missing:
        raise _Refused("3", "缺少参数: " + ",".join(missing))
    _check_mid(params["v_mid"])
    if not signing.verify(_conf().md5_key, params, order, params["v_mac"]):
        raise _Refused("2", "数字签名错误 (v_mac)")
    return params


@blueprint.route("/merchant/order/order_ack_oid_list.jsp", methods=["GET", "POST"], content_types=[FORM])
@_guard("xml")
def order_query():
    from chalicelib.store import sandbox as store

    p = _api_params(("v_mid", "v_oid", "v_mac"), signing.QUERY_FIELDS)
    order = store.get(_order_pk(p["v_oid"])) if notify.OID_RE.match(p["v_oid"]) else None
    head = {"status": "0", "statusdesc": "查询成功", "mid": p["v_mid"], "oid": p["v_oid"]}
    if order is None:
        return _xml("ordermessage", {**head, "status": "1", "statusdesc": "订单不存在"}, in_messagehead=True)
    pstatus = {"paid": "1", "pending": "2", "failed": "3"}[order["status"]]
    fields = {"orderindex": "1", "oid": order["v_oid"], "pmode": order.get("pmode", ""), "pstatus": pstatus,
              "pstring": order.get("pstring", "未支付"), "amount": order["v_amount"],
              "moneytype": order["v_moneytype"], "isvirement": "0"}
    return _xml("ordermessage", head, f"<messagebody><order>{_tags(fields)}</order></messagebody>",
                in_messagehead=True)


@blueprint.route("/merchant/refund/ref_ack_submit.jsp", methods=["POST"], content_types=[FORM])
@_guard("xml")
def refund_submit():
    from chalicelib.store import sandbox as store

    p = _api_params(("v_mid", "v_oid", "v_refamount", "v_refoprt", "v_mac"), signing.REFUND_FIELDS)
    if not notify.AMOUNT_RE.match(p["v_refamount"]):
        raise _Refused("3", "退款金额错误")
    refund = Money.from_major(p["v_refamount"], "CNY")
    reason = p.get("v_refreason", "")[:128]
    outcome: dict[str, str] = {}

    def add(d: dict) -> dict | None:
        if d["status"] != "paid":
            outcome["error"] = "订单未支付"
            return None
        refunded = sum(Money.from_major(r["refamount"], "CNY").amount for r in d.get("refunds", []))
        if refund.amount <= 0 or refunded + refund.amount > Money.from_major(d["v_amount"], "CNY").amount:
            outcome["error"] = "退款金额超过可退金额"
            return None
        refid = f"R{len(d.get('refunds', [])) + 1:04d}{clock.epoch() % 100000:05d}"
        d.setdefault("refunds", []).append({
            "refid": refid, "refamount": refund.to_major_str(), "refreason": reason,
            "refstatus": "1", "refdate": clock.now().strftime("%Y%m%d%H%M%S")})
        outcome["refid"] = refid
        return d

    if not notify.OID_RE.match(p["v_oid"]) or store.update(_order_pk(p["v_oid"]), add) is None:
        return _xml("refundresult", {"status": "1", "statusdesc": "订单不存在"})
    if "error" in outcome:
        return _xml("refundresult", {"status": "3", "statusdesc": outcome["error"]})
    return _xml("refundresult", {"status": "0", "statusdesc": "退款申请成功", "mid": p["v_mid"],
                                 "oid": p["v_oid"], "refamount": refund.to_major_str(),
                                 "refoprt": p["v_refoprt"], "refid": outcome["refid"]})


@blueprint.route("/merchant/refund/ref_ack_oid_list_utf8.jsp", methods=["GET", "POST"], content_types=[FORM])
@_guard("xml")
def refund_list():
    from chalicelib.store import sandbox as store

    p = _api_params(("v_mid", "v_oid", "v_mac"), signing.REFUND_QUERY_FIELDS)
    order = store.get(_order_pk(p["v_oid"])) if notify.OID_RE.match(p["v_oid"]) else None
    if order is None:
        return _xml("refundlist", {"status": "1", "statusdesc": "订单不存在"})
    items = ""
    for i, r in enumerate(order.get("refunds", []), start=1):
        cells = {"refundindex": str(i), "refid": r["refid"], "refamount": r["refamount"],
                 "refmoneytype": order["v_moneytype"], "refdate": r["refdate"],
                 "refstatus": r["refstatus"], "reftype": "0", "refreason": r["refreason"]}
        items += f"<refund>{_tags(cells)}</refund>"
    return _xml("refundlist", {"status": "0", "statusdesc": "查询成功", "mid": p["v_mid"], "oid": p["v_oid"],
                               "amount": order["v_amount"], "moneytype": order["v_moneytype"]},
                f"<messagebody>{items}</messagebody>")
