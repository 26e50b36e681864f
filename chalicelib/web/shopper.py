"""Shopper-facing handlers: the static code, hosted checkout, the result page and tuition.

Each handler reads the request, calls one service, and answers a page (or a redirect). Nothing here
decides money: amounts are parsed by the services from the shopper's decimal text.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
import re
from urllib.parse import parse_qs, urlencode

from chalice import Response

from chalicelib import clock, log, settings
from chalicelib.services import errors
from chalicelib.web import agent, i18n, render

MAX_FORM_BYTES = 4096
_OPENID = re.compile(r"^[A-Za-z0-9_\-]{6,64}$")
_OAUTH_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# (agent, wallet) -> flow at that wallet's channel: the same decision for codes and hosted checkout.
FLOWS = {
    (agent.WECHAT, "wechat"): "jsapi",
    (agent.ALIPAY, "alipay"): "wap",
    (agent.PHONE, "wechat"): "h5",
    (agent.PHONE, "alipay"): "wap",
    (agent.DESKTOP, "wechat"): "native",
    (agent.DESKTOP, "alipay"): "web",
}
WALLETS = ("wechat", "alipay")


class Request:
    """What the pages need of a chalice request."""

    def __init__(self, req):
        self.headers = {k.lower(): v for k, v in (req.headers or {}).items()}
        self.query = dict(req.query_params or {})
        self.raw_body = req.raw_body or b""
        self.client_ip = ((req.context or {}).get("identity") or {}).get("sourceIp") or "127.0.0.1"
        self.agent = agent.classify(self.headers.get("user-agent"))

    @property
    def lang(self) -> str:
        return i18n.pick(self.query.get("lang") or self.form().get("lang"), self.headers.get("accept-language"))

    def form(self) -> dict[str, str]:
        if not self.raw_body or len(self.raw_body) > MAX_FORM_BYTES:
            return {}
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return {}
        try:
            parsed = parse_qs(self.raw_body.decode("utf-8"), max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return {}
        return {k: v[0] for k, v in parsed.items()}


def _base() -> str:
    return settings.get().public_base_url


def _wallets(merchant, who: str) -> list[str]:
    return [w for w in WALLETS if merchant.channel_ids(w) is not None and (who, w) in FLOWS]


def _rate(wallet: str, currency: str) -> str | None:
    """The wallet's latest stored rate, for the indicative CNY hint (the wallet converts, not us)."""
    from chalicelib.store import fx as fx_store

    r = fx_store.latest(wallet, currency)
    return None if r is None else str(r.rate.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


# ---- static code -----------------------------------------------------------------------------

def _shop_or_page(code_id: str, lang: str):
    from chalicelib.services import qr_codes

    try:
        return qr_codes.shop(code_id), None
    except errors.ServiceError as exc:
        if exc.kind == "not_found":
            return None, render.message(lang, "not_found_title", "not_found_text", 404)
        return None, render.message(lang, "gone_title", "gone_text", 410)


def _code_form(r: Request, shop, openid: str | None = None, error_key: str | None = None, amount_text: str = "",
               status: int = 200) -> Response:
    code = shop.code
    wallets = [{"name": w, "rate": _rate(w, code.currency)} for w in _wallets(shop.merchant, r.agent)]
    from chalicelib.money import Money

    fixed = Money(code.fixed_amount, code.currency).to_major_str() if code.fixed_amount is not None else None
    return render.page("code.html", r.lang, status, merchant_name=shop.merchant.name, store_name=code.store_name,
                       test_mode=not code.livemode,
                       action=f"/qr/{code.id}/pay", wallets=wallets, currency=code.currency, fixed_amount=fixed,
                       openid=openid, error_key=error_key, amount_text=amount_text)


def code_page(code_id: str, req) -> Response:
    r = Request(req)
    shop, problem = _shop_or_page(code_id, r.lang)
    if problem is not None:
        return problem
    if r.agent == agent.DESKTOP:
        from chalicelib.web import qr

        return render.page("desktop.html", r.lang, merchant_name=shop.merchant.name, store_name=shop.code.store_name,
                           qr_svg=qr.svg(f"{_base()}/qr/{shop.code.id}"))
    if r.agent != agent.WECHAT:
        return _code_form(r, shop)
    openid, detour = _wechat_openid(r, f"/qr/{shop.code.id}")
    return detour or _code_form(r, shop, openid=openid)


def _wechat_openid(r: Request, path: str) -> tuple[str | None, Response | None]:
    """Inside WeChat, JSAPI needs the shopper's openid: a silent web OAuth round trip back to `path`.

    Either (openid, None) or (None, the redirect / error page to answer instead)."""
    from chalicelib.channels.wechat_oa import client as oa

    oauth_code = r.query.get("code")
    back = f"{_base()}{path}?" + urlencode({"lang": r.lang})
    if not oauth_code or not _OAUTH_CODE.match(oauth_code):
        return None, render.redirect(oa.authorize_url(back, "pay"), 302)
    try:
        return oa.pay_oauth_client().openid_for_code(oauth_code), None
    except oa.OAError as exc:
        if exc.code in (40029, 40163):  # a reload re-sends a used code: ask WeChat for a fresh one
            return None, render.redirect(oa.authorize_url(back, "pay"), 302)
        log.warning("wechat_oauth_failed", code=str(exc.code))
        return None, render.message(r.lang, "error_title", "error_text", 502)


def code_pay(code_id: str, req) -> Response:
    from chalicelib.services import qr_codes

    r = Request(req)
    shop, problem = _shop_or_page(code_id, r.lang)
    if problem is not None:
        return problem
    form = r.form()
    wallet = form.get("wallet", "")
    openid = form.get("openid") if _OPENID.match(form.get("openid", "")) else None
    flow = FLOWS.get((r.agent, wallet))
    if wallet not in _wallets(shop.merchant, r.agent) or flow is None or (flow == "jsapi" and not openid):
        return _code_form(r, shop, openid=openid, error_key="error_text", status=400)
    amount_text = form.get("amount", "")[:20]
    try:
        amount = qr_codes.parse_amount(shop, amount_text)
        payment = qr_codes.start_payment(shop, amount, wallet, flow, r.client_ip,
                                         {"openid": openid} if flow == "jsapi" else None)
    except errors.ServiceError as exc:
        if exc.code == "rate_limited":
            return render.message(r.lang, "throttled_title", "throttled_text", 429)
        if exc.kind == "invalid" and exc.param == "amount":
            key = exc.code if exc.code in i18n.MESSAGES else "amount_invalid"
            return _code_form(r, shop, openid=openid, error_key=key, amount_text=amount_text, status=400)
        log.warning("qr_payment_failed", code_id=code_id, kind=exc.kind, error=exc.code)
        return render.message(r.lang, "error_title", "error_text", 502 if exc.kind == "channel" else 503,
                              back_url=f"/qr/{code_id}?lang={r.lang}")
    return _after_create(payment, r.lang)


def _after_create(payment, lang: str) -> Response:
    action = payment.next_action or {}
    if action.get("type") == "redirect" and str(action.get("url", "")).startswith(("https://", "http://")):
        return render.redirect(action["url"])  # H5 / WAP / PC cashier: straight on to the wallet
    return render.redirect(f"/pay/{payment.id}?lang={lang}")


IMAGE_TYPES = ("image/svg+xml", "image/png")   # what the printable code comes as, ours first on a tie


def image_type(accept: str | None) -> str | None:
    """The image type an `Accept` header prefers (RFC 9110 12.5.1): each offered type takes the q of the most
    specific range naming it (type/subtype, then type/*, then */*); the highest q > 0 wins, SVG on a tie.
    No header: SVG. A header that accepts neither: None (406)."""
    if accept is None or not accept.strip():
        return IMAGE_TYPES[0]
    ranges: dict[str, int] = {}  # media range -> q in thousandths
    for part in accept[:1024].split(","):
        media, *params = [p.strip() for p in part.split(";")]
        media = media.lower()
        if media.count("/") != 1:
            continue
        q = 1000
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = _qvalue(value.strip())
        ranges[media] = max(q, ranges.get(media, 0))
    best, best_q = None, 0
    for offered in IMAGE_TYPES:
        major = offered.split("/")[0]
        q = next((ranges[k] for k in (offered, f"{major}/*", "*/*") if k in ranges), 0)
        if q > best_q:
            best, best_q = offered, q
    return best


def _qvalue(text: str) -> int:
    """A q-value in thousandths (`0`, `0.5`, `1.000`); anything else counts as 0."""
    if not re.fullmatch(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", text):
        return 0
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def code_image(code_id: str, req) -> Response:
    from chalicelib.web import qr

    r = Request(req)
    shop, problem = _shop_or_page(code_id, r.lang)
    if problem is not None:
        return problem
    kind = image_type(r.headers.get("accept"))
    cache = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff", "Vary": "Accept"}
    if kind is None:
        return Response(body=f"406 Not Acceptable: this image is {' or '.join(IMAGE_TYPES)}\n", status_code=406,
                        headers={**cache, "Content-Type": "text/plain; charset=utf-8"})
    url = f"{_base()}/qr/{shop.code.id}"
    lines = [shop.merchant.name, shop.code.store_name]
    if kind == "image/png":
        return Response(body=qr.printable_png(url, lines), status_code=200,
                        headers={**cache, "Content-Type": "image/png"})
    return Response(body=qr.printable_svg(url, lines), status_code=200,
                    headers={**cache, "Content-Type": "image/svg+xml; charset=utf-8",
                             "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


# ---- hosted checkout and result ----------------------------------------------------------------

def find_payment(payment_id: str):
    from chalicelib.services import payments
    from chalicelib.store import payments as store

    ok = payment_id.startswith("pay_") and len(payment_id) == payments.PAYMENT_ID_LENGTH and payment_id.isascii() \
        and payment_id[4:].isalnum()
    return store.get(payment_id) if ok else None


def state_of(p) -> str:
    """What the shopper is told, from the payment's status alone (and its expiry)."""
    if p.status.value == "succeeded":
        return "paid"
    if p.status.value == "failed":
        return "failed"
    if p.status.value == "closed" or clock.now() >= p.expires_at:
        return "expired"
    return "waiting"


def payment_context(p) -> dict:
    from chalicelib.store import merchants as merchant_store

    m = merchant_store.get(p.merchant_id)
    from_code = bool(p.metadata.get("qr_code"))
    charged = p.channel_amount or p.payer_amount
    return {"merchant_name": m.name if m else "", "store_name": p.metadata.get("store_name", ""),
            "test_mode": not p.livemode,
            "amount": p.amount.to_major_str(), "currency": p.amount.currency,
            "reference": p.id if from_code else p.merchant_reference,
            "description": "" if from_code else p.description,
            "charged": f"¥ {charged.to_major_str()} {charged.currency}" if charged and charged.currency == "CNY" else ""}


def payment_page(payment_id: str, req) -> Response:
    r = Request(req)
    p = find_payment(payment_id)
    if p is None:
        return render.message(r.lang, "not_found_title", "payment_not_found", 404)
    if p.quote is not None:
        from chalicelib.web import tuition

        return tuition.page(p, r)
    if state_of(p) != "waiting":
        return render.redirect(f"/pay/{p.id}/result?lang={r.lang}")
    ctx = {**payment_context(p), "channel": p.channel, "result_url": f"/pay/{p.id}/result?lang={r.lang}",
           "status_url": f"/pay/{p.id}/status", "error_key": None}
    if not p.channel_chosen:
        return _choose(r, p, ctx)
    action = p.next_action or {}
    kind = action.get("type")
    if kind == "jsapi":
        return render.page("checkout.html", r.lang, kind="jsapi", jsapi=action["jsapi"], **ctx)
    if kind == "qr_code":
        from chalicelib.web import qr

        return render.page("checkout.html", r.lang, kind="qr", qr_svg=qr.svg(action["qr_code"]), **ctx)
    return render.page("checkout.html", r.lang, kind="redirect", redirect_url=action.get("url", ""), **ctx)


def _choice(p, who: str) -> list[str]:
    return [w for w in p.allowed_channels if (who, w) in FLOWS]


def _choose(r: Request, p, ctx: dict, error_key: str | None = None, status: int = 200) -> Response:
    openid = None
    if r.agent == agent.WECHAT and "wechat" in _choice(p, r.agent):
        openid, detour = _wechat_openid(r, f"/pay/{p.id}")
        if detour is not None:
            return detour
    return render.page("checkout.html", r.lang, status, kind="choose", wallets=_choice(p, r.agent),
                       choose_url=f"/pay/{p.id}/choose", openid=openid, **{**ctx, "error_key": error_key})


def choose(payment_id: str, req) -> Response:
    """The shopper picked a wallet on the hosted checkout: the channel order is created now."""
    from chalicelib.services import payments

    r = Request(req)
    p = find_payment(payment_id)
    if p is None or p.quote is not None:
        return render.message(r.lang, "not_found_title", "payment_not_found", 404)
    form = r.form()
    wallet = form.get("wallet", "")
    openid = form.get("openid") if _OPENID.match(form.get("openid", "")) else None
    flow = FLOWS.get((r.agent, wallet))
    if wallet not in _choice(p, r.agent) or flow is None or (flow == "jsapi" and not openid):
        return render.message(r.lang, "error_title", "error_text", 400, back_url=f"/pay/{p.id}?lang={r.lang}")
    try:
        chosen = payments.choose_channel(p.id, wallet, flow, {"openid": openid} if openid else {}, r.client_ip)
    except errors.ServiceError as exc:
        log.warning("checkout_choice_failed", payment_id=p.id, kind=exc.kind, error=exc.code)
        if exc.kind == "conflict":
            return render.redirect(f"/pay/{p.id}?lang={r.lang}")
        return render.message(r.lang, "error_title", "error_text", 502 if exc.kind == "channel" else 400,
                              back_url=f"/pay/{p.id}?lang={r.lang}")
    return _after_create(chosen, r.lang)


def result_page(payment_id: str, req) -> Response:
    r = Request(req)
    p = find_payment(payment_id)
    if p is None:
        return render.message(r.lang, "not_found_title", "payment_not_found", 404)
    code_id = p.metadata.get("qr_code")
    return render.page("result.html", r.lang, state=state_of(p), return_url=p.return_url,
                       again_url=f"/qr/{code_id}?lang={r.lang}" if code_id else None, **payment_context(p))


def status(payment_id: str) -> Response:
    """The result page's poll: the shopper-visible state only."""
    p = find_payment(payment_id)
    if p is None:
        return Response(body=json.dumps({"error": "not_found"}), status_code=404,
                        headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
    return Response(body=json.dumps({"state": state_of(p)}), status_code=200,
                    headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
